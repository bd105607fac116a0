"""Python's ProcessPoolExecutor doing the work bench/executor.lua gives
ppe, so both are measured in the same run. Prints one number.

    peer.py rtt N            us per submit+result of a trivial task
    peer.py many N           tasks/s for N trivial tasks submitted at once
    peer.py map N CHUNK      items/s for map over N ints
    peer.py echo BYTES N     MB/s one way for an echo of BYTES
    peer.py uneven MS N      s for a task of MS ms of CPU, then N of MS/10
    peer.py start            ms from executor start to first result
    peer.py rss              private KiB of an idle worker
"""
import multiprocessing as mp
import sys
import time
from concurrent.futures import ProcessPoolExecutor


def ident(x):
    return x


def spin(secs):
    t = time.process_time()
    while time.process_time() - t < secs:
        pass


def private_kib():
    total = 0
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean", "Private_Dirty")):
                total += int(line.split()[1])
    return total


def pool():
    return ProcessPoolExecutor(max_workers=2, mp_context=mp.get_context("fork"))


def main():
    what, args = sys.argv[1], [int(a) for a in sys.argv[2:]]
    if what == "start":  # from creation to the first result, as ppe's
        n, total = 10, 0.0
        for _ in range(n):
            t0 = time.perf_counter()
            ex = pool()
            ex.submit(ident, 1).result()
            total += time.perf_counter() - t0
            ex.shutdown()
        print(total * 1e3 / n)
        return
    with pool() as ex:
        ex.submit(ident, 1).result()
        ex.submit(ident, 1).result()
        if what == "rtt":
            n = args[0]
            t0 = time.perf_counter()
            for i in range(n):
                ex.submit(ident, i).result()
            print((time.perf_counter() - t0) / n * 1e6)
        elif what == "many":
            n = args[0]
            t0 = time.perf_counter()
            fs = [ex.submit(ident, i) for i in range(n)]
            for f in fs:
                f.result()
            print(n / (time.perf_counter() - t0))
        elif what == "map":
            n, chunk = args
            t0 = time.perf_counter()
            for _ in ex.map(ident, range(n), chunksize=chunk):
                pass
            print(n / (time.perf_counter() - t0))
        elif what == "echo":
            size, n = args
            s = b"x" * size
            t0 = time.perf_counter()
            for _ in range(n):
                assert len(ex.submit(ident, s).result()) == size
            print(size * n / (time.perf_counter() - t0) / 1e6)
        elif what == "uneven":
            ms, n = args
            t0 = time.perf_counter()
            fs = [ex.submit(spin, ms / 1e3)]
            fs += [ex.submit(spin, ms / 1e4) for _ in range(n)]
            for f in fs:
                f.result()
            print(time.perf_counter() - t0)
        elif what == "rss":
            time.sleep(0.2)
            print(max(ex.submit(private_kib).result() for _ in range(4)))


if __name__ == "__main__":
    main()
