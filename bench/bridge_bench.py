#!/usr/bin/python3
"""bridge_bench.py — shm-bridge throughput and latency against a private RabbitMQ node.

    /usr/bin/python3 bench/bridge_bench.py --build build [--count 20000] [--reps 3] [--window 256]

Throughput: for 64 B and 4 KiB messages, persistent and not, `shm-bridge out` drains a channel
pre-filled with COUNT frames (timed from its start to its exit, after the last confirm) and the
baseline `amqp_plain_publisher` (rabbitmq-c, confirms, the same window and headers) publishes
COUNT messages (timed from before its connection to the last confirm); same node, same run,
alternating, the median of --reps each. Both publish to a durable exchange bound to one durable
queue, purged between runs. Ratio = bridge / plain (goal ≥ 0.9).

Latency: frames of 64 B at a modest paced rate (--rate, default 1000/s) from channel A through
out -> broker -> in to channel B; p50/p99 of receive time - send time (same host clock).

Prints one JSON object per measurement and a summary table. The private node is started and
stopped like the tests' (tests/rabbit_node.py).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from rabbit_node import RabbitNode  # noqa: E402

import pika  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--window", type=int, default=256)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--latency-count", type=int, default=5000)
    ap.add_argument("--latency-only", action="store_true")
    args = ap.parse_args()
    bridge = os.path.join(args.build, "tools", "shm-bridge")
    peer = os.path.join(args.build, "tools", "bridge_peer")
    plain = os.path.join(args.build, "bench", "amqp_plain_publisher")
    pid = os.getpid()
    names = []

    def channel(tag, capacity):
        name = f"/shmring-bench-{pid}-{tag}"
        subprocess.run([peer, "create", name, "spsc", str(capacity), "0"], check=True)
        names.append(name)
        return name

    def remove(name):
        subprocess.run([peer, "remove", name], stderr=subprocess.DEVNULL)
        names.remove(name)

    results = []
    with RabbitNode() as node:
        print(json.dumps({"broker_startup_s": round(node.startup_seconds, 1)}), flush=True)
        conn = pika.BlockingConnection(pika.URLParameters(node.url))
        ch = conn.channel()
        ch.exchange_declare("bench-x", durable=True)
        ch.queue_declare("bench-q", durable=True)
        ch.queue_bind("bench-q", "bench-x", routing_key="")
        try:
            for size in () if args.latency_only else (64, 4096):
                for persistent in (False, True):
                    frame_bytes = 16 + ((size + 7) // 8) * 8
                    capacity = 1 << max(20, (args.count * frame_bytes * 2 - 1).bit_length())
                    runs = {"bridge": [], "plain": []}
                    for _ in range(args.reps):
                        ch.queue_purge("bench-q")
                        cmd = [plain, "127.0.0.1", str(node.port), node.user, node.password,
                               "bench-x", str(args.count), str(size), str(args.window),
                               "1" if persistent else "0"]
                        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout
                        runs["plain"].append(json.loads(out)["frames_per_s"])
                        ch.queue_purge("bench-q")
                        a = channel("tput", capacity)
                        subprocess.run([peer, "produce", a, "0", str(args.count), str(size),
                                        "--fixed", "--close"], check=True)
                        cmd = [bridge, "out", a, "--amqp", node.url, "--exchange", "bench-x",
                               "--window", str(args.window)] + (["--persistent"] if persistent
                                                                else [])
                        t0 = time.monotonic()
                        subprocess.run(cmd, check=True)
                        runs["bridge"].append(args.count / (time.monotonic() - t0))
                        remove(a)
                    r = {"size": size, "persistent": persistent, "count": args.count,
                         "window": args.window,
                         "plain_frames_per_s": round(statistics.median(runs["plain"])),
                         "bridge_frames_per_s": round(statistics.median(runs["bridge"])),
                         "runs": {k: [round(x) for x in v] for k, v in runs.items()}}
                    r["ratio"] = round(r["bridge_frames_per_s"] / r["plain_frames_per_s"], 3)
                    results.append(r)
                    print(json.dumps(r), flush=True)
            ch.queue_purge("bench-q")
            conn.close()

            # Latency: A -> out -> broker -> in -> B at a paced rate.
            a, b = channel("lat-a", 1 << 20), channel("lat-b", 1 << 20)
            bin_ = subprocess.Popen([bridge, "in", "lat-q", b, "--amqp", node.url, "--declare",
                                     "--exchange", "lat-x"])
            deadline = time.monotonic() + 120
            while "lat-q" not in node.ctl("list_queues", "name", "consumers", "--quiet"):
                if time.monotonic() > deadline:
                    raise RuntimeError("in did not start")
                time.sleep(0.1)
            bout = subprocess.Popen([bridge, "out", a, "--amqp", node.url, "--declare",
                                     "--exchange", "lat-x"])
            check = subprocess.Popen([peer, "verify", b, str(args.latency_count), "64",
                                      "--latency", "--timeout", "600"], stdout=subprocess.PIPE)
            subprocess.run([peer, "produce", a, "0", str(args.latency_count), "64", "--rate",
                            str(args.rate), "--close"], check=True)
            lat = json.loads(check.communicate()[0])
            bout.wait(timeout=120)
            bin_.terminate()
            bin_.wait(timeout=120)
            r = {"latency": True, "rate": args.rate, "count": args.latency_count, "size": "16..64",
                 "p50_us": lat["p50_us"], "p99_us": lat["p99_us"], "missing": lat["missing"]}
            results.append(r)
            print(json.dumps(r), flush=True)
        finally:
            for name in list(names):
                remove(name)

    print("\nsize  persistent  plain f/s  bridge f/s  ratio")
    for r in results:
        if "ratio" in r:
            print(f"{r['size']:>5} {str(r['persistent']):>10} {r['plain_frames_per_s']:>10} "
                  f"{r['bridge_frames_per_s']:>11} {r['ratio']:>6}")
        else:
            print(f"latency at {r['rate']:.0f}/s: p50 {r['p50_us']} us, p99 {r['p99_us']} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
