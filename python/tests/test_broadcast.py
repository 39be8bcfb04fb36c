"""Broadcast channels from Python: the API in one process (laps, evictions, in-place reads, bad
input), then real subscriber processes (multiprocessing fork and spawn, os.fork, SIGKILL). No
timing assertions: generous deadlines and polled conditions only."""

import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest

import shmring
from _workers import (HEADER, broadcast_frame, check_broadcast_frame, fill, payload, publish,
                      scaled, subscribe_all, subscribe_slowly)
from test_processes import DEADLINE, fork, process_state, wait_exit

SMALL = 4096  # the smallest ring: 100-byte frames lap it after about 35 frames


@pytest.fixture
def broadcast(name):
    """A fresh lossless broadcast channel (64 KiB, never evicts); yields its name."""
    shmring.create_channel(name, kind="broadcast", capacity=1 << 16, evict_after=None)
    return name


def index(frame) -> int:
    return int.from_bytes(frame[:HEADER], "little")


# ---- One process -------------------------------------------------------------------------------

def test_send_claim_recv_read_every_subscriber(broadcast):
    with shmring.BroadcastPublisher(broadcast) as p, \
            shmring.BroadcastSubscriber(broadcast) as a, \
            shmring.BroadcastSubscriber(broadcast, start=shmring.StartAt.LATEST) as b:
        assert p.overflow == a.overflow == shmring.OverflowPolicy.BLOCK
        assert p.max_frame == a.max_frame == (1 << 16) // 2 - 16
        p.send(b"copied")
        p.send(np.arange(3, dtype=np.int32))
        p.send(memoryview(b"abcdef")[::2])  # strided: gathered
        with p.claim(8) as claim:
            assert claim.sequence == 3
            claim.data[:] = b"in-place"
        assert p.next_sequence == 4
        for s in (a, b):
            assert s.recv(timeout=5) == b"copied"
            out = bytearray(16)
            assert s.recv_into(out, timeout=5) == 12
            assert bytes(out[:12]) == np.arange(3, dtype=np.int32).tobytes()
            assert s.next_sequence == 2
            with s.read(timeout=5) as frame:
                assert frame.sequence == 2 and bytes(frame.data) == b"ace"
                assert frame.data.readonly and not frame.redelivered
            with s.read(timeout=5) as frame:
                assert bytes(frame.data) == b"in-place"
            with pytest.raises(TimeoutError):
                s.recv(timeout=0)
            assert s.missed == s.last_missed == 0
        p.close()
        assert list(a) == [] and list(b) == []
        with pytest.raises(shmring.ChannelClosed):
            a.recv(timeout=0)
        with pytest.raises(shmring.ChannelClosed):
            p.send(b"late")
    counters = shmring.channel_counters(broadcast)
    assert counters["producers"]["frames"] == 4
    assert counters["consumers"]["frames"] == 8  # every subscriber released every frame
    assert counters["consumers"]["missed"] == 0


def test_overwrite_lap_raises_exact_count_and_reading_continues(name):
    shmring.create_channel(name, kind="broadcast", capacity=SMALL, overflow="overwrite")
    with shmring.BroadcastPublisher(name) as p, shmring.BroadcastSubscriber(name) as s:
        assert s.overflow == shmring.OverflowPolicy.OVERWRITE
        sent = 200
        for i in range(sent):
            p.send(payload(i, 100), timeout=0)  # overwrite: the publisher never waits
        with pytest.raises(shmring.Lapped) as lap:
            s.recv(timeout=5)
        gap = lap.value
        assert isinstance(gap, shmring.Error)
        assert gap.sequence == 0 and 0 < gap.missed < sent
        assert s.last_missed == s.missed == gap.missed
        assert "missed %d frames" % gap.missed in str(gap)
        got = [index(m) for m in iter(lambda: _recv_or_none(s), None)]
        assert got == list(range(gap.missed, sent))  # the oldest still held, then in order
        # recv_into and read() report laps the same way.
        for i in range(sent, 2 * sent):
            p.send(payload(i, 100))
        with pytest.raises(shmring.Lapped) as lap2:
            s.recv_into(bytearray(200), timeout=5)
        assert lap2.value.sequence == sent and s.missed == gap.missed + lap2.value.missed
        for i in range(2 * sent, 3 * sent):
            p.send(payload(i, 100))
        with pytest.raises(shmring.Lapped) as lap3:
            s.read(timeout=5)
        after = s.recv(timeout=5)
        assert index(after) == lap3.value.sequence + lap3.value.missed
    counters = shmring.channel_counters(name)["consumers"]
    assert counters["lapped"] == 3
    assert counters["missed"] == gap.missed + lap2.value.missed + lap3.value.missed


