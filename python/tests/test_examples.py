"""Every example under examples/python/ runs and succeeds, and the package refuses an interpreter
it was not built for."""

import glob
import os
import subprocess
import sys

import pytest

import shmring
from conftest import unique_name

ROOT = os.environ.get("SHMRING_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "python", "*.py")))
PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(shmring.__file__)))


def run(argv, timeout=300):
    env = dict(os.environ, PYTHONPATH=PACKAGE_DIR)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


def test_there_are_examples():
    names = {os.path.basename(e) for e in EXAMPLES}
    assert {"pipe.py", "prefork_pool.py", "numpy_arrays.py", "broadcast.py"} <= names


@pytest.mark.parametrize("example", EXAMPLES, ids=os.path.basename)
def test_example_runs(example):
    prefix = unique_name(os.path.basename(example)[:-3].replace("_", "-"))
    try:
        result = run([sys.executable, example, prefix])
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip()
    finally:
        for leftover in glob.glob("/dev/shm" + prefix + "*"):
            shmring.remove_channel("/" + os.path.basename(leftover))


def other_interpreters():
    """Interpreters on this machine of another Python version than the build's."""
    found = []
    for path in glob.glob(os.path.expanduser("~/.pyenv/versions/3.*/bin/python3")):
        if not os.path.realpath(path).startswith(os.path.realpath(sys.prefix)):
            found.append(path)
    return found


def test_other_interpreter_gets_a_clear_import_error():
    # Always testable: the build's interpreter, told its ABI tag is another one.
    script = ("import sysconfig; real = sysconfig.get_config_var;"
              "sysconfig.get_config_var = lambda k: '.cpython-399-x.so' if k == 'EXT_SUFFIX' "
              "else real(k); import shmring")
    result = run([sys.executable, "-c", script])
    assert result.returncode != 0
    assert "ImportError: shmring was built for %s" % shmring._build_info.PYTHON in result.stderr
    # And a real other interpreter, if there is one of another version.
    version = "%d.%d" % sys.version_info[:2]
    for python in other_interpreters():
        probe = run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        if probe.returncode != 0 or probe.stdout.strip() == version:
            continue
        result = run([python, "-c", "import shmring"])
        assert result.returncode != 0
        assert "shmring was built for" in result.stderr, result.stderr
        return


def readme_python_example(channel: str) -> str:
    """The code of the ```python block of README.md's Python section that uses `channel`."""
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    section = readme[readme.index("\n## Python\n"):]
    start = 0
    while True:
        start = section.index("```python\n", start) + len("```python\n")
        code = section[start:section.index("```", start)]
        if '"%s"' % channel in code:
            return code


def run_readme_example(channel: str):
    """Runs the README example that uses `channel`, with a unique name instead."""
    code = readme_python_example(channel)
    name = unique_name("readme")
    try:
        result = run([sys.executable, "-c", code.replace('"%s"' % channel, repr(name))],
                     timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()
    finally:
        for leftover in glob.glob("/dev/shm" + name):
            shmring.remove_channel(name)


def test_readme_example_runs():
    """The Python examples in README.md, as shown there (with a unique channel name)."""
    assert run_readme_example("/readme-demo") == [
        "b'message 0'", "1 b'message 1'", "b'message 2'", "b'hello'"]


def test_readme_broadcast_example_runs():
    lines = run_readme_example("/readme-ticks")
    assert sorted(lines) == [
        "0 102",  # the lapped subscriber: received + missed = published
        "0 [b'tick 0', b'tick 1']", "1 [b'tick 0', b'tick 1']"]
