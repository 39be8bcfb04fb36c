"""Process bodies for the multi-process tests (importable, so `spawn` children can run them)."""

import os
import time
import zlib

import shmring

HEADER = 8  # every test payload starts with its index, 8 bytes little-endian


def scaled(n: int) -> int:
    """n scaled by SHMRING_TEST_SCALE (the sanitizer runs use 0.1), at least 1000."""
    return max(1000, int(n * float(os.environ.get("SHMRING_TEST_SCALE", "1"))))


def payload(i: int, size: int = 16) -> bytes:
    return i.to_bytes(HEADER, "little") + bytes([i & 0xFF]) * (size - HEADER)


def fill(producer, message, first: int = 0, timeout: float = 0.05) -> int:
    """Send message(first), message(first + 1), ... until the ring is full (a send times out),
    then check a claim of the next one's size times out too; returns how many were sent (> 0)."""
    sent = 0
    while True:
        try:
            producer.send(message(first + sent), timeout=timeout)
        except TimeoutError:
            break
        sent += 1
    try:
        producer.claim(len(message(first + sent)), timeout=0)
    except TimeoutError:
        assert sent > 0
        return sent
    raise AssertionError("claim succeeded in a full ring")


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


# Broadcast. A frame: its index (8 bytes), random bytes, and the CRC-32 of both (4 bytes); its
# length is a function of the index, so a subscriber checks index, length and checksum without
# the sender's random state.
def broadcast_size(i: int) -> int:
    return HEADER + 4 + (i * 2654435761) % 1013


def broadcast_frame(i: int) -> bytes:
    head = i.to_bytes(HEADER, "little") + os.urandom(broadcast_size(i) - HEADER - 4)
    return head + zlib.crc32(head).to_bytes(4, "little")


def check_broadcast_frame(frame, expected: int) -> None:
    """AssertionError unless `frame` is broadcast_frame(expected), intact."""
    index = int.from_bytes(frame[:HEADER], "little")
    assert index == expected, (index, expected)
    assert len(frame) == broadcast_size(index), (index, len(frame))
    assert zlib.crc32(frame[:-4]) == int.from_bytes(frame[-4:], "little"), ("torn", index)


def publish(name: str, count: int, first: int = 0, timeout: float = 120) -> None:
    """Publish broadcast_frame(first..first+count-1) on an attached-here publisher."""
    with shmring.BroadcastPublisher(name) as p:
        for i in range(first, first + count):
            p.send(broadcast_frame(i), timeout=timeout)


def subscribe_all(name: str, start: str, ready, results) -> None:
    """Attach at `start` ("latest" or "oldest"), report ready (the pid) on `ready`, then receive until end-of-stream, checking every frame is the next
    one, intact. Puts (frames received, frames missed, first index) on `results`."""
    with shmring.BroadcastSubscriber(name, start=start, wait="block") as s:
        ready.put(os.getpid())
        received, first, expected = 0, None, None
        for frame in s:
            if expected is None:
                first = expected = int.from_bytes(frame[:HEADER], "little")
            check_broadcast_frame(frame, expected)
            received += 1
            expected += 1
        results.put((received, s.missed, first))


def subscribe_slowly(name: str, go, ready, results) -> None:
    """A slow subscriber of an overwrite channel: waits for `go` (the publisher is free-running
    meanwhile), then alternates copying and in-place reads, pausing now and then, until
    end-of-stream. Every gap must be exactly where the last frame left off; every frame intact.
    Puts (received, missed by the gaps, gaps, the subscriber's missed) on `results`."""
    with shmring.BroadcastSubscriber(name, wait="block") as s:
        ready.put(os.getpid())
        go.wait()
        received = missed = gaps = 0
        expected = 0
        while True:
            try:
                if received % 2:
                    frame = s.recv(timeout=120)
                else:
                    with s.read(timeout=120) as held:
                        frame = bytes(held.data)  # the copy counts only if release() says intact
                check_broadcast_frame(frame, expected)
                received += 1
                expected += 1
                if received % 64 == 0:
                    time.sleep(0.001)  # slow: the publisher laps it (correctness never depends)
            except shmring.Lapped as gap:
                assert gap.sequence == expected, (gap.sequence, expected)
                assert gap.missed > 0 and s.last_missed == gap.missed
                missed += gap.missed
                gaps += 1
                expected += gap.missed
            except shmring.ChannelClosed:
                break
        results.put((received, missed, gaps, s.missed))
