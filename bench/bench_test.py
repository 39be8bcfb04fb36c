#!/usr/bin/env python3
"""bench_test.py — behaviour of shmring-bench's command line (not its speed).

  bench/bench_test.py build/bench/shmring-bench

Checks the documented JSON keys, that counts and percentiles are consistent, that paired runs
(--against) report both transports, that --capacity is reported where it applies, that bad
arguments exit 2 with one line, and that nothing is left in /dev/shm. Exit 0 when every check passes.
"""
import json
import os
import subprocess
import sys

LATENCY_KEYS = {"transport", "size", "wait", "count", "p50_ns", "p90_ns", "p99_ns", "p999_ns",
                "max_ns", "mean_ns"}
THROUGHPUT_KEYS = {"transport", "size", "wait", "count", "msgs_per_s", "bytes_per_s"}
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def bench(*args, expect=0):
    p = subprocess.run([BENCH, *args], capture_output=True, text=True, timeout=300)
    check(p.returncode == expect,
          f"{' '.join(args)}: exit {p.returncode}, wanted {expect}; stderr: {p.stderr.strip()}")
    return p


def results(*args):
    p = bench(*args, "--json")
    return [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]


def check_latency(r, transport, count):
    check(LATENCY_KEYS <= r.keys(), f"latency keys of {r}")
    check(r["transport"] == transport and r["count"] == count, f"transport/count of {r}")
    p = [r[k] for k in ("p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns")]
    check(all(v > 0 for v in p) and p == sorted(p), f"percentiles in order: {r}")


def check_throughput(r, transport, count, size):
    check(THROUGHPUT_KEYS <= r.keys(), f"throughput keys of {r}")
    check(r["transport"] == transport and r["count"] == count and r["size"] == size,
          f"transport/count/size of {r}")
    check(r["msgs_per_s"] > 0 and abs(r["bytes_per_s"] - r["msgs_per_s"] * size) <= size,
          f"rates of {r}")


FANOUTS = ["shmring-spsc-fanout", "shmring-broadcast"]


def check_fanout(r, transport, subscribers, count, size):
    """A fan-out result: the point-to-point keys, plus each subscriber's and the summary keys."""
    check(r.get("subscribers") == subscribers and len(r.get("per_subscriber", [])) == subscribers,
          f"{transport}: subscribers of {r}")
    each = r.get("per_subscriber", [])
    if "p50_ns" in r:
        check_latency(r, transport, count)
        for s in each + [r.get("slowest", {})]:
            check(LATENCY_KEYS - {"transport", "size", "wait", "count"} <= s.keys(),
                  f"{transport}: latency keys of {s}")
        # The slowest subscriber of each round trip bounds every subscriber's percentiles.
        check(all(r["slowest"][k] >= s[k] for s in each for k in ("p50_ns", "p99_ns", "p999_ns")),
              f"{transport}: slowest dominates: {r}")
    else:
        check_throughput(r, transport, count, size)
        rates = [s["msgs_per_s"] for s in each]
        check(all(v > 0 for v in rates) and abs(r["msgs_per_s"] - min(rates)) <= 1 and
              abs(r["total_msgs_per_s"] - sum(rates)) <= subscribers and
              abs(r["total_bytes_per_s"] - sum(rates) * size) <= subscribers * size,
              f"{transport}: per subscriber / slowest / total rates of {r}")


def check_fanouts(available):
    """Each fan-out transport this build has: latency and streams with several subscribers, paired
    with the other fan-out transport and (one subscriber) with shmring-spsc."""
    for t in [f for f in FANOUTS if f in available]:
        (r,) = results("latency", "--transport", t, "--wait", "hybrid", "--size", "64",
                       "--count", "300", "--subscribers", "3")
        check_fanout(r, t, 3, 300, 64)
        (r,) = results("throughput", "--transport", t, "--wait", "hybrid", "--size", "4K",
                       "--count", "3000", "--subscribers", "2")
        check_fanout(r, t, 2, 3000, 4096)
        rs = results("latency", "--transport", t, "--wait", "spin", "--size", "64", "--count",
                     "300", "--against", "shmring-spsc")
        check(len(rs) == 2 and rs[1]["transport"] == "shmring-spsc" and "subscribers" not in rs[1],
              f"{t} against shmring-spsc: {rs}")
        if len(rs) == 2:
            check_fanout(rs[0], t, 1, 300, 64)
        other = [f for f in FANOUTS if f in available and f != t] or [t]
        rs = results("throughput", "--transport", t, "--size", "64", "--count", "20000",
                     "--subscribers", "2", "--against", other[0])
        check(len(rs) == 2 and rs[0]["paired_with"] == other[0], f"{t} against {other[0]}: {rs}")
        for r in rs:
            check_fanout(r, r["transport"], 2, 20000, 64)
        p = bench("latency", "--transport", t, "--size", "64", "--count", "300",
                  "--subscribers", "2")
        check("slowest subscriber" in p.stdout, f"{t}: human output: {p.stdout}")


