"""Python's ProcessPoolExecutor (fork context) doing what bench/scaling.lua
gives ppe, so both are measured in the same run. Prints "name value" pairs
on one line.

    scaling_peer.py futures N FIFO [NOWAIT]
                                     us per future of submit, result,
                                     as_completed, wait and callbacks (a
                                     done-callback on every future),
                                     N pending futures on 2 workers; wait
                                     is left out if NOWAIT is given
    scaling_peer.py workers N K      ms from the pool's creation to its
                                     first result with N workers (mean of K
                                     starts), and the largest private KiB
                                     of its idle workers

The N futures of each round are submitted while both workers are held by
a task that reads one byte from FIFO, so that all N are pending when the
round's timed part starts; the caller holds FIFO open for writing until
the round ends, so each gate's read ends with its one byte.
"""
import multiprocessing as mp
import os
import sys
import threading
import time
from concurrent.futures import (FIRST_COMPLETED, ProcessPoolExecutor,
                                as_completed, wait)


def ident(x):
    return x


def gate(path):
    # Opened without blocking, then read blocking: it ends with a byte, or
    # at once if the caller has gone and no writer is left.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        os.set_blocking(fd, True)
        return os.read(fd, 1)
    finally:
        os.close(fd)


def private_kib(pid):
    total = 0
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith(("Private_Clean", "Private_Dirty")):
                total += int(line.split()[1])
    return total


def pool(n):
    return ProcessPoolExecutor(max_workers=n, mp_context=mp.get_context("fork"))


def held(ex, fifo, n, extra=None):
    """N futures submitted behind two gates; returns them, the gates, the
    submit time and when the submits began (moved later by the time the
    check that none is done took). 'extra' is called on each future after
    its submit."""
    gates = [ex.submit(gate, fifo) for _ in range(2)]
    t0 = time.perf_counter()
    fs = []
    for i in range(n):
        f = ex.submit(ident, i)
        if extra:
            extra(f)
        fs.append(f)
    t = time.perf_counter() - t0
    t1 = time.perf_counter()
    early = sum(f.done() for f in fs)
    # The check is not counted by a round timed from t0.
    t0 += time.perf_counter() - t1
    if early:
        sys.stderr.write("scaling_peer: %d futures done before release\n" %
                         early)
    return fs, gates, t, t0


def futures(n, fifo, with_wait):
    out = {}
    wfd = os.open(fifo, os.O_RDWR)
    try:
        with pool(2) as ex:
            ex.submit(ident, 1).result()

            def release():
                os.write(wfd, b"xx")
                return time.perf_counter()

            fs, gates, out["submit"], _ = held(ex, fifo, n)
            t0 = release()
            for f in fs:
                f.result()
            out["result"] = time.perf_counter() - t0
            wait(gates)

            fs, gates, _, _ = held(ex, fifo, n)
            t0 = release()
            c = 0
            for f in as_completed(fs):
                c += 1
            out["as_completed"] = time.perf_counter() - t0
            assert c == n
            wait(gates)

            if with_wait:
                fs, gates, _, _ = held(ex, fifo, n)
                t0 = release()
                not_done = fs
                while not_done:
                    _, not_done = wait(not_done, None, FIRST_COMPLETED)
                out["wait"] = time.perf_counter() - t0
                wait(gates)

            # Callbacks run in the pool's management thread as each result
            # comes; the last one wakes the caller. Timed from the first
            # submit, as ppe's: adding a callback is part of the cost.
            ran, last = [], threading.Event()

            def cb(_):
                ran.append(1)
                if len(ran) == n:
                    last.set()

            fs, gates, _, t0 = held(ex, fifo, n,
                                    lambda f: f.add_done_callback(cb))
            release()
            assert last.wait(600)
            out["callbacks"] = time.perf_counter() - t0
            wait(gates)
    finally:
        os.close(wfd)
    print(" ".join("%s %.6g" % (k, v / n * 1e6) for k, v in out.items()))


def workers(n, k):
    total, kib = 0.0, 0
    for _ in range(k):
        t0 = time.perf_counter()
        ex = pool(n)
        ex.submit(ident, 1).result()
        total += time.perf_counter() - t0
        time.sleep(0.2)
        # With the fork context the pool starts all its workers at its
        # first submit.
        pids = [p.pid for p in ex._processes.values()]
        assert len(pids) == n, pids
        kib = max(private_kib(pid) for pid in pids)
        ex.shutdown()
    print("start %.6g memory %d" % (total * 1e3 / k, kib))


def main():
    what, args = sys.argv[1], sys.argv[2:]
    if what == "futures":
        futures(int(args[0]), args[1], len(args) < 3)
    elif what == "workers":
        workers(int(args[0]), int(args[1]))
    else:
        sys.exit("usage: scaling_peer.py futures N FIFO [NOWAIT] | "
                 "workers N K")


if __name__ == "__main__":
    main()