def _recv_or_none(s):
    try:
        return s.recv(timeout=0)
    except TimeoutError:
        return None


def test_frame_overwritten_while_held_raises_lapped_at_release(name):
    shmring.create_channel(name, kind="broadcast", capacity=SMALL, overflow="overwrite")
    with shmring.BroadcastPublisher(name) as p, shmring.BroadcastSubscriber(name) as s:
        p.send(payload(0, 100))
        frame = s.read(timeout=5)
        assert frame.sequence == 0 and index(frame.data) == 0
        for i in range(1, 100):
            p.send(payload(i, 100))  # overwrites the held frame
        with pytest.raises(shmring.Lapped) as lap:
            frame.release()
        assert lap.value.sequence == 0 and lap.value.missed >= 1  # the held frame included
        assert not frame.held
        with pytest.raises(ValueError):
            frame.data
        assert index(s.recv(timeout=5)) == lap.value.missed  # goes on at the oldest held
        # The same through the `with` block: its end raises.
        held = s.read(timeout=5)
        for i in range(100, 200):
            p.send(payload(i, 100))
        with pytest.raises(shmring.Lapped):
            with held:
                bytes(held.data)  # possibly torn: discarded, since the block raised


def test_block_evicts_a_stuck_subscriber_after_evict_after(name):
    shmring.create_channel(name, kind="broadcast", capacity=SMALL, evict_after=0)
    with shmring.BroadcastPublisher(name) as p, shmring.BroadcastSubscriber(name) as stuck:
        sent = 100
        for i in range(sent):
            p.send(payload(i, 100), timeout=DEADLINE)  # evicts `stuck` instead of waiting
        with pytest.raises(shmring.Lapped) as lap:
            stuck.recv(timeout=5)
        rest = [index(m) for m in iter(lambda: _recv_or_none(stuck), None)]
        assert lap.value.sequence == 0 and rest == list(range(lap.value.missed, sent))
    assert shmring.channel_counters(name)["producers"]["evicted"] >= 1


def test_block_without_eviction_times_out(broadcast):
    with shmring.BroadcastPublisher(broadcast) as p, shmring.BroadcastSubscriber(broadcast) as s:
        sent = fill(p, lambda i: b"x" * 1000)
        assert [s.recv(timeout=0) for _ in range(sent)] == [b"x" * 1000] * sent
        p.send(b"room again", timeout=0)
        assert s.recv(timeout=5) == b"room again"


def test_blocked_subscriber_lets_other_threads_run(broadcast):
    with shmring.BroadcastPublisher(broadcast) as p, \
            shmring.BroadcastSubscriber(broadcast, wait="block") as s:
        received = []
        reader = threading.Thread(target=lambda: received.append(s.recv(timeout=DEADLINE)))
        reader.start()
        # This thread runs Python code while the reader waits (it would not get the GIL if the
        # reader held it), until it finds the reader inside its blocking recv: then a call of
        # its own is refused (one thread at a time per endpoint).
        end = time.monotonic() + DEADLINE
        while True:
            try:
                s.recv(timeout=0)
            except TimeoutError:  # the reader is not waiting yet
                assert time.monotonic() < end
                continue
            except RuntimeError as busy:
                assert "another thread" in str(busy)
                break
        assert reader.is_alive() and not received
        p.send(b"wake up", timeout=DEADLINE)
        reader.join(timeout=DEADLINE)
        assert received == [b"wake up"]


def test_late_joiner_latest_and_oldest_in_one_process(broadcast):
    with shmring.BroadcastPublisher(broadcast) as p:
        for i in range(5):
            p.send(payload(i))
        with shmring.BroadcastSubscriber(broadcast) as latest, \
                shmring.BroadcastSubscriber(broadcast, start="OLDEST") as oldest:
            p.send(payload(5))
            p.close()
            assert [index(m) for m in latest] == [5]
            assert [index(m) for m in oldest] == [0, 1, 2, 3, 4, 5]