def main():
    before = set(os.listdir("/dev/shm"))
    mq_before = set(os.listdir("/dev/mqueue")) if os.path.isdir("/dev/mqueue") else set()
    # One transport.
    (r,) = results("latency", "--transport", "shmring-spsc", "--wait", "spin", "--size", "64",
                   "--count", "300")
    check_latency(r, "shmring-spsc", 300)
    check(r["wait"] == "spin" and "paired_with" not in r, f"single run: {r}")
    (r,) = results("throughput", "--transport", "shmring-spsc", "--size", "100", "--count",
                   "20000")
    check_throughput(r, "shmring-spsc", 20000, 100)
    # Side by side: both transports, each the full count, each naming the other.
    rs = results("latency", "--transport", "shmring-spsc", "--wait", "block", "--size", "64",
                 "--count", "2500", "--against", "eventfd")
    check(len(rs) == 2, f"--against prints two results: {rs}")
    if len(rs) == 2:
        check_latency(rs[0], "shmring-spsc", 2500)
        check_latency(rs[1], "eventfd", 2500)
        check(rs[0]["paired_with"] == "eventfd" and rs[1]["paired_with"] == "shmring-spsc",
              f"paired_with: {rs}")
    # 4 KiB blocks are 2048 frames: 5000 frames is two full blocks and a short one per side.
    rs = results("throughput", "--transport", "shmring-spsc", "--wait", "spin", "--size", "4K",
                 "--count", "5000", "--against", "pipe")
    check(len(rs) == 2, f"--against prints two results: {rs}")
    if len(rs) == 2:
        check_throughput(rs[0], "shmring-spsc", 5000, 4096)
        check_throughput(rs[1], "pipe", 5000, 4096)
    p = bench("latency", "--transport", "shmring-mpmc", "--size", "64", "--count", "300",
              "--against", "floor")
    check("measured side by side" in p.stdout, f"human output names the ratio: {p.stdout}")
    check("alternating in blocks of 75" in p.stdout, f"blocks of a quarter of 300: {p.stdout}")
    # Two transports of one kind (their named objects must not collide), and a short count still
    # alternates.
    rs = results("latency", "--transport", "shmring-spsc", "--size", "64", "--count", "40",
                 "--against", "shmring-spsc")
    check(len(rs) == 2 and all(r["count"] == 40 for r in rs), f"self-pair: {rs}")
    rs = results("throughput", "--transport", "posix-mq", "--size", "64", "--count", "1000",
                 "--against", "posix-mq")
    check(len(rs) == 2 and all(r["count"] == 1000 for r in rs), f"posix-mq self-pair: {rs}")
    # --capacity: each ring transport reports the ring it was given (mpmc also its slots), both
    # sides of a pair get it where it applies, and the default is the documented 1 MiB.
    (r,) = results("latency", "--transport", "shmring-spsc", "--wait", "spin", "--size", "64",
                   "--count", "300", "--capacity", "4K")
    check(r.get("capacity") == 4096, f"--capacity 4K: {r}")
    (r,) = results("latency", "--transport", "shmring-spsc", "--size", "64", "--count", "300")
    check(r.get("capacity") == 1 << 20, f"default capacity: {r}")
    (r,) = results("latency", "--transport", "shmring-mpmc", "--size", "64", "--count", "300",
                   "--capacity", "16K")
    # A 64 B frame takes a 128-byte slot (32-byte header, 64-byte alignment): 128 of them.
    check(r.get("capacity") == 16384 and r.get("slots") == 128, f"mpmc --capacity 16K: {r}")
    rs = results("throughput", "--transport", "shmring-spsc", "--size", "64", "--count", "20000",
                 "--capacity", "8K", "--against", "naive")
    check(len(rs) == 2 and all(r.get("capacity") == 8192 for r in rs), f"paired capacity: {rs}")
    rs = results("latency", "--transport", "shmring-spsc", "--size", "64", "--count", "300",
                 "--capacity", "64K", "--against", "floor")
    check(len(rs) == 2 and rs[0].get("capacity") == 65536 and "capacity" not in rs[1],
          f"capacity only where it applies: {rs}")
    (r,) = results("latency", "--transport", "pipe", "--size", "64", "--count", "300")
    check("capacity" not in r, f"no ring, no capacity: {r}")
    check("subscribers" not in r and "per_subscriber" not in r, f"no fan-out keys: {r}")
    usage = subprocess.run([BENCH, "--help"], capture_output=True, text=True).stdout
    available = {line.split()[0] for line in usage.split("transports:\n", 1)[-1].splitlines()
                 if line.strip()}
    check("shmring-spsc-fanout" in available, "the SPSC fan-out transport is listed")
    check_fanouts(available)
    p = bench("latency", "--transport", "shmring-spsc", "--size", "64", "--count", "300",
              "--capacity", "4K")
    check("ring of 4 KiB" in p.stdout and "@4 KiB" in p.stdout, f"human output: {p.stdout}")
    # Bad arguments: exit 2, one line on stderr, nothing on stdout.
    for args in (["latency", "--transport", "floor", "--size", "64", "--against", "nosuch"],
                 ["latency", "--transport", "floor", "--size", "64", "--against", "pipe",
                  "--rate", "1000"],
                 ["latency", "--transport", "nosuch", "--size", "64"],
                 ["throughput", "--transport", "pipe", "--size", "4"],
                 ["latency", "--transport", "pipe"],
                 ["latency", "--transport", "floor", "--size", "64", "--against", "naive"],
                 ["--against", "floor"],
                 # --capacity: not a power of two, out of range, too small for the message (each
                 # ring transport, and either side of a pair), no ring, the full comparison.
                 ["latency", "--transport", "shmring-spsc", "--size", "64", "--capacity", "5000"],
                 ["latency", "--transport", "shmring-spsc", "--size", "64", "--capacity", "2K"],
                 ["latency", "--transport", "shmring-spsc", "--size", "64", "--capacity", "2048M"],
                 ["latency", "--transport", "shmring-spsc", "--size", "64", "--capacity", "x"],
                 ["latency", "--transport", "shmring-spsc", "--size", "4K", "--capacity", "4K"],
                 ["latency", "--transport", "shmring-mpmc", "--size", "4K", "--capacity", "8K"],
                 ["throughput", "--transport", "naive", "--size", "4K", "--capacity", "4K"],
                 ["throughput", "--transport", "pipe", "--size", "4K", "--capacity", "4K",
                  "--against", "shmring-spsc"],
                 ["latency", "--transport", "pipe", "--size", "64", "--capacity", "4K"],
                 ["throughput", "--transport", "shmring-mpmc", "--size", "64", "--capacity", "64K",
                  "--producers", "2", "--consumers", "2"],
                 ["--capacity", "4K"],
                 # --subscribers: out of range, not a fan-out transport, a pair of a fan-out and
                 # a point-to-point transport with several subscribers, the full comparison.
                 ["latency", "--transport", "shmring-spsc-fanout", "--size", "64",
                  "--subscribers", "0"],
                 ["latency", "--transport", "shmring-spsc-fanout", "--size", "64",
                  "--subscribers", "17"],
                 ["latency", "--transport", "pipe", "--size", "64", "--subscribers", "2"],
                 ["latency", "--transport", "shmring-spsc-fanout", "--size", "64",
                  "--subscribers", "2", "--against", "shmring-spsc"],
                 ["--subscribers", "2"]):
        p = bench(*args, expect=2)
        check(p.stdout == "" and len(p.stderr.strip().splitlines()) == 1,
              f"{args}: error output {p.stderr!r}")
    left = {n for n in set(os.listdir("/dev/shm")) - before if n.startswith("shmring-bench")}
    check(not left, f"left in /dev/shm: {left}")
    if os.path.isdir("/dev/mqueue"):
        left = {n for n in set(os.listdir("/dev/mqueue")) - mq_before
                if n.startswith("shmring-bench")}
        check(not left, f"left in /dev/mqueue: {left}")
    print(f"bench_test: {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    BENCH = sys.argv[1]
    sys.exit(main())
