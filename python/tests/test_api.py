"""The binding's API in one process: data path, zero-copy views, errors, timeouts, threads."""

import array
import os
import threading
import time

import numpy as np
import pytest

import shmring
from _workers import fill


def test_send_recv_every_buffer_type(spsc):
    with shmring.SpscProducer(spsc) as p, shmring.SpscConsumer(spsc) as c:
        payloads = [b"bytes", bytearray(b"bytearray"), memoryview(b"memoryview"),
                    np.arange(4, dtype=np.int32), array.array("d", [1.5, 2.5]), b""]
        for data in payloads:
            p.send(data)
        for data in payloads:
            assert c.recv() == bytes(memoryview(data).cast("B"))
        assert p.next_sequence == len(payloads) == c.next_sequence
        # A strided buffer is gathered into the ring in C order (still one copy).
        strided = np.arange(20, dtype=np.int16).reshape(4, 5)[:, ::2]
        p.send(strided)
        assert c.recv() == strided.tobytes()
        p.send(memoryview(b"abcdef")[::2])
        assert c.recv() == b"ace"


def test_recv_into(spsc):
    with shmring.SpscProducer(spsc) as p, shmring.SpscConsumer(spsc) as c:
        p.send(b"0123456789")
        buf = bytearray(16)
        assert c.recv_into(buf) == 10
        assert buf[:10] == b"0123456789"
        out = np.zeros(4, dtype=np.uint8)
        p.send(b"abcd")
        assert c.recv_into(out) == 4 and bytes(out) == b"abcd"


def test_claim_commits_and_read_releases(spsc):
    with shmring.SpscProducer(spsc) as p, shmring.SpscConsumer(spsc) as c:
        with p.claim(8) as claim:
            assert claim.sequence == 0 and len(claim) == 8
            claim.data[:] = b"in-place"
        assert not claim.outstanding
        claim2 = p.claim(100)
        claim2.data[:3] = b"abc"
        claim2.commit(3)  # a prefix of the claim
        with c.read() as frame:
            assert frame.sequence == 0 and bytes(frame.data) == b"in-place" and len(frame) == 8
            assert frame.data.readonly
        with c.read() as frame:
            assert frame.sequence == 1 and bytes(frame.data) == b"abc"
        assert not frame.held


def test_claim_aborts_on_exception(spsc):
    with shmring.SpscProducer(spsc) as p, shmring.SpscConsumer(spsc) as c:
        with pytest.raises(RuntimeError):
            with p.claim(4) as claim:
                claim.data[:] = b"lost"
                raise RuntimeError("boom")
        p.send(b"kept")
        assert c.recv() == b"kept"
        with pytest.raises(TimeoutError):
            c.recv(timeout=0)


def test_released_view_raises_valueerror(spsc):
    with shmring.SpscProducer(spsc) as p, shmring.SpscConsumer(spsc) as c:
        p.send(b"payload")
        with c.read() as frame:
            view = frame.data
            assert bytes(view) == b"payload"
        for access in (lambda: view[0], lambda: bytes(view), lambda: view.tobytes(),
                       lambda: frame.data, lambda: memoryview(view)):
            with pytest.raises(ValueError):
                access()
        with p.claim(4) as claim:
            wview = claim.data
            wview[:] = b"abcd"
        with pytest.raises(ValueError):
            wview[0] = 1
        with pytest.raises(ValueError):
            claim.data
        assert c.recv() == b"abcd"


def test_exported_view_refuses_release_and_keeps_frame(spsc):
    with shmring.SpscProducer(spsc) as p, shmring.SpscConsumer(spsc) as c:
        p.send(b"first")
        p.send(b"second")
        frame = c.read()
        piece = frame.data[1:3]  # a slice: another view of the ring memory
        with pytest.raises(BufferError):
            frame.release()
        assert frame.held and bytes(piece) == b"ir"  # still held: the memory is still ours
        with pytest.raises(BufferError):
            c.recv()  # the next read would release it: refused too
        del piece
        frame.release()
        assert c.recv() == b"second"
        # A numpy array over the frame keeps it held the same way.
        p.send(np.arange(3, dtype=np.int64))
        frame = c.read()
        arr = np.frombuffer(frame.data, dtype=np.int64)
        with pytest.raises(BufferError):
            frame.__exit__(None, None, None)
        assert arr.tolist() == [0, 1, 2]
        del arr
        frame.release()
        assert not frame.held