def test_broadcast_bad_input(names):
    name = names()
    bad_create = [
        (ValueError, dict(kind="broadcast", overflow="sometimes")),
        (TypeError, dict(kind="broadcast", overflow=1)),
        (ValueError, dict(kind="broadcast", evict_after=-1)),
        (ValueError, dict(kind="broadcast", evict_after=float("nan"))),
        (TypeError, dict(kind="broadcast", evict_after="1")),
        (TypeError, dict(kind="broadcast", evict_after=True)),
        (ValueError, dict(kind="spsc", overflow="overwrite")),  # broadcast only
        (ValueError, dict(kind="broadcast", capacity=5000)),
        (ValueError, dict(kind="broadcast", max_endpoints=0)),
        (ValueError, dict(kind="broadcast", max_endpoints=5000)),
        (ValueError, dict(kind="fanout")),
    ]
    for exc, kwargs in bad_create:
        with pytest.raises(exc):
            shmring.create_channel(name, **kwargs)
        assert not os.path.exists("/dev/shm" + name)
    for bad in ["", "a/b", "x" * 300]:
        with pytest.raises(ValueError):
            shmring.BroadcastSubscriber(bad)
        with pytest.raises(ValueError):
            shmring.BroadcastPublisher(bad)
    with pytest.raises(FileNotFoundError):
        shmring.BroadcastSubscriber(name)
    shmring.create_channel(name, kind=shmring.Kind.BROADCAST, capacity=SMALL, max_endpoints=2,
                           overflow=shmring.OverflowPolicy.OVERWRITE, evict_after=2.5)
    with pytest.raises(ValueError, match="latest or oldest"):
        shmring.BroadcastSubscriber(name, start="middle")
    with pytest.raises(TypeError):
        shmring.BroadcastSubscriber(name, start=0)
    with pytest.raises(shmring.Error, match="(?i)broadcast|kind"):
        shmring.SpscConsumer(name)  # wrong kind
    spsc = names()
    shmring.create_channel(spsc)
    with pytest.raises(shmring.Error, match="(?i)broadcast|kind"):
        shmring.BroadcastSubscriber(spsc)
    with shmring.BroadcastPublisher(name) as p, shmring.BroadcastSubscriber(name) as s, \
            shmring.BroadcastSubscriber(name, start="oldest"):
        with pytest.raises(shmring.RoleHeld) as held:
            shmring.BroadcastPublisher(name)
        assert held.value.pid == os.getpid()
        with pytest.raises(shmring.NoFreeEndpoint):
            shmring.BroadcastSubscriber(name)
        for exc, call in [
            (TypeError, lambda: p.send("text")),
            (TypeError, lambda: p.send(None)),
            (ValueError, lambda: p.send(b"x" * (p.max_frame + 1))),
            (ValueError, lambda: p.send(b"x", timeout=-1)),
            (TypeError, lambda: p.claim(1.5)),
            (ValueError, lambda: p.claim(-1)),
            (TypeError, lambda: s.recv(timeout="1")),
            (ValueError, lambda: s.recv(timeout=-0.5)),
            (TypeError, lambda: s.recv_into(b"read-only")),
        ]:
            with pytest.raises(exc):
                call()
            p.send(b"ok")
            assert s.recv(timeout=5) == b"ok"  # a bad argument never changes the channel
        p.send(b"0123456789")
        with pytest.raises(ValueError, match="smaller than the next frame"):
            s.recv_into(bytearray(4))
        assert s.recv(timeout=5) == b"0123456789"
        assert "BroadcastSubscriber" in repr(s)
        s.detach()
        with pytest.raises(ValueError, match="detached"):
            s.recv()


# ---- Processes ---------------------------------------------------------------------------------

def _start(ctx, target, args, count):
    """Start `count` processes running target(*args, ready, results); returns them once each
    reported ready (attached), with the results queue."""
    ready, results = ctx.Queue(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, ready, results)) for _ in range(count)]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            ready.get(timeout=DEADLINE)
    except BaseException:
        _reap(procs)
        raise
    return procs, results


