#!/usr/bin/python3
"""The classic os.pipe + os.fork example, with shmring channels instead of pipes.

The parent asks, the child answers: one SPSC channel each way. Messages keep their boundaries
(no framing needed), and the bytes never pass through the kernel.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/pipe.py
"""

import os
import sys

import shmring


def main(prefix: str) -> int:
    ask, answer = prefix + "-ask", prefix + "-answer"
    shmring.create_channel(ask, capacity=1 << 16)  # SPSC, 64 KiB ring, mode 0o600
    shmring.create_channel(answer, capacity=1 << 16)
    try:
        pid = os.fork()
        if pid == 0:  # the child: attach its own endpoints (never use the parent's after fork)
            code = 1
            try:
                with shmring.SpscConsumer(ask) as inbox, shmring.SpscProducer(answer) as outbox:
                    question = inbox.recv(timeout=10)
                    outbox.send(b"child %d got: %s" % (os.getpid(), question))
                    outbox.close()  # end of stream
                code = 0
            finally:
                os._exit(code)
        with shmring.SpscProducer(ask) as outbox, shmring.SpscConsumer(answer) as inbox:
            outbox.send(b"hello from the parent")
            for message in inbox:  # until the child closes its channel
                print("parent got:", message.decode())
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)
    finally:
        shmring.remove_channel(ask)
        shmring.remove_channel(answer)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "/shmring-example-pipe-%d" % os.getpid()))