def test_exported_claim_view_refuses_commit(spsc):
    with shmring.SpscProducer(spsc) as p, shmring.SpscConsumer(spsc) as c:
        claim = p.claim(4)
        arr = np.frombuffer(claim.data, dtype=np.uint8)
        arr[:] = 7
        with pytest.raises(BufferError):
            claim.commit()
        with pytest.raises(ValueError):
            p.send(b"x")  # the claim is still outstanding
        del arr
        claim.commit()
        assert c.recv() == b"\x07" * 4
        # An exception in the block with a view alive: the claim stays outstanding (not
        # published, the view still valid), and the producer aborts it once the view is gone.
        with pytest.raises(KeyError):
            with p.claim(4) as claim:
                arr = np.frombuffer(claim.data, dtype=np.uint8)
                raise KeyError
        assert claim.outstanding
        del arr
        p.send(b"after")
        assert c.recv() == b"after"


def test_next_read_releases_previous_frame(spsc):
    with shmring.SpscProducer(spsc) as p, shmring.SpscConsumer(spsc) as c:
        p.send(b"a")
        p.send(b"b")
        first = c.read()
        view = first.data
        second = c.read()
        assert not first.held and bytes(second.data) == b"b"
        with pytest.raises(ValueError):
            view[0]


def test_iteration_until_closed_and_drained(spsc):
    with shmring.SpscProducer(spsc) as p, shmring.SpscConsumer(spsc) as c:
        for i in range(10):
            p.send(b"%d" % i)
        p.close()
        assert list(c) == [b"%d" % i for i in range(10)]
        with pytest.raises(shmring.ChannelClosed):
            c.recv()
        with pytest.raises(EOFError):  # ChannelClosed is also an EOFError
            c.read(timeout=0)
        with pytest.raises(shmring.ChannelClosed):
            p.send(b"late")
        with pytest.raises(shmring.ChannelClosed):
            p.claim(1)


def test_timeouts(names):
    name = names()
    shmring.create_channel(name, capacity=4096)
    with shmring.SpscProducer(name) as p, shmring.SpscConsumer(name) as c:
        for timeout in (0, 0.05):
            with pytest.raises(TimeoutError):
                c.recv(timeout=timeout)
            with pytest.raises(TimeoutError):
                c.read(timeout=timeout)
            with pytest.raises(TimeoutError):
                c.recv_into(bytearray(10), timeout=timeout)
        sent = fill(p, lambda i: b"x" * 1000)
        for _ in range(sent):
            assert c.recv(timeout=0) == b"x" * 1000
        p.send(b"usable")
        assert c.recv(timeout=1) == b"usable"


def test_bad_data_path_input_leaves_channel_usable(spsc):
    with shmring.SpscProducer(spsc) as p, shmring.SpscConsumer(spsc) as c:
        def still_usable():
            p.send(b"ok")
            assert c.recv(timeout=1) == b"ok"

        bad = [
            (TypeError, lambda: p.send("text")),
            (TypeError, lambda: p.send(12)),
            (TypeError, lambda: p.send(None)),
            (ValueError, lambda: p.send(b"x" * (p.max_frame + 1))),
            (ValueError, lambda: c.recv_into(np.zeros(10, dtype=np.uint8)[::2])),
            (ValueError, lambda: p.send(b"x", timeout=-1)),
            (ValueError, lambda: p.send(b"x", timeout=float("nan"))),
            (TypeError, lambda: p.send(b"x", timeout="1")),
            (TypeError, lambda: p.send(b"x", timeout=True)),
            (ValueError, lambda: p.claim(-1)),
            (ValueError, lambda: p.claim(p.max_frame + 1)),
            (TypeError, lambda: p.claim(1.5)),
            (TypeError, lambda: c.recv_into(b"read-only")),
            (TypeError, lambda: c.recv_into("text")),
            (ValueError, lambda: c.recv(timeout=-0.5)),
        ]
        for exc, call in bad:
            with pytest.raises(exc):
                call()
            still_usable()
        # A buffer too small: ValueError, and the frame stays unread.
        p.send(b"0123456789")
        with pytest.raises(ValueError, match="smaller than the next frame"):
            c.recv_into(bytearray(4))
        assert c.recv() == b"0123456789"
        # Claim misuse.
        claim = p.claim(2)
        with pytest.raises(ValueError):
            claim.commit(3)
        claim.commit()
        with pytest.raises(ValueError):
            claim.commit()
        with pytest.raises(ValueError):
            claim.abort()
        assert len(c.recv()) == 2  # the bytes of an unwritten claim are unspecified
        still_usable()