def _reap(procs):
    """Join every process (SIGKILL it after the deadline); returns their exit codes."""
    for proc in procs:
        proc.join(DEADLINE)
        if proc.is_alive():
            proc.kill()
            proc.join()
    return [proc.exitcode for proc in procs]


@pytest.mark.parametrize("method, subscribers", [("fork", 4), ("spawn", 2)])
def test_every_subscriber_process_receives_every_frame_in_order(broadcast, method, subscribers):
    """1 publisher -> N subscriber processes, lossless: each receives every frame once, in
    order, byte-exact (CRC-32 per frame), then end-of-stream."""
    count = scaled(100_000)
    ctx = multiprocessing.get_context(method)
    procs, results = _start(ctx, subscribe_all, (broadcast, "latest"), subscribers)
    try:
        publish(broadcast, count)
        shmring.BroadcastPublisher(broadcast).close()
        reports = [results.get(timeout=DEADLINE) for _ in procs]
    finally:
        codes = _reap(procs)
    assert codes == [0] * subscribers
    assert reports == [(count, 0, 0)] * subscribers


def test_overwrite_slow_subscriber_received_plus_missed_is_published(name):
    """A slow subscriber process of an overwrite channel: frames received + frames reported
    missed == frames published, exactly; every frame it got is intact; each gap is a Lapped with
    the exact count, where the previous frame left off."""
    shmring.create_channel(name, kind="broadcast", capacity=1 << 14, overflow="overwrite")
    count = scaled(50_000)
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    procs, results = _start(ctx, subscribe_slowly, (name, go), 1)
    try:
        with shmring.BroadcastPublisher(name) as p:
            for i in range(count):
                p.send(broadcast_frame(i), timeout=0)  # overwrite: never waits
                if i == count // 2:
                    go.set()  # half published unread (a ring many times over): a sure lap
            p.close()
        received, missed, gaps, total = results.get(timeout=DEADLINE)
    finally:
        go.set()
        codes = _reap(procs)
    assert codes == [0]
    assert received + missed == count
    assert gaps >= 1 and missed > 0 and total == missed
    counters = shmring.channel_counters(name)["consumers"]
    assert counters["missed"] == missed and counters["lapped"] == gaps


def test_stopped_subscriber_is_evicted_and_reports_exactly_what_it_missed(name):
    """Lossless with an eviction bound: a subscriber process SIGSTOPped mid-stream holds the
    publisher at most evict_after, then is evicted; resumed, it gets shmring.Lapped with the
    exact count, and received + missed == published."""
    shmring.create_channel(name, kind="broadcast", capacity=1 << 14, evict_after=0.2)
    count = scaled(20_000)
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    go.set()
    procs, results = _start(ctx, subscribe_slowly, (name, go), 1)
    pid = procs[0].pid
    try:
        with shmring.BroadcastPublisher(name) as p:
            for i in range(count):
                if i == count // 2:
                    os.kill(pid, signal.SIGSTOP)
                    end = time.monotonic() + DEADLINE
                    while process_state(pid) != "T":
                        assert time.monotonic() < end
                        time.sleep(0.001)
                if i == count // 2 + 200:  # more than a ring since the stop: it was evicted
                    os.kill(pid, signal.SIGCONT)
                p.send(broadcast_frame(i), timeout=DEADLINE)
            p.close()
        received, missed, gaps, total = results.get(timeout=DEADLINE)
    finally:
        os.kill(pid, signal.SIGCONT)
        codes = _reap(procs)
    assert codes == [0]
    assert received + missed == count and gaps >= 1 and total == missed > 0
    counters = shmring.channel_counters(name)
    assert counters["producers"]["evicted"] >= 1
    assert counters["consumers"]["missed"] == missed


@pytest.mark.parametrize("start, first", [("latest", 10), ("oldest", 0)])
def test_late_joiner_process_starts_where_asked(broadcast, start, first):
    ctx = multiprocessing.get_context("fork")
    with shmring.BroadcastPublisher(broadcast) as p:
        for i in range(10):
            p.send(broadcast_frame(i))
        procs, results = _start(ctx, subscribe_all, (broadcast, start), 1)
        try:
            for i in range(10, 20):
                p.send(broadcast_frame(i))
            p.close()
            report = results.get(timeout=DEADLINE)
        finally:
            codes = _reap(procs)
    assert codes == [0]
    assert report == (20 - first, 0, first)


