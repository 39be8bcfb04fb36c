"""rabbit_node.py — a private RabbitMQ node for the bridge tests and benchmark.

    with RabbitNode(max_message_size=262144) as node:
        url = node.url          # amqp://shmring:<password>@127.0.0.1:<port>/%2f
        node.restart()          # stop + start with the same data (durable queues survive)

The node has its own name (shmring-test-<pid>-<n>@localhost), AMQP and distribution ports (free
ones), its own epmd on a free port (ERL_EPMD_PORT; never the host's shared epmd on 4369), data,
log and plugin files under a temporary folder, and its own Erlang cookie (HOME). It is never the
system's default node. Started as root, the server runs as the `rabbitmq` user, so the folder
belongs to it.

Cleanup, however the process using the node ends:
- `with` / `close()` (and atexit): SIGTERM to the node's Erlang VM (a graceful stop, as
  `rabbitmqctl stop`), SIGKILL to what is left of its process group, epmd stopped, the folder
  removed;
- SIGTERM / SIGINT / SIGHUP (meson's timeout sends SIGTERM, then SIGKILL 0.5 s later): the
  handler SIGKILLs the node's process group and epmd at once, removes the folder, runs
  `on_signal_hooks`, then raises KeyboardInterrupt so pytest (or any caller) unwinds its
  finalisers;
- SIGKILL, or anything else that skips all of the above: tests/reaper.py, a helper outside the
  process group, does the same when the process is gone.
"""

import atexit
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pika

import reaper

RABBIT_BIN = "/usr/lib/rabbitmq/bin"
EPMD = "/usr/bin/epmd"
_live_nodes = []
on_signal_hooks = []  # called on SIGTERM/SIGINT/SIGHUP after the nodes are gone (e.g. to kill
# the test's children); they must be quick


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _close_all():
    for node in list(_live_nodes):
        node.close()


def _on_signal(signum, _frame):
    # Fast (meson's SIGKILL follows its SIGTERM after 0.5 s): SIGKILL, no `rabbitmqctl`. Further
    # signals (a wrapper forwarding the same SIGTERM) must not cut this short.
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    for node in list(_live_nodes):
        node.close(graceful=False)
    for hook in on_signal_hooks:
        hook()
    for sig in _SIGNALS:  # done: another signal may end the process at once
        signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
    raise KeyboardInterrupt(f"{signal.Signals(signum).name}: the private RabbitMQ node was stopped")


_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
atexit.register(_close_all)
for _sig in _SIGNALS:
    signal.signal(_sig, _on_signal)


class NodeError(RuntimeError):
    pass


def group_alive(pgid):
    return bool(reaper.group_members(pgid))


