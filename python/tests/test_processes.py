"""The binding between real processes: multiprocessing (fork and spawn) and os.fork, crashes
(SIGKILL), signals (SIGINT during a blocking recv). No timing assertions: generous deadlines and
polled conditions only."""

import multiprocessing
import os
import signal
import time

import pytest

import shmring
from _workers import HEADER, consume_checked, payload, produce, scaled

DEADLINE = 120  # seconds; only a hang reaches it


def wait_exit(pid: int, deadline: float = DEADLINE) -> int:
    """waitpid with a deadline (the child is killed if it passes); returns the exit code."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("child %d still running after %s s" % (pid, deadline))


def fork(body) -> int:
    """os.fork a child that runs body() and exits 0, or 1 on an exception (printed)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            body()
            code = 0
        except BaseException:  # noqa: BLE001 - report anything, including KeyboardInterrupt
            import traceback
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_million_messages_exactly_once_in_order(spsc, method):
    count = scaled(1_000_000)
    ctx = multiprocessing.get_context(method)
    producer = ctx.Process(target=produce, args=(spsc, count))
    producer.start()
    try:
        received = 0
        with shmring.SpscConsumer(spsc) as c:
            for message in c:
                assert int.from_bytes(message[:HEADER], "little") == received
                assert message == payload(received)
                received += 1
        assert received == count
    finally:
        producer.join(DEADLINE)
        if producer.is_alive():
            producer.kill()
    assert producer.exitcode == 0


def test_zero_copy_reads_in_os_fork_child(spsc):
    count = scaled(300_000)
    pid = fork(lambda: consume_checked(spsc, count))
    produce(spsc, count, size=64)
    assert wait_exit(pid) == 0


def hold_until_killed(consumer, report_fd: int, skip: int = 0) -> None:
    """Child body: receive `skip` frames, read the next one and hold it (never released),
    report its sequence number and payload index on `report_fd`, and wait to be killed."""
    for _ in range(skip):
        consumer.recv()
    frame = consumer.read()
    os.write(report_fd, frame.sequence.to_bytes(8, "little") + bytes(frame.data[:HEADER]))
    while True:
        time.sleep(60)


def kill_holder(body):
    """Fork body() (a hold_until_killed), wait for its report, SIGKILL it while it holds its
    frame. Returns (pid, sequence, payload index) of the frame it held."""
    r, w = os.pipe()
    try:
        pid = fork(lambda: body(w))
        report = os.read(r, 16)
        os.kill(pid, signal.SIGKILL)
        assert wait_exit(pid) == -signal.SIGKILL
    finally:
        os.close(r)
        os.close(w)
    return pid, int.from_bytes(report[:8], "little"), int.from_bytes(report[8:], "little")


def test_spsc_consumer_sigkill_hand_over(spsc):
    """A consumer killed while it holds a frame: the next consumer starts with that frame."""
    count = 1000
    with shmring.SpscProducer(spsc) as p:
        for i in range(count):
            p.send(payload(i))
        _, held, index = kill_holder(
            lambda w: hold_until_killed(shmring.SpscConsumer(spsc), w, skip=100))
        assert held == index == 100
        p.close()
        with shmring.SpscConsumer(spsc) as c:  # takes the dead process's role over
            rest = [int.from_bytes(m[:HEADER], "little") for m in c]
        assert rest == list(range(held, count))


def test_spsc_role_held_names_the_live_holder(spsc):
    r, w = os.pipe()
    try:
        pid = fork(lambda: hold_until_killed(shmring.SpscConsumer(spsc), w))
        with shmring.SpscProducer(spsc) as p:
            p.send(payload(0))
            os.read(r, 16)  # the child holds the consumer role now
            with pytest.raises(shmring.RoleHeld) as busy:
                shmring.SpscConsumer(spsc)
            assert busy.value.pid == pid
    finally:
        os.kill(pid, signal.SIGKILL)
        wait_exit(pid)
        os.close(r)
        os.close(w)


def test_parent_death_is_seen_while_its_forked_child_lives(spsc):
    """A child forked after its parent attached does not keep the parent's endpoint alive: once
    the parent is SIGKILLed its role can be taken over, although the child still runs."""
    r, w = os.pipe()

    def parent():
        producer = shmring.SpscProducer(spsc)  # attached, then fork: alive in both processes
        if os.fork() == 0:
            os.write(w, os.getpid().to_bytes(4, "little"))
        while producer.attached:  # both wait to be killed
            time.sleep(60)

    pid = fork(parent)
    grandchild = int.from_bytes(os.read(r, 4), "little")
    try:
        os.kill(pid, signal.SIGKILL)
        assert wait_exit(pid) == -signal.SIGKILL
        os.kill(grandchild, 0)  # still alive
        with shmring.SpscProducer(spsc) as p:  # the dead parent's role, taken over
            assert p.attached
    finally:
        os.kill(grandchild, signal.SIGKILL)
        os.close(r)
        os.close(w)


def test_mpmc_consumer_sigkill_redelivers_held_frame(name):
    """A worker killed mid-job: its job is delivered to another consumer; none is lost."""
    shmring.create_channel(name, kind="mpmc", capacity=64, max_frame=64)
    jobs = 50
    with shmring.MpmcProducer(name) as p:
        for i in range(jobs):
            p.send(payload(i))
        _, _, killed_job = kill_holder(lambda w: hold_until_killed(shmring.MpmcConsumer(name), w))
        p.close()
        got, redelivered = [], []
        with shmring.MpmcConsumer(name) as c:
            while True:
                try:
                    f = c.read(timeout=10)
                except shmring.ChannelClosed:
                    break
                with f:
                    job = int.from_bytes(f.data[:HEADER], "little")
                    got.append(job)
                    if f.redelivered:
                        redelivered.append(job)
    assert killed_job == 0
    assert sorted(got) == list(range(jobs))  # the killed worker's job included, exactly once
    assert redelivered == [killed_job]  # flagged, so a worker can deduplicate side effects
    assert shmring.channel_counters(name)["consumers"]["redelivered"] == 1


def process_state(pid: int) -> str:
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@pytest.mark.parametrize("wait", ["hybrid", "block"])
def test_keyboard_interrupt_during_blocking_recv(spsc, wait):
    r, w = os.pipe()

    def blocked():
        with shmring.SpscConsumer(spsc, wait=wait) as c:
            os.write(w, b"r")
            try:
                c.recv()
            except KeyboardInterrupt:
                os.write(w, b"k")
                return
            raise AssertionError("recv returned")

    with shmring.SpscProducer(spsc):  # alive, silent: the child's recv blocks
        pid = fork(blocked)
        assert os.read(r, 1) == b"r"
        # Poll until the child sleeps (in the futex wait, after its spin phase).
        end = time.monotonic() + DEADLINE
        while process_state(pid) != "S" and time.monotonic() < end:
            time.sleep(0.005)
        os.kill(pid, signal.SIGINT)
        assert os.read(r, 1) == b"k"
        assert wait_exit(pid) == 0
    os.close(r)
    os.close(w)
