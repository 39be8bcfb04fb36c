"""bench/python_bench.py still runs (tiny counts) and reports every transport and goal."""

import json
import os
import subprocess
import sys

import shmring

ROOT = os.environ.get("SHMRING_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")


def test_python_bench_quick():
    env = dict(os.environ,
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(shmring.__file__))))
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "python_bench.py"),
                          "--quick", "--json", "--cpp-bench", ""],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    transports = {"shmring", "mp.Pipe", "mp.Queue", "os.pipe", "shared_memory+Queue"}
    assert set(result["latency"]) == transports
    assert transports <= set(result["throughput"])
    for by_size in result["throughput"].values():
        assert set(by_size) == {"64", "4096", "1048576"} and all(v > 0 for v in by_size.values())
    assert result["goals"]["latency_64B_p50_vs_mp_pipe"] > 0
    assert result["goals"]["throughput_1MiB_vs_mp_queue"] > 0
    assert result["binding"]["send+recv"] > 0