def test_end_of_stream_reaches_every_blocked_subscriber(broadcast):
    ctx = multiprocessing.get_context("fork")
    procs, results = _start(ctx, subscribe_all, (broadcast, "latest"), 3)
    try:
        shmring.BroadcastPublisher(broadcast).close()  # nothing sent: they sleep until the end
        reports = [results.get(timeout=DEADLINE) for _ in procs]
    finally:
        codes = _reap(procs)
    assert codes == [0, 0, 0] and reports == [(0, 0, None)] * 3


def _hold_first_frame(name, w):
    """Child: attach, read frame 0 in place, hold it (never released), report, wait for death."""
    s = shmring.BroadcastSubscriber(name)
    os.write(w, b"a")  # attached
    frame = s.read(timeout=DEADLINE)
    os.write(w, frame.sequence.to_bytes(8, "little"))
    while True:
        signal.pause()


def test_sigkilled_subscriber_does_not_stall_the_publisher(broadcast):
    """Lossless, never evicting: a subscriber holding the oldest frame stops the publisher; once
    it is SIGKILLed the publisher goes on at once, the live subscriber process misses nothing,
    and a replacement subscriber attaches and starts where asked."""
    count = scaled(20_000)
    ctx = multiprocessing.get_context("fork")
    r, w = os.pipe()
    holder = fork(lambda: _hold_first_frame(broadcast, w))
    try:
        assert os.read(r, 1) == b"a"
        procs, results = _start(ctx, subscribe_all, (broadcast, "latest"), 1)
        try:
            with shmring.BroadcastPublisher(broadcast) as p:
                p.send(broadcast_frame(0))
                assert int.from_bytes(os.read(r, 8), "little") == 0  # the holder holds frame 0
                sent = 1 + fill(p, broadcast_frame, first=1, timeout=1)  # full behind the holder
                os.kill(holder, signal.SIGKILL)
                assert wait_exit(holder) == -signal.SIGKILL
                for i in range(sent, count):
                    p.send(broadcast_frame(i), timeout=DEADLINE)  # not stalled by the dead one
                with shmring.BroadcastSubscriber(broadcast, start="oldest") as replacement:
                    # Everything the ring still holds, from the oldest (read before sending
                    # more: in this thread, a full ring would wait for this subscriber forever).
                    held = [index(m) for m in iter(lambda: _recv_or_none(replacement), None)]
                    assert 0 < held[0] and held == list(range(held[0], count))
                    p.send(broadcast_frame(count), timeout=DEADLINE)
                    p.close()
                    assert [index(m) for m in replacement] == [count]
            report = results.get(timeout=DEADLINE)
        finally:
            codes = _reap(procs)
    finally:
        try:
            os.kill(holder, signal.SIGKILL)
            wait_exit(holder)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(r)
        os.close(w)
    assert codes == [0]
    assert report == (count + 1, 0, 0)  # every frame, including those sent while it was blocked


def test_publisher_role_taken_over_from_a_killed_publisher(broadcast):
    r, w = os.pipe()

    def publisher():
        p = shmring.BroadcastPublisher(broadcast)
        for i in range(5):
            p.send(broadcast_frame(i))
        os.write(w, b"p")
        while True:
            signal.pause()

    with shmring.BroadcastSubscriber(broadcast) as s:
        pid = fork(publisher)
        try:
            assert os.read(r, 1) == b"p"
            with pytest.raises(shmring.RoleHeld) as held:
                shmring.BroadcastPublisher(broadcast)
            assert held.value.pid == pid
            os.kill(pid, signal.SIGKILL)
            assert wait_exit(pid) == -signal.SIGKILL
        finally:
            os.close(r)
            os.close(w)
        with shmring.BroadcastPublisher(broadcast) as p:  # taken over at once
            assert p.next_sequence == 5
            p.send(broadcast_frame(5))
            p.close()
        got = list(s)
        for i, frame in enumerate(got):
            check_broadcast_frame(frame, i)
        assert len(got) == 6
