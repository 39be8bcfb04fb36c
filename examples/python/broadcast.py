#!/usr/bin/python3
"""Fan-out: one publisher, several subscriber processes, each receiving every frame.

A feed of ticks goes out on two broadcast channels to three forked subscriber processes, one of
them deliberately slow. On the lossless channel (overflow "block", the default) the publisher
waits for the slowest, and every subscriber gets every tick. On the lossy one ("overwrite") the
publisher never waits: the slow subscriber is lapped, gets shmring.Lapped with exactly how many
ticks it lost, and goes on with the oldest tick still held, so that received + missed = sent.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/broadcast.py
"""

import os
import struct
import sys
import time

import shmring

TICKS = 20_000
SUBSCRIBERS = 3  # the last one is slow
TICK = struct.Struct("<Qd")  # sequence, price
REPORT = struct.Struct("<4Q")  # subscriber, received, missed, gaps


def subscriber(channel: str, n: int, ready_w: int, report_w: int) -> None:
    """Runs in a child: receive until end-of-stream, counting ticks and the ones lost to laps."""
    slow = n == SUBSCRIBERS - 1
    received = missed = gaps = 0
    with shmring.BroadcastSubscriber(channel, wait="block") as s:  # start="latest"
        os.write(ready_w, b"+")  # attached: it receives every tick sent from now on
        while True:
            try:
                tick, _price = TICK.unpack(s.recv(timeout=30))
                assert tick == received + missed, "out of order"
                received += 1
                if slow and received % 100 == 0:
                    time.sleep(0.002)
            except shmring.Lapped as gap:  # lost gap.missed ticks, from gap.sequence on
                missed += gap.missed
                gaps += 1
            except shmring.ChannelClosed:
                break
    os.write(report_w, REPORT.pack(n, received, missed, gaps))


def run(channel: str, overflow: str) -> bool:
    # Lossless here means strictly: evict_after=None never evicts a live subscriber that is
    # stuck (the default, 1.0 s, would drop one that stalls the others longer than that).
    shmring.create_channel(channel, kind="broadcast", capacity=1 << 16, overflow=overflow,
                           evict_after=None)
    try:
        ready_r, ready_w = os.pipe()
        report_r, report_w = os.pipe()
        pids = []
        for n in range(SUBSCRIBERS):
            pid = os.fork()
            if pid == 0:  # the child attaches its own subscriber
                code = 1
                try:
                    subscriber(channel, n, ready_w, report_w)
                    code = 0
                finally:
                    os._exit(code)
            pids.append(pid)
        for _ in pids:
            os.read(ready_r, 1)
        with shmring.BroadcastPublisher(channel) as p:
            for i in range(TICKS):
                p.send(TICK.pack(i, 1.0842 + i * 1e-5), timeout=30)
            p.close()  # end of stream: every subscriber drains, then stops
        ok = all(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0 for pid in pids)
        os.close(report_w)
        with os.fdopen(report_r, "rb") as reports:
            data = reports.read()
        ok = ok and len(data) == SUBSCRIBERS * REPORT.size
        for n, received, missed, gaps in sorted(REPORT.iter_unpack(data)):
            print("%s: subscriber %d%s: received %d, missed %d in %d gaps" % (
                overflow, n, " (slow)" if n == SUBSCRIBERS - 1 else "", received, missed, gaps))
            ok = ok and received + missed == TICKS and (overflow == "overwrite" or missed == 0)
        return ok
    finally:
        shmring.remove_channel(channel)


def main(prefix: str) -> int:
    ok = run(prefix + "-block", "block") & run(prefix + "-overwrite", "overwrite")
    print("every subscriber: received + missed = %d sent: %s" % (TICKS, ok))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/shmring-example-broadcast-%d" % os.getpid()))