def _command_name(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


class RabbitNode:
    _count = 0

    def __init__(self, max_message_size=None, start_timeout=120.0):
        RabbitNode._count += 1
        self.name = f"shmring-test-{os.getpid()}-{RabbitNode._count}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        while self.dist_port == self.port:
            self.dist_port = free_port()
        self.epmd_port = free_port()
        while self.epmd_port in (self.port, self.dist_port):
            self.epmd_port = free_port()
        self.epmd = None
        self.user = "shmring"
        self.password = secrets.token_hex(8)
        self.max_message_size = max_message_size
        self.start_timeout = start_timeout
        self.dir = None
        self.proc = None
        self.startup_seconds = None

    @property
    def url(self):
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/%2f"

    def url_with(self, password=None, port=None, vhost="%2f"):
        return (f"amqp://{self.user}:{password or self.password}@127.0.0.1:"
                f"{port or self.port}/{vhost}")

    # ---- lifecycle ----
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self, graceful=True):
        """Stops the node and its epmd and removes its folder; the object is done.
        graceful=False: SIGKILL at once, no graceful stop (for signal handlers)."""
        self.stop(graceful)
        self._stop_epmd()
        self.remove_files()
        self._forget()

    def remove_files(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            reaper.forget("dir", self.dir)
            self.dir = None

    def _as_server_user(self):
        return os.geteuid() == 0

    def _env(self):
        env = dict(os.environ)
        env.update({
            "HOME": self.dir,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": os.path.join(self.dir, "mnesia"),
            "RABBITMQ_LOG_BASE": os.path.join(self.dir, "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(self.dir, "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": os.path.join(self.dir, "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(self.dir, "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": os.path.join(self.dir, "rabbit.pid"),
            "ERL_EPMD_PORT": str(self.epmd_port),
        })
        return env

    def _command(self, argv):
        if self._as_server_user():
            own = ("RABBITMQ_", "HOME", "ERL_EPMD_PORT")
            return ["runuser", "-u", "rabbitmq", "--", "env"] + [
                f"{k}={v}" for k, v in self._env().items() if k.startswith(own)] + argv
        return argv

    def _write_files(self):
        self.dir = tempfile.mkdtemp(prefix="shmring-rabbit-")
        reaper.watch("dir", self.dir)
        conf = [
            f"listeners.tcp.default = 127.0.0.1:{self.port}",
            "loopback_users = none",
            f"default_user = {self.user}",
            f"default_pass = {self.password}",
            "disk_free_limit.absolute = 1MB",
            "log.console = false",
        ]
        if self.max_message_size:
            conf.append(f"max_message_size = {self.max_message_size}")
        with open(os.path.join(self.dir, "rabbitmq.conf"), "w") as f:
            f.write("\n".join(conf) + "\n")
        with open(os.path.join(self.dir, "enabled_plugins"), "w") as f:
            f.write("[].\n")
        open(os.path.join(self.dir, "rabbitmq-env.conf"), "w").close()
        if self._as_server_user():
            pw = pwd.getpwnam("rabbitmq")
            for root, dirs, files in os.walk(self.dir):
                for p in [root] + [os.path.join(root, x) for x in dirs + files]:
                    os.chown(p, pw.pw_uid, pw.pw_gid)

    def _start_epmd(self, deadline):
        """Starts this node's own epmd (the node would otherwise start a daemon no one stops)."""
        if self.epmd is not None and self.epmd.poll() is None:
            return
        self.epmd = subprocess.Popen([EPMD, "-port", str(self.epmd_port)], cwd=self.dir,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        reaper.watch("pid", self.epmd.pid)
        while subprocess.run([EPMD, "-port", str(self.epmd_port), "-names"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode:
            if self.epmd.poll() is not None or time.monotonic() > deadline:
                raise NodeError(f"epmd for the private RabbitMQ node {self.name} on port "
                                f"{self.epmd_port} did not start (exit {self.epmd.poll()}):\n"
                                f"{self._tail()}")
            time.sleep(0.05)

    def _stop_epmd(self):
        if self.epmd is None:
            return
        reaper.forget("pid", self.epmd.pid)
        self.epmd.kill()
        self.epmd.wait()
        self.epmd = None

    def start(self):
        if self.dir is None:
            self._write_files()
        began = time.monotonic()
        deadline = began + self.start_timeout
        self._log = open(os.path.join(self.dir, "server-output.log"), "ab")
        if self not in _live_nodes:
            _live_nodes.append(self)
        try:
            self._start_epmd(deadline)
        except NodeError:
            self.close()
            raise
        self.proc = subprocess.Popen(
            self._command([os.path.join(RABBIT_BIN, "rabbitmq-server")]), env=self._env(),
            cwd=self.dir, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        # Its own session: the pid is the process group of everything the node runs.
        reaper.watch("group", self.proc.pid)
        # Ready when it accepts an AMQP login (cheaper than `rabbitmqctl await_startup`, which
        # starts an Erlang VM per try: 15-20 s on a loaded 2-core machine).
        while not self._accepts_login():
            if self.proc.poll() is not None:
                tail, rc = self._tail(), self.proc.returncode
                self.close()
                raise NodeError(f"private RabbitMQ node {self.name} exited with {rc} while "
                                f"starting:\n{tail}")
            if time.monotonic() > deadline:
                tail = self._tail()
                self.close()
                raise NodeError(f"private RabbitMQ node {self.name} not ready after "
                                f"{self.start_timeout:.0f} s:\n{tail}")
            time.sleep(0.2)
        self.startup_seconds = time.monotonic() - began

    def _accepts_login(self):
        try:
            params = pika.URLParameters(self.url + "?connection_attempts=1&socket_timeout=5")
            pika.BlockingConnection(params).close()
            return True
        except pika.exceptions.AMQPError:
            return False

    def _ctl(self, args, timeout=60):
        try:
            return subprocess.run(
                self._command([os.path.join(RABBIT_BIN, "rabbitmqctl"), "-n", self.name] + args),
                env=self._env(), cwd=self.dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                timeout=timeout)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(args, 124, b"timeout")

    def ctl(self, *args):
        """Runs rabbitmqctl against this node; returns its output (raises on failure)."""
        r = self._ctl(list(args))
        if r.returncode != 0:
            raise NodeError(f"rabbitmqctl {' '.join(args)}: {r.stdout.decode(errors='replace')}")
        return r.stdout.decode(errors="replace")

    def _tail(self):
        try:
            with open(os.path.join(self.dir, "server-output.log"), "rb") as f:
                return f.read()[-3000:].decode(errors="replace")
        except OSError:
            return "(no output)"

    def _forget(self):
        if self in _live_nodes:
            _live_nodes.remove(self)

    def stop(self, graceful=True):
        """Stops the node (SIGTERM to its Erlang VM if graceful, then SIGKILL to what is left of
        its process group); its epmd and folder stay, for start()."""
        if self.proc is None:
            return
        if graceful:
            # The Erlang VM stops the node gracefully on SIGTERM, as `rabbitmqctl stop` does,
            # without starting another VM (15-20 s on a loaded machine). Only the VM gets it, not
            # runuser around it, which would end the session on its own terms.
            for pid in reaper.group_members(self.proc.pid):
                if _command_name(pid) == "beam.smp":
                    os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while group_alive(self.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        # Whatever is left of the node's process group (beam, erl_child_setup, ...).
        deadline = time.monotonic() + 30
        while group_alive(self.proc.pid) and time.monotonic() < deadline:
            reaper.undo("group", str(self.proc.pid))
            time.sleep(0.02)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        if group_alive(self.proc.pid):
            raise NodeError(f"private RabbitMQ node {self.name}: processes "
                            f"{reaper.group_members(self.proc.pid)} survived SIGKILL for 30 s")
        reaper.forget("group", self.proc.pid)
        self.proc = None
        self._log.close()

    def restart(self):
        self.stop()
        self.start()
