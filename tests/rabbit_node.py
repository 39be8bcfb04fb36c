"""rabbit_node.py — a private RabbitMQ node for the bridge tests and benchmark.

    with RabbitNode(max_message_size=262144) as node:
        url = node.url          # amqp://shmring:<password>@127.0.0.1:<port>/%2f
        node.restart()          # stop + start with the same data (durable queues survive)

The node has its own name (shmring-test-<pid>-<n>@localhost), AMQP and distribution ports (free
ones), data, log and plugin files under a temporary folder, and its own Erlang cookie (HOME). It
is never the system's default node. Started as root, the server runs as the `rabbitmq` user, so
the folder belongs to it. The node is stopped by `stop()`, at exit and on SIGTERM/SIGINT/SIGHUP
(`rabbitmqctl stop`, then SIGKILL to its process group). epmd (port 4369) is shared by every
Erlang node on the host and is left running: it outlives the node by design.
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

RABBIT_BIN = "/usr/lib/rabbitmq/bin"
_live_nodes = []
on_signal_hooks = []  # called first on SIGTERM/SIGINT/SIGHUP (e.g. to kill the test's children)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_all():
    for node in list(_live_nodes):
        node.stop()
        node.remove_files()


def _on_signal(signum, _frame):
    for hook in on_signal_hooks:
        hook()
    _stop_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


atexit.register(_stop_all)
for _sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(_sig, _on_signal)


class NodeError(RuntimeError):
    pass


class RabbitNode:
    _count = 0

    def __init__(self, max_message_size=None, start_timeout=120.0):
        RabbitNode._count += 1
        self.name = f"shmring-test-{os.getpid()}-{RabbitNode._count}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        while self.dist_port == self.port:
            self.dist_port = free_port()
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
        self.stop()
        self.remove_files()

    def remove_files(self):
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
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
        })
        return env

    def _command(self, argv):
        if self._as_server_user():
            return ["runuser", "-u", "rabbitmq", "--", "env"] + [
                f"{k}={v}" for k, v in self._env().items() if k.startswith(("RABBITMQ_", "HOME"))
            ] + argv
        return argv

    def _write_files(self):
        self.dir = tempfile.mkdtemp(prefix="shmring-rabbit-")
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

    def start(self):
        if self.dir is None:
            self._write_files()
        began = time.monotonic()
        self._log = open(os.path.join(self.dir, "server-output.log"), "ab")
        self.proc = subprocess.Popen(
            self._command([os.path.join(RABBIT_BIN, "rabbitmq-server")]), env=self._env(),
            cwd=self.dir, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        _live_nodes.append(self)
        deadline = began + self.start_timeout
        while True:
            if self.proc.poll() is not None:
                tail = self._tail()
                self._forget()
                raise NodeError(f"private RabbitMQ node {self.name} exited with "
                                f"{self.proc.returncode} while starting:\n{tail}")
            if time.monotonic() > deadline:
                self.stop()
                raise NodeError(f"private RabbitMQ node {self.name} not ready after "
                                f"{self.start_timeout:.0f} s:\n{self._tail()}")
            if self._ctl(["await_startup", "--timeout", "10"], timeout=20).returncode == 0:
                break
            time.sleep(0.5)
        self.startup_seconds = time.monotonic() - began

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
            self._log.flush()
            with open(os.path.join(self.dir, "server-output.log"), "rb") as f:
                return f.read()[-3000:].decode(errors="replace")
        except OSError:
            return "(no output)"

    def _forget(self):
        if self in _live_nodes:
            _live_nodes.remove(self)

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._ctl(["stop"], timeout=60)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever is left of the node's process group (beam, erl_child_setup, ...)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self.proc = None
        self._log.close()
        self._forget()

    def restart(self):
        self.stop()
        self.start()