def test_setup_errors(names):
    name = names()
    for bad in ["", "a/b", "x" * 300, "/.", "/.."]:
        with pytest.raises(ValueError):
            shmring.create_channel(bad)
    with pytest.raises(FileNotFoundError):
        shmring.SpscProducer(name)
    with pytest.raises(FileNotFoundError):
        shmring.remove_channel(name)
    with pytest.raises(ValueError):
        shmring.create_channel(name, capacity=5000)  # not a power of two
    with pytest.raises(ValueError):
        shmring.create_channel(name, capacity=-1)
    with pytest.raises(ValueError):
        shmring.create_channel(name, kind="ring")
    with pytest.raises(TypeError):
        shmring.create_channel(name, kind=3)
    with pytest.raises(TypeError):
        shmring.create_channel(name, capacity="big")
    with pytest.raises(ValueError):
        shmring.SpscProducer(name, wait="sometimes")
    shmring.create_channel(name)
    with pytest.raises(FileExistsError):
        shmring.create_channel(name)
    with pytest.raises(shmring.Error, match="SPSC|MPMC|spsc|mpmc"):
        shmring.MpmcProducer(name)  # wrong kind
    with shmring.SpscProducer(name) as p:
        with pytest.raises(shmring.RoleHeld) as held:
            shmring.SpscProducer(name)
        assert held.value.pid == os.getpid()
        p.detach()
        assert not p.attached
        with pytest.raises(ValueError, match="detached"):
            p.send(b"x")
        p.detach()  # idempotent
    with shmring.SpscProducer(name, wait=shmring.WaitMode.SPIN) as p:  # the role is free again
        assert "SpscProducer" in repr(p)


def test_shared_mode_is_refused_unless_allowed(names):
    name = names()
    shmring.create_channel(name, mode=0o666)
    with pytest.raises(PermissionError):
        shmring.SpscConsumer(name)
    with shmring.SpscConsumer(name, allow_shared_mode=True):
        pass


def test_truncated_segment_is_corrupted(names):
    name = names()
    shmring.create_channel(name, capacity=1 << 16)
    os.truncate("/dev/shm" + name, 8192)
    with pytest.raises(shmring.Corrupted):
        shmring.SpscConsumer(name)


def test_reclaim_stale(names):
    name = names()
    shmring.create_channel(name)
    shmring.create_channel(name, reclaim_stale=True)  # no endpoint alive: recreated
    with shmring.SpscProducer(name):
        with pytest.raises(FileExistsError):
            shmring.create_channel(name, reclaim_stale=True)  # a live endpoint: never touched


def test_mpmc_endpoints_and_limits(names):
    name = names()
    shmring.create_channel(name, kind=shmring.Kind.MPMC, capacity=8, max_frame=64,
                           max_endpoints=3)
    with shmring.MpmcProducer(name) as p, shmring.MpmcConsumer(name) as a, \
            shmring.MpmcConsumer(name) as b:
        with pytest.raises(shmring.NoFreeEndpoint):
            shmring.MpmcConsumer(name)
        assert p.max_frame == 64
        with pytest.raises(ValueError):
            p.send(b"x" * 65)
        for i in range(6):
            p.send(b"%d" % i)
        got = [a.recv(), b.recv(), a.recv(), b.recv()]
        with a.read() as f:
            got.append(bytes(f.data))
        with b.read() as f:
            got.append(bytes(f.data))
        assert got == [b"%d" % i for i in range(6)]
        with p.claim(3) as claim:
            claim.data[:] = b"end"
        p.close()
        assert list(a) == [b"end"]
        assert list(b) == []


