"""reaper.py — cleanup that survives the death of the test process, however it dies.

    import reaper
    reaper.watch("group", pgid)     # SIGKILL this process group if the test process dies
    reaper.watch("pid", pid)        # SIGKILL this process (if it is still the same one)
    reaper.watch("dir", path)       # remove this folder
    reaper.watch("shm", "/name")    # remove this POSIX shm object (/dev/shm/name)
    reaper.forget("pid", pid)       # cleaned up normally: nothing left to do for it

The first call starts a small helper process in a session of its own (so a signal or SIGKILL
sent to the test's process group, as meson's timeout sends, does not reach it). It reads what
to watch from a pipe that only the test process holds open; when the pipe closes — the test
process exited normally, raised, or was SIGKILLed — it undoes everything still watched, then
exits. Normal cleanup forgets what it removed, so the helper then has nothing to do.

A process is identified by its pid and its start time (/proc/PID/stat), so a reused pid is
never killed. Run as `python3 reaper.py` it is the helper itself.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

_helper = None


def start_time(pid):
    """The start time of process `pid` in clock ticks since boot, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # Fields after the command name (which may contain spaces and parentheses): state is
    # field 3, starttime field 22.
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def group_members(pgid):
    """The pids of the live processes in process group `pgid` (zombies excluded)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != b"Z":
            members.append(int(entry))
    return members


def _send(line):
    global _helper
    if _helper is None or _helper.poll() is not None:
        _helper = subprocess.Popen([sys.executable, os.path.abspath(__file__)],
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, bufsize=0,
                                   start_new_session=True)
    # One unbuffered write per line (atomic on a pipe): a signal handler that calls forget()
    # while the program is in watch() does not meet a half-written line or a reentrant buffer.
    try:
        os.write(_helper.stdin.fileno(), line.encode() + b"\n")
    except BrokenPipeError:
        pass  # the helper was killed: nothing more can be handed to it


def _key(kind, what):
    if kind == "pid":
        return f"{what} {start_time(what)}"
    return str(what)


def watch(kind, what):
    """Undo `what` if the test process dies before forget(kind, what). kind: group|pid|dir|shm."""
    _send(f"+ {kind} {_key(kind, what)}")


def forget(kind, what):
    """`what` was cleaned up (or is about to be, by the caller): the helper leaves it alone."""
    if _helper is not None:
        _send(f"- {kind} {_key(kind, what)}")


def undo(kind, key):
    """Removes one watched thing, quietly if it is already gone."""
    if kind == "group":
        try:
            os.killpg(int(key), signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    elif kind == "pid":
        pid, started = key.split(" ", 1)
        if started != "None" and str(start_time(int(pid))) == started:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
    elif kind == "dir":
        shutil.rmtree(key, ignore_errors=True)
    elif kind == "shm":
        try:
            os.unlink("/dev/shm/" + key.lstrip("/"))
        except OSError:
            pass


def _helper_main():
    # Only the end of the pipe ends this process: signals aimed at the test's processes
    # (Ctrl-C in a terminal, a broad SIGTERM) must not stop it before it did its work.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    watched = {}  # (kind, key) -> insertion order, so processes die before their folders go
    for line in sys.stdin.buffer:
        op, kind, key = line.decode().rstrip("\n").split(" ", 2)
        if op == "+":
            watched[(kind, key)] = len(watched)
        else:
            watched.pop((kind, key), None)
    order = {"pid": 0, "group": 1, "shm": 2, "dir": 3}
    for kind, key in sorted(watched, key=lambda k: (order[k[0]], watched[k])):
        undo(kind, key)
        if kind == "group":  # its processes may hold files in a watched folder: let them die
            for _ in range(100):
                if not group_members(int(key)):
                    break
                time.sleep(0.02)


if __name__ == "__main__":
    _helper_main()
