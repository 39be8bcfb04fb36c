"""bridge_test.py — shm-bridge against a real, private RabbitMQ node (tests/rabbit_node.py).

Two channels on this machine stand in for two hosts: A -> `shm-bridge out` -> broker ->
`shm-bridge in` -> B. Frames come from tests/bridge_peer (index + send time + bytes that are a
function of the index, random length); `bridge_peer verify` checks B byte for byte.

Run by meson (suite 'bridge'); SHMRING_BRIDGE_FRAMES sets the end-to-end frame count (the
'stress' suite runs 1M). Needs SHM_BRIDGE, SHM_CAT and BRIDGE_PEER (paths to the executables).
"""

import atexit
import json
import os
import re
import signal
import socket
import struct
import subprocess
import time

import pika
import pytest

import rabbit_node
import reaper
from rabbit_node import RabbitNode, free_port

SHM_BRIDGE = os.environ["SHM_BRIDGE"]
SHM_CAT = os.environ["SHM_CAT"]
PEER = os.environ["BRIDGE_PEER"]
SCALE = float(os.environ.get("SHMRING_TEST_SCALE", "1"))
E2E_FRAMES = int(os.environ.get("SHMRING_BRIDGE_FRAMES", "100000"))
MAX_MESSAGE = 262144  # the private node's max_message_size
GENEROUS = 900  # seconds: a deadline for a condition, never a timing assertion


def scaled(n):
    return max(2000, int(n * SCALE))


# Every channel and process a test creates is removed/killed when the test ends, however it
# ends: by the fixture, atexit, the signal hooks, or (SIGKILL) tests/reaper.py.
_names = []
_children = []


def spawn(argv, **kwargs):
    proc = subprocess.Popen(argv, **kwargs)
    _children.append(proc)
    reaper.watch("pid", proc.pid)
    return proc


def kill_children():
    while _children:
        proc = _children.pop()
        reaper.forget("pid", proc.pid)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def remove_channels():
    while _names:  # unlink, as shm_unlink does: quick enough for a signal handler
        name = _names.pop()
        reaper.undo("shm", name)
        reaper.forget("shm", name)