def test_mpmc_producers_finish_together_and_counters(names):
    """The stream ends once every attached producer finished: the first to finish does not cut
    the other off; counters are readable by name."""
    name = names()
    shmring.create_channel(name, kind="mpmc", capacity=8, max_frame=64)
    with shmring.MpmcProducer(name) as a, shmring.MpmcProducer(name) as b, \
            shmring.MpmcConsumer(name) as c:
        a.send(b"a0")
        a.finish()
        a.finish()  # idempotent
        with pytest.raises(shmring.ChannelClosed):
            a.send(b"a1")
        b.send(b"b0")
        assert c.recv(timeout=5) == b"a0"
        with c.read(timeout=5) as f:
            assert bytes(f.data) == b"b0" and not f.redelivered
        with pytest.raises(TimeoutError):
            c.recv(timeout=0.05)  # b has not finished: the stream goes on
        b.send(b"b1")
        b.finish()
        assert list(c) == [b"b1"]
        counters = shmring.channel_counters(name)
    assert counters["producers"]["frames"] == 3
    assert counters["consumers"]["frames"] == 3
    assert counters["consumers"]["redelivered"] == 0
    with pytest.raises(FileNotFoundError):
        shmring.channel_counters(names())


def test_blocked_recv_lets_other_threads_run(spsc):
    with shmring.SpscProducer(spsc) as p, shmring.SpscConsumer(spsc, wait="block") as c:
        received = []
        reader = threading.Thread(target=lambda: received.append(c.recv(timeout=60)))
        reader.start()
        # This thread runs Python code while the reader is blocked (it would not get the GIL if
        # the reader held it): it counts, and meanwhile the reader is still waiting.
        count = 0
        deadline = time.monotonic() + 0.2
        while time.monotonic() < deadline:
            count += 1
        assert reader.is_alive() and not received and count > 1000
        with pytest.raises(RuntimeError, match="another thread"):
            c.recv(timeout=0)  # one thread at a time per endpoint
        p.send(b"wake up")
        reader.join(timeout=60)
        assert received == [b"wake up"]


def test_inherited_endpoint_is_refused_in_child(spsc):
    with shmring.SpscProducer(spsc) as p, shmring.SpscConsumer(spsc) as c:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                try:
                    p.send(b"from the child")
                except shmring.InheritedEndpoint:
                    code = 0
                del p  # destroying the inherited object must not detach the parent's endpoint
                import gc
                gc.collect()
            finally:
                os._exit(code)
        os.close(r)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        p.send(b"parent still attached")
        assert c.recv(timeout=5) == b"parent still attached"
        with pytest.raises(shmring.RoleHeld):
            shmring.SpscProducer(spsc)


def test_stubs_match_the_module():
    """_shmring.pyi names exactly the public API of the compiled module (editors rely on it)."""
    import ast

    with open(os.path.join(os.path.dirname(shmring.__file__), "_shmring.pyi")) as f:
        tree = ast.parse(f.read())
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}

    def stub_members(name):
        node = classes[name]
        own = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
        own |= {n.target.id for n in node.body if isinstance(n, ast.AnnAssign)}
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in classes:
                own |= stub_members(base.id)
        return own

    functions = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert functions == {"channel_counters", "create_channel", "remove_channel"}
    enums = ("Kind", "WaitMode", "OverflowPolicy", "StartAt")
    for name in ["Claim", "Frame", "SpscProducer", "SpscConsumer", "MpmcProducer",
                 "MpmcConsumer", "BroadcastPublisher", "BroadcastSubscriber", *enums]:
        runtime = getattr(shmring, name)
        public = {a for a in dir(runtime) if not a.startswith("_")}
        if name in enums:
            public = set(runtime.__members__)
        stub = {m for m in stub_members(name) if not m.startswith("_")}
        assert stub == public, (name, stub ^ public)
