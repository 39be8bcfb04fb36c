#!/usr/bin/env python3
"""goals.py — the issue-5 goal ratios, repeated and reduced to medians.

Each repetition runs every pair of a ratio back to back (shmring-bench --json), so the two sides
of a ratio see the same machine; the median over repetitions damps a noisy, shared machine.

  bench/goals.py build-bench/bench/shmring-bench [--before OLD-shmring-bench] [--reps 7]

--before: a shmring-bench built from an older library; its shmring-spsc stream (which then
publishes every frame) is reported against the same naive run as "before".
"""
import argparse
import json
import statistics
import subprocess


def run(binary, *args):
    out = subprocess.run([binary, *args, "--json"], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("bench")
    parser.add_argument("--before")
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    a = args.bench
    ratios = {}

    def add(key, value):
        ratios.setdefault(key, []).append(value)

    for _ in range(args.reps):
        floor = run(a, "latency", "--transport", "floor", "--size", "64", "--count", "50000")
        spin = run(a, "latency", "--transport", "shmring-spsc", "--wait", "spin", "--size", "64",
                   "--count", "50000")
        add("spin 64 B p50 / floor (<= 1.15)", spin["p50_ns"] / floor["p50_ns"])
        add("spin 64 B p99.9 / floor (<= 2)", spin["p999_ns"] / floor["p999_ns"])
        eventfd = run(a, "latency", "--transport", "eventfd", "--size", "64", "--count", "20000")
        block = run(a, "latency", "--transport", "shmring-spsc", "--wait", "block", "--size", "64",
                    "--count", "20000")
        add("block 64 B p50 / eventfd (<= 1.05)", block["p50_ns"] / eventfd["p50_ns"])
        for size, count, goal in [("64", "2000000", "2"), ("65536", "10000", "0.9")]:
            naive = run(a, "throughput", "--transport", "naive", "--size", size, "--count", count)
            common = ["throughput", "--transport", "shmring-spsc", "--wait", "spin", "--size", size,
                      "--count", count]
            b32 = run(a, *common, "--batch", "32")
            b1 = run(a, *common, "--batch", "1")
            add(f"stream {size} B b32 / naive (>= {goal})", b32["msgs_per_s"] / naive["msgs_per_s"])
            add(f"stream {size} B b1 / naive", b1["msgs_per_s"] / naive["msgs_per_s"])
            if args.before:
                old = run(args.before, *common)
                add(f"stream {size} B before / naive", old["msgs_per_s"] / naive["msgs_per_s"])
    for key, values in ratios.items():
        runs = " ".join(f"{v:.2f}" for v in values)
        print(f"{key:38s} median {statistics.median(values):5.2f}x   runs {runs}")


if __name__ == "__main__":
    main()