def finish(proc, what, timeout=GENEROUS):
    """proc's exit code, once it exited; a clear failure if it does not within `timeout`."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} (pid {proc.pid}) still runs after {timeout} s")


atexit.register(remove_channels)
atexit.register(kill_children)  # atexit runs this first
rabbit_node.on_signal_hooks += [kill_children, remove_channels]


def channel(tag, kind="spsc", capacity=1 << 20, max_frame=0):
    name = f"/shmring-test-{os.getpid()}-{tag}-{len(_names)}"
    _names.append(name)
    reaper.watch("shm", name)
    subprocess.run([PEER, "create", name, kind, str(capacity), str(max_frame)], check=True)
    return name


@pytest.fixture(scope="session")
def node():
    with RabbitNode(max_message_size=MAX_MESSAGE) as n:
        print(f"private RabbitMQ node {n.name} ready in {n.startup_seconds:.1f} s")
        yield n


@pytest.fixture(autouse=True)
def cleanup_channels():
    yield
    kill_children()
    remove_channels()


PROGRESS = re.compile(r"(\d+) frames, (\d+) bytes, (\d+) unconfirmed, (\d+) reconnects, "
                      r"(\d+) duplicates dropped, (\d+) republished")


class Bridge:
    """A running shm-bridge with --progress every 0.1 s; stderr kept in a file."""

    def __init__(self, tmp_path, *args):
        self.args = [SHM_BRIDGE, *args, "--progress", "--progress-interval", "0.1"]
        self.err_path = tmp_path / f"bridge-{time.monotonic_ns()}.err"
        self.err = open(self.err_path, "wb")
        self.proc = spawn(self.args, stderr=self.err)

    def stats(self):
        lines = PROGRESS.findall(self.err_path.read_text(errors="replace"))
        if not lines:
            return dict(frames=0, bytes=0, unconfirmed=0, reconnects=0, duplicates=0,
                        republished=0)
        f = [int(x) for x in lines[-1]]
        return dict(frames=f[0], bytes=f[1], unconfirmed=f[2], reconnects=f[3],
                    duplicates=f[4], republished=f[5])

    def wait_frames(self, at_least, what):
        deadline = time.monotonic() + GENEROUS
        while self.stats()["frames"] < at_least:
            assert self.proc.poll() is None, f"{what} exited early: {self.errors()}"
            assert time.monotonic() < deadline, (
                f"{what}: expected at least {at_least} frames within {GENEROUS} s, saw "
                f"{self.stats()}")
            time.sleep(0.05)

    def errors(self):
        return "\n".join(l for l in self.err_path.read_text(errors="replace").splitlines()
                         if not PROGRESS.search(l))

    def kill(self):
        self.proc.kill()
        assert self.proc.wait(timeout=60) == -signal.SIGKILL

    def terminate(self):
        # The first progress line comes after the signal handlers are installed.
        deadline = time.monotonic() + GENEROUS
        while not PROGRESS.search(self.err_path.read_text(errors="replace")):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.proc.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self, timeout=GENEROUS):
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{' '.join(self.args[:3])} still runs after {timeout} s: "
                        f"{self.stats()} {self.errors()}")
        self.err.close()
        return rc


def start_in(tmp_path, node, queue, chan, *extra, exchange=None):
    args = ["in", queue, chan, "--amqp", node.url, "--declare"]
    if exchange:
        args += ["--exchange", exchange]
    b = Bridge(tmp_path, *args, *extra)
    # The queue and its binding must exist before `out` publishes (unroutable messages are
    # kept and published again a second later): wait for the consumer to be registered.
    wait_for_consumer(node, queue, b)
    return b


def wait_for_consumer(node, queue, bridge):
    conn, ch = pika_channel(node)
    try:
        deadline = time.monotonic() + GENEROUS
        while True:
            try:
                if ch.queue_declare(queue, passive=True).method.consumer_count > 0:
                    return
            except pika.exceptions.ChannelClosedByBroker:  # 404: not declared yet
                ch = conn.channel()
            assert bridge.proc.poll() is None, f"in exited before consuming: {bridge.errors()}"
            assert time.monotonic() < deadline, (
                f"queue {queue!r} has no consumer {GENEROUS} s after `in` started: "
                f"{bridge.errors()}")
            time.sleep(0.05)
    finally:
        conn.close()


def start_out(tmp_path, node, chan, exchange, *extra):
    return Bridge(tmp_path, "out", chan, "--amqp", node.url, "--exchange", exchange,
                  "--declare", *extra)


def produce(chan, first, count, max_len, *extra):
    return spawn([PEER, "produce", chan, str(first), str(count), str(max_len),
                             *extra])


def verify(chan, count, max_len, *extra):
    return spawn([PEER, "verify", chan, str(count), str(max_len), "--timeout",
                             str(GENEROUS), *extra], stdout=subprocess.PIPE)


def verdict(proc):
    try:
        out, _ = proc.communicate(timeout=GENEROUS + 60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"bridge_peer verify still runs {GENEROUS + 60} s after its own timeout")
    return json.loads(out)


def test_node_starts(node):
    assert node.startup_seconds > 0
    assert "shmring" in node.ctl("list_users", "--quiet")


def test_end_to_end_random_lengths_byte_exact_in_order(node, tmp_path):
    a, b = channel("e2e-a"), channel("e2e-b")
    n = E2E_FRAMES if E2E_FRAMES >= 1000000 else scaled(E2E_FRAMES)
    bin_ = start_in(tmp_path, node, "e2e-q", b, exchange="e2e-x")
    bout = start_out(tmp_path, node, a, "e2e-x")
    check = verify(b, n, 1024)
    prod = produce(a, 0, n, 1024, "--close")
    result = verdict(check)
    assert finish(prod, "bridge_peer produce") == 0
    assert result["missing"] == 0 and result["corrupt"] == 0, result
    assert result["duplicates"] == 0 and result["out_of_order"] == 0, result
    assert bout.wait() == 0, bout.errors()  # end-of-stream: out drains its confirms and exits
    assert bin_.terminate() == 0, bin_.errors()
    assert bout.stats()["frames"] == n


# The SIGKILL tests: the stream is cut in six chunks; each run of the killed bridge gets a chunk
# of its own, produced (paced, to last about CHUNK_SECONDS) only after that run started, and is
# killed once it handled half a chunk. So the kill point is always reached (a run can never wait
# for frames an earlier run already took), and frames are still flowing when it is.
KILLS = 5
CHUNK_SECONDS = 2.0
KILL_MAX_LEN = 512


def kill_mid_stream(chan, n, bridge, restart, what):
    """Streams frames 0..n-1 into `chan` in KILLS + 1 chunks; SIGKILLs `bridge` mid-chunk KILLS
    times, each time replacing it with restart(). Returns the last run and the last producer."""
    size = n // (KILLS + 1)
    prod = None
    for kill in range(KILLS + 1):
        first, last = kill * size, kill == KILLS
        # One producer at a time: the next chunk starts when the last one is in the ring (the
        # bridge's new run drains it, or out does).
        assert prod is None or finish(prod, "bridge_peer produce") == 0
        count = n - first if last else size
        prod = produce(chan, first, count, KILL_MAX_LEN, "--rate", str(count / CHUNK_SECONDS),
                       *(["--close"] if last else []))
        if last:
            return bridge, prod
        bridge.wait_frames(size // 2, f"{what} run {kill} (chunk of {size} frames from {first})")
        bridge.kill()
        bridge = restart()


def test_out_sigkilled_five_times_loses_nothing(node, tmp_path):
    a, b = channel("kout-a"), channel("kout-b")
    n, window = scaled(60000), 64
    # --keep-duplicates: B sees every resent frame, so the test sees which ones were resent.
    bin_ = start_in(tmp_path, node, "kout-q", b, "--keep-duplicates", exchange="kout-x")
    check = verify(b, n, KILL_MAX_LEN)

    def start():
        return start_out(tmp_path, node, a, "kout-x", "--window", str(window))
    bout, prod = kill_mid_stream(a, n, start(), start, "out")
    result = verdict(check)
    assert bout.wait() == 0, bout.errors()
    assert finish(prod, "bridge_peer produce") == 0
    assert result["missing"] == 0 and result["corrupt"] == 0, result
    # Resent frames are only those unconfirmed at a kill: at most a window per kill, never
    # further behind the newest frame than a window, and new frames stay in order.
    assert result["duplicates"] <= KILLS * window, result
    assert result["max_dup_distance"] < window, result
    assert result["out_of_order"] == 0, result
    assert bin_.terminate() == 0


def test_in_sigkilled_five_times_loses_nothing(node, tmp_path):
    a, b = channel("kin-a"), channel("kin-b")
    n, prefetch = scaled(60000), 64
    bin_ = start_in(tmp_path, node, "kin-q", b, "--prefetch", str(prefetch), exchange="kin-x")
    bout = start_out(tmp_path, node, a, "kin-x")
    check = verify(b, n, KILL_MAX_LEN)
    bin_, prod = kill_mid_stream(a, n, bin_, lambda: Bridge(
        tmp_path, "in", "kin-q", b, "--amqp", node.url, "--prefetch", str(prefetch)), "in")
    result = verdict(check)
    assert finish(prod, "bridge_peer produce") == 0
    assert result["missing"] == 0 and result["corrupt"] == 0, result
    # The broker's redeliveries (delivered, committed, not yet acked at the kill) are the only
    # duplicates: at most prefetch per kill, and in order otherwise.
    assert result["duplicates"] <= KILLS * prefetch, result
    assert result["max_dup_distance"] < prefetch, result
    assert result["out_of_order"] == 0, result
    assert bout.wait() == 0, bout.errors()
    assert bin_.terminate() == 0


def test_broker_restart_mid_stream(node, tmp_path):
    a, b = channel("rst-a"), channel("rst-b")
    n = scaled(40000)
    bin_ = start_in(tmp_path, node, "rst-q", b, exchange="rst-x")
    bout = start_out(tmp_path, node, a, "rst-x", "--persistent")
    check = verify(b, n, 512)
    # The first half before the restart, the second after it: both bridges must reconnect.
    half = n // 2
    assert finish(produce(a, 0, half, 512), "bridge_peer produce") == 0
    bin_.wait_frames(n // 4, "in before the broker restart")
    node.restart()
    prod = produce(a, half, n - half, 512, "--close")
    result = verdict(check)
    assert finish(prod, "bridge_peer produce") == 0
    # Durable queue + persistent messages: nothing lost; what was republished or redelivered
    # around the restart is dropped by in's duplicate rule, so B is exact.
    assert result["missing"] == 0 and result["corrupt"] == 0, result
    assert result["duplicates"] == 0 and result["out_of_order"] == 0, result
    assert bout.wait() == 0, bout.errors()
    assert bout.stats()["reconnects"] >= 1
    deadline = time.monotonic() + GENEROUS  # in reconnects after its backoff (up to 5 s)
    while bin_.stats()["reconnects"] < 1:
        assert time.monotonic() < deadline and bin_.proc.poll() is None, bin_.errors()
        time.sleep(0.05)
    assert bin_.terminate() == 0, bin_.errors()


# ---- interop with a plain Python AMQP client (pika) ----

def mix(x):
    m = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    return x ^ (x >> 31)


def peer_frame(index, max_len):
    """The frame bridge_peer produces for `index` (the send-time field is 0 here)."""
    size = 16 + mix(index) % (max_len - 16 + 1)
    seed = mix(index ^ 0x5555)
    tail = bytes(((seed >> ((i % 8) * 8)) + i) & 0xFF for i in range(16, size))
    return struct.pack("<QQ", index, 0) + tail


def pika_channel(node):
    params = pika.URLParameters(node.url)
    conn = pika.BlockingConnection(params)
    return conn, conn.channel()


def test_interop_pika_consumes_what_out_publishes(node, tmp_path):
    a = channel("pika-out")
    n = 500
    conn, ch = pika_channel(node)
    ch.exchange_declare("pika-x", exchange_type="topic", durable=True)
    ch.queue_declare("pika-q", durable=True)
    ch.queue_bind("pika-q", "pika-x", routing_key="quotes.#")
    subprocess.run([PEER, "produce", a, "0", str(n), "300", "--close"], check=True)
    bout = start_out(tmp_path, node, a, "pika-x", "--routing-key", "quotes.a", "--persistent",
                     "--exchange-type", "topic")
    assert bout.wait() == 0, bout.errors()
    got = []
    for method, props, body in ch.consume("pika-q", inactivity_timeout=30):
        assert method is not None, f"only {len(got)} of {n} messages"
        got.append((props, body))
        ch.basic_ack(method.delivery_tag)
        if len(got) == n:
            break
    ch.cancel()
    conn.close()
    for i, (props, body) in enumerate(got):
        assert body[:8] == struct.pack("<Q", i) and body[16:] == peer_frame(i, 300)[16:]
        assert props.headers["x-shmring-seq"] == i
        assert props.headers["x-shmring-host"] == socket.gethostname()
        assert props.headers["x-shmring-channel"] == a
        assert props.headers["x-shmring-kind"] == "spsc"
        assert props.delivery_mode == 2
        assert props.content_type == "application/octet-stream"


def test_interop_pika_publishes_what_in_commits(node, tmp_path):
    b = channel("pika-in")
    n = 500
    bin_ = start_in(tmp_path, node, "pika-in-q", b)
    check = verify(b, n, 300)
    conn, ch = pika_channel(node)
    ch.confirm_delivery()
    for i in range(n):
        # Half with the bridge's headers (as from another host's out), half plain messages.
        headers = ({"x-shmring-host": "far", "x-shmring-channel": "/x", "x-shmring-seq": i,
                    "x-shmring-kind": "spsc"} if i % 2 else None)
        ch.basic_publish("", "pika-in-q", peer_frame(i, 300),
                         pika.BasicProperties(headers=headers, delivery_mode=2))
    # A duplicate of an odd (header-carrying) message is dropped by the duplicate rule.
    ch.basic_publish("", "pika-in-q", peer_frame(1, 300), pika.BasicProperties(
        headers={"x-shmring-host": "far", "x-shmring-channel": "/x", "x-shmring-seq": 1,
                 "x-shmring-kind": "spsc"}))
    conn.close()
    result = verdict(check)
    assert result["missing"] == 0 and result["corrupt"] == 0 and result["duplicates"] == 0
    deadline = time.monotonic() + GENEROUS
    while bin_.stats()["duplicates"] < 1:
        assert time.monotonic() < deadline, bin_.stats()
        time.sleep(0.05)
    assert bin_.terminate() == 0


def test_mpmc_channels_both_ways(node, tmp_path):
    a = channel("mpmc-a", "mpmc", 1 << 18, 1008)
    b = channel("mpmc-b", "mpmc", 1 << 18, 1008)
    n = scaled(20000)
    bin_ = start_in(tmp_path, node, "mpmc-q", b, exchange="mpmc-x")
    bout = start_out(tmp_path, node, a, "mpmc-x", "--mpmc-holders", "16")
    check = verify(b, n, 1000)
    prod = produce(a, 0, n, 1000, "--close")
    result = verdict(check)
    assert finish(prod, "bridge_peer produce") == 0
    assert result["missing"] == 0 and result["corrupt"] == 0, result
    assert result["duplicates"] == 0 and result["out_of_order"] == 0, result
    assert bout.wait() == 0, bout.errors()
    assert bin_.terminate() == 0


# ---- bad inputs: one line on stderr, the documented exit code ----

def run(*args, timeout=120):
    r = subprocess.run([SHM_BRIDGE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    err = r.stderr.decode(errors="replace")
    return r.returncode, err


def one_line(err):
    assert err.endswith("\n") and err.count("\n") == 1, repr(err)
    return err


def test_bad_inputs(node, tmp_path):
    a = channel("bad-a")
    url = node.url
    rc, err = run("out", a, "--amqp", node.url_with(port=free_port()), "--exchange", "x")
    assert rc == 2 and "cannot connect" in one_line(err)
    rc, err = run("out", a, "--amqp", node.url_with(password="wrong-password"), "--exchange", "x")
    assert rc == 2 and "login" in one_line(err) and "wrong-password" not in err
    assert node.password not in err
    rc, err = run("out", a, "--amqp", node.url_with(vhost="novhost"), "--exchange", "x")
    assert rc == 2 and "novhost" in one_line(err)
    rc, err = run("out", a, "--amqp", url, "--exchange", "no-such-exchange")
    assert rc == 2 and "404" in one_line(err) and "no-such-exchange" in err
    assert node.password not in err
    rc, err = run("in", "no-such-queue", a, "--amqp", url)
    assert rc == 2 and "404" in one_line(err) and "no-such-queue" in err
    missing = f"/shmring-test-{os.getpid()}-does-not-exist"
    rc, err = run("out", missing, "--amqp", url, "--exchange", "x", "--declare")
    assert rc == 2 and missing in one_line(err)
    rc, err = run("in", "q", missing, "--amqp", url, "--declare")
    assert rc == 2 and missing in one_line(err)
    rc, err = run("out", a, "--amqp", "http://example.com", "--exchange", "x")
    assert rc == 2 and "bad AMQP URL" in one_line(err)
    rc, err = run("out", a, "--exchange", "x")  # no --amqp, no SHMRING_AMQP_URL
    assert rc == 1 and "--amqp" in one_line(err)
    rc, err = run("sideways", a)
    assert rc == 1
    rc, err = run("out", a, "--amqp", url, "--exchange", "x", "--window", "0")
    assert rc == 1
    rc, _ = run("--help")
    assert rc == 0


def test_frame_larger_than_the_broker_accepts(node, tmp_path):
    big = MAX_MESSAGE + 1000
    a = channel("big", capacity=1 << 20)
    subprocess.run([PEER, "produce", a, "0", "3", "64"], check=True)
    # One frame larger than the node's max_message_size, then a small one.
    subprocess.run([PEER, "produce", a, "3", "1", str(big), "--fixed"], check=True)
    subprocess.run([PEER, "produce", a, "4", "1", "64", "--close"], check=True)
    conn, ch = pika_channel(node)
    ch.exchange_declare("big-x", durable=True)
    ch.queue_declare("big-q", durable=True)
    ch.queue_bind("big-q", "big-x", routing_key="")
    conn.close()
    rc, err = run("out", a, "--amqp", node.url, "--exchange", "big-x")
    assert rc == 2 and "406" in one_line(err) and f"seq 3, {big} bytes" in err, err
    # Nothing lost: the refused frame, what follows, and whatever before it was not confirmed
    # when the broker closed the channel are still in the channel (closed: recv drains it).
    r = subprocess.run([SHM_CAT, "recv", a, "--timeout", "10"], stdout=subprocess.PIPE,
                       check=True)
    small = len(peer_frame(4, 64))
    unconfirmed_before = [sum(len(peer_frame(i, 64)) for i in range(k, 3)) for k in range(4)]
    assert len(r.stdout) - big - small in unconfirmed_before, len(r.stdout)
    assert r.stdout[-small:][:8] == struct.pack("<Q", 4)
    assert r.stdout[-small - big:][:8] == struct.pack("<Q", 3)


def test_message_larger_than_the_channel_stays_in_the_queue(node, tmp_path):
    b = channel("small", capacity=4096, max_frame=100)
    conn, ch = pika_channel(node)
    ch.queue_declare("small-q", durable=True)
    ch.basic_publish("", "small-q", b"x" * 200)
    rc, err = run("in", "small-q", b, "--amqp", node.url)
    assert rc == 2 and "larger than the channel's max frame" in one_line(err)
    method, _, body = ch.basic_get("small-q", auto_ack=True)
    assert method is not None and body == b"x" * 200
    conn.close()


def test_unroutable_messages_are_kept_until_a_queue_is_bound(node, tmp_path):
    a, b = channel("unr-a"), channel("unr-b")
    n = 2000
    prod = produce(a, 0, n, 256, "--close")
    bout = start_out(tmp_path, node, a, "unr-x")  # no queue bound to unr-x yet
    deadline = time.monotonic() + GENEROUS
    while "unroutable" not in bout.err_path.read_text() or not re.search(
            r"[1-9]\d* unroutable", bout.err_path.read_text()):
        assert time.monotonic() < deadline and bout.proc.poll() is None, bout.errors()
        time.sleep(0.05)
    assert bout.stats()["frames"] == 0  # nothing confirmed-and-dropped
    check = verify(b, n, 256)
    bin_ = start_in(tmp_path, node, "unr-q", b, exchange="unr-x")
    result = verdict(check)
    assert result["missing"] == 0 and result["duplicates"] == 0 and result["corrupt"] == 0, result
    assert finish(prod, "bridge_peer produce") == 0
    assert bout.wait() == 0, bout.errors()
    assert bin_.terminate() == 0


def test_sigterm_exits_zero_after_confirms(node, tmp_path):
    a, b = channel("term-a"), channel("term-b")
    start_in(tmp_path, node, "term-q", b, exchange="term-x")
    bout = start_out(tmp_path, node, a, "term-x")
    subprocess.run([PEER, "produce", a, "0", "100", "64"], check=True)
    bout.wait_frames(100, "out")
    assert bout.terminate() == 0
    assert bout.stats()["unconfirmed"] == 0
