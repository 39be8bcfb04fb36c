"""Process bodies for the multi-process tests (importable, so `spawn` children can run them)."""

import os

import shmring

HEADER = 8  # every test payload starts with its index, 8 bytes little-endian


def scaled(n: int) -> int:
    """n scaled by SHMRING_TEST_SCALE (the sanitizer runs use 0.1), at least 1000."""
    return max(1000, int(n * float(os.environ.get("SHMRING_TEST_SCALE", "1"))))


def payload(i: int, size: int = 16) -> bytes:
    return i.to_bytes(HEADER, "little") + bytes([i & 0xFF]) * (size - HEADER)


def produce(name: str, count: int, size: int = 16) -> None:
    """Send payload(0..count-1), then close the channel."""
    with shmring.SpscProducer(name) as p:
        send = p.send
        for i in range(count):
            send(payload(i, size))
        p.close()


def consume_checked(name: str, count: int) -> int:
    """Read in place until end-of-stream, checking each frame is the next one; returns the count
    (raises AssertionError on the first frame out of place)."""
    expected = 0
    with shmring.SpscConsumer(name) as c:
        while True:
            try:
                frame = c.read()
            except shmring.ChannelClosed:
                break
            with frame:
                data = frame.data
                assert frame.sequence == expected, (frame.sequence, expected)
                assert int.from_bytes(data[:HEADER], "little") == expected
                assert data[-1] == expected & 0xFF
            expected += 1
    assert expected == count, (expected, count)
    return expected
