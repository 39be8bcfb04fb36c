#!/usr/bin/python3
"""A prefork master/worker pool over two MPMC channels.

The master forks N workers, hands out jobs through the "jobs" channel and collects results from
the "results" channel; when a worker dies it forks a replacement. To show that no job is lost,
it SIGKILLs the worker that starts job 7 while that worker holds the job (read, not released):
MPMC hands a frame held by a dead consumer to a live one, so job 7 is done by another worker.

A job is released only after its result is sent, so a worker killed between the two makes the
job run twice: the master keeps the first result of each job (at-least-once work, exactly-once
results). The master closes the jobs channel only when every result is in.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/prefork_pool.py [prefix [workers [jobs]]]
"""

import os
import signal
import struct
import sys
import time

import shmring

VICTIM_JOB = 7
STARTED, RESULT = b"S", b"R"


def work(job: int) -> int:
    time.sleep(0.005)  # a job takes a while, so the master can kill a worker in the middle
    return sum(i * i for i in range(job * 100))


def worker(prefix: str) -> None:
    with shmring.MpmcConsumer(prefix + "-jobs") as jobs, \
            shmring.MpmcProducer(prefix + "-results") as results:
        while True:
            try:
                job = jobs.read()  # held until the end of the `with` below
            except shmring.ChannelClosed:
                return
            with job:
                (n,) = struct.unpack("<I", job.data)
                results.send(STARTED + struct.pack("<II", n, os.getpid()))
                results.send(RESULT + struct.pack("<IIQ", n, os.getpid(), work(n)))


def fork_worker(prefix: str) -> int:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            worker(prefix)
            code = 0
        finally:
            os._exit(code)
    return pid


def main(prefix: str, workers: int, jobs_total: int) -> int:
    for channel in ("-jobs", "-results"):
        shmring.create_channel(prefix + channel, kind="mpmc", capacity=16, max_frame=64)
    try:
        with shmring.MpmcProducer(prefix + "-jobs") as jobs, \
                shmring.MpmcConsumer(prefix + "-results") as results:
            alive = {fork_worker(prefix) for _ in range(workers)}
            results_by_job, duplicates, restarts, killed = {}, 0, 0, None
            next_job = 0
            while len(results_by_job) < jobs_total:
                while next_job < jobs_total:  # hand out what fits
                    try:
                        jobs.send(struct.pack("<I", next_job), timeout=0)
                    except TimeoutError:
                        break
                    next_job += 1
                try:
                    message = results.recv(timeout=0.05)
                except TimeoutError:
                    message = b""
                if message[:1] == STARTED:
                    n, pid = struct.unpack("<II", message[1:])
                    if n == VICTIM_JOB and killed is None:
                        os.kill(pid, signal.SIGKILL)  # dies holding job 7
                        killed = pid
                elif message[:1] == RESULT:
                    n, pid, value = struct.unpack("<IIQ", message[1:])
                    if n in results_by_job:
                        duplicates += 1
                    else:
                        results_by_job[n] = (value, pid)
                while alive:  # reap and replace dead workers
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                    if pid == 0:
                        break
                    alive.discard(pid)
                    alive.add(fork_worker(prefix))
                    restarts += 1
            jobs.close()  # every result is in: end of stream, the workers exit
            for pid in alive:
                os.waitpid(pid, 0)
        wrong = [n for n, (value, _) in results_by_job.items() if value != work(n)]
        print("%d jobs, %d results (%d duplicates dropped), %d wrong; worker %s killed holding "
              "job %d, which worker %d then did; %d worker(s) restarted" % (
                  jobs_total, len(results_by_job), duplicates, len(wrong), killed, VICTIM_JOB,
                  results_by_job[VICTIM_JOB][1], restarts))
        ok = len(results_by_job) == jobs_total and not wrong and killed is not None
        ok = ok and results_by_job[VICTIM_JOB][1] != killed and restarts >= 1
        return 0 if ok else 1
    finally:
        for channel in ("-jobs", "-results"):
            shmring.remove_channel(prefix + channel)


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(args[0] if args else "/shmring-example-pool-%d" % os.getpid(),
                  int(args[1]) if len(args) > 1 else 4, int(args[2]) if len(args) > 2 else 200))
