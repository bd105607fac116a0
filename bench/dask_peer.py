"""dask's distributed scheduler doing the work bench/far.lua gives ppe's far
workers, so both are measured in the same run: a LocalCluster of two worker
processes with one thread each, on this machine. Prints one number, or on
stderr why it cannot run (exit status 2 when distributed is not installed).

    dask_peer.py rtt N            us per submit+result of a trivial task
    dask_peer.py many N           tasks/s for N trivial tasks submitted at once
    dask_peer.py map N CHUNK      items/s for N ints in batches of CHUNK
    dask_peer.py echo BYTES N     MB/s one way for an echo of BYTES

The cluster's start is not timed. Every task is submitted with pure=False:
dask would otherwise give a repeated call the result of the first one.
"""
import logging
import os
import shutil
import sys
import tempfile
import time
import warnings


def ident(x):
    return x


def batch(xs):
    return [ident(x) for x in xs]


def rtt(client, n):
    t0 = time.perf_counter()
    for i in range(n):
        client.submit(ident, i, pure=False).result()
    return (time.perf_counter() - t0) / n * 1e6


def many(client, n):
    # client.map is dask's way to submit many tasks at once: one message to
    # the scheduler for all of them, where n client.submit calls send n.
    t0 = time.perf_counter()
    fs = client.map(ident, range(n), pure=False)
    client.gather(fs)
    return n / (time.perf_counter() - t0)


def map_(client, n, chunk):
    # A task per batch of CHUNK items, as ppe's map sends a chunk per message.
    t0 = time.perf_counter()
    batches = [range(i, min(i + chunk, n)) for i in range(0, n, chunk)]
    total = 0
    for part in client.gather(client.map(batch, batches, pure=False)):
        total += len(part)
    assert total == n
    return n / (time.perf_counter() - t0)


def echo(client, size, n):
    # Large data goes to a worker by scatter, as dask's own warning about
    # large task arguments advises; the result comes back by gather.
    s = b"x" * size
    t0 = time.perf_counter()
    for _ in range(n):
        [d] = client.scatter([s], direct=True)
        assert len(client.submit(ident, d, pure=False).result()) == size
        del d
    return size * n / (time.perf_counter() - t0) / 1e6


FIGURES = {"rtt": rtt, "many": many, "map": map_, "echo": echo}


def main():
    # The cluster's own chatter (start, stop, a worker's heartbeat that
    # finds the scheduler gone at the end) would mix with the benchmark's
    # lines; the worker processes read this setting when they start.
    os.environ["DASK_LOGGING__DISTRIBUTED"] = "critical"
    try:
        from distributed import Client, LocalCluster
    except ImportError as e:
        print(f"dask_peer.py: {e}", file=sys.stderr)
        sys.exit(2)
    what, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
    if what not in FIGURES:
        sys.exit(f"dask_peer.py: unknown figure {what}")
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    scratch = tempfile.mkdtemp(prefix="ppe-dask.")
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None, local_directory=scratch,
                          host="127.0.0.1") as cluster, \
                Client(cluster) as client:
            client.submit(ident, 1, pure=False).result()
            client.submit(ident, 1, pure=False).result()
            print(FIGURES[what](client, *args))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
