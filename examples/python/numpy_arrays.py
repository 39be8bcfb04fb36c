#!/usr/bin/python3
"""numpy arrays between two processes, zero-copy both ways.

The producer computes each array straight into the ring (a claim's memoryview wrapped by
numpy); the consumer wraps the frame in place (no copy) and reduces it. Each view must be gone
before the frame or claim is given back: the `del` below (a live view makes commit/release raise
BufferError rather than leave a view of recycled memory).

    PYTHONPATH=build/python /usr/bin/python3 examples/python/numpy_arrays.py
"""

import multiprocessing
import os
import sys

import numpy as np

import shmring

SHAPE = (256, 512)  # float64: 1 MiB per array
COUNT = 200


def produce(name: str) -> None:
    base = np.arange(SHAPE[0] * SHAPE[1], dtype=np.float64).reshape(SHAPE)
    with shmring.SpscProducer(name) as p:
        for i in range(COUNT):
            with p.claim(base.nbytes) as claim:  # commits at the end of the block
                out = np.frombuffer(claim.data, dtype=np.float64).reshape(SHAPE)
                np.multiply(base, i, out=out)  # written in place, in the ring
                del out
        p.send(base)  # or simply send(): one copy into the ring
        p.close()


def main(name: str) -> int:
    shmring.create_channel(name, capacity=8 << 20)  # 8 MiB: room for several 1 MiB frames
    try:
        child = multiprocessing.Process(target=produce, args=(name,))
        child.start()
        total, arrays = 0.0, 0
        with shmring.SpscConsumer(name) as c:
            while True:
                try:
                    frame = c.read(timeout=30)
                except shmring.ChannelClosed:
                    break
                with frame:  # released at the end of the block
                    a = np.frombuffer(frame.data, dtype=np.float64).reshape(SHAPE)  # no copy
                    total += float(a[1, 0])  # == 512 * i for the i-th array
                    del a
                arrays += 1
        child.join()
        expected = 512.0 * sum(range(COUNT)) + 512.0
        print("received %d arrays of %d bytes in place; checksum %s" % (
            arrays, SHAPE[0] * SHAPE[1] * 8, "ok" if total == expected else "WRONG"))
        return 0 if arrays == COUNT + 1 and total == expected and child.exitcode == 0 else 1
    finally:
        shmring.remove_channel(name)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/shmring-example-np-%d" % os.getpid()))
