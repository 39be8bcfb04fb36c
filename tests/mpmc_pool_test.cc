// A prefork pool, as a new user builds it from the README: one master process, three worker
// processes, jobs through one MPMC channel and results back through a second one. Workers exit
// when the jobs channel reports kClosed, after finish() on the results channel, so the results
// stream ends when the last worker is done. The master SIGKILLs a random worker 50 times while
// jobs flow (and restarts it): every job's result must still arrive, and every duplicate result
// must come from a job frame flagged as a redelivery.
#include <signal.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "shmring/channel.h"
#include "shmring/mpmc.h"
#include "test_util.h"

namespace shmring {
namespace {

using testing::Child;
using testing::Scaled;
using testing::ScopedName;

constexpr absl::Duration kGenerous = absl::Seconds(60);
constexpr int kWorkers = 3;
constexpr int kKills = 50;

struct Job {
  std::uint64_t id;
};
struct JobResult {
  std::uint64_t id;
  std::uint32_t job_redelivered;  // the job frame the worker read was flagged as a redelivery
  std::uint32_t worker;           // which incarnation answered
};

ChannelOptions Mpmc(std::uint64_t capacity) {
  ChannelOptions options;
  options.kind = Kind::kMpmc;
  options.capacity = capacity;
  options.max_frame = sizeof(JobResult);
  return options;
}

// Worker: results producer first, then jobs consumer (a producer must be attached before any
// other can finish: see MpmcProducer::finish). The result is sent before the job is released, so
// a worker killed in between makes the job come back, flagged, and its result arrive twice.
int Worker(const std::string& jobs_name, const std::string& results_name, std::uint32_t id) {
  auto results = MpmcProducer::Attach(results_name);
  if (!results.ok()) return 2;
  auto jobs = MpmcConsumer::Attach(jobs_name);
  if (!jobs.ok()) return 3;
  for (;;) {
    const Frame f = jobs->read(absl::Now() + kGenerous);
    if (f.result == Result::kClosed) break;
    if (!f.ok() || f.data.size() != sizeof(Job)) return 4;
    Job job;
    std::memcpy(&job, f.data.data(), sizeof(job));
    const JobResult r{job.id, f.redelivered ? 1u : 0u, id};
    const Result sent = results->send(std::as_bytes(std::span(&r, 1)), absl::Now() + kGenerous);
    if (sent != Result::kOk) return 5;
    // Some work after the result went out and before the job is acknowledged (a log write, say):
    // a kill in this window makes the job's result arrive twice.
    std::uint64_t work = job.id;
    for (int i = 0; i < 4000; ++i) work = testing::Mix(work);
    if (work == 0) return 6;  // never: keeps the loop
    jobs->release();
  }
  results->finish();
  return 0;
}

TEST_CASE(
    "prefork pool: 1 master, 3 workers, results ended with finish(); 50 random SIGKILLs of "
    "workers, restarted: every result arrives, duplicates are flagged redeliveries") {
  const std::uint64_t jobs_total = Scaled(10000);
  ScopedName jobs_name("pooljobs");
  ScopedName results_name("poolresults");
  REQUIRE(CreateChannel(jobs_name, Mpmc(256)).ok());
  REQUIRE(CreateChannel(results_name, Mpmc(256)).ok());
  auto jobs = MpmcProducer::Attach(jobs_name);
  REQUIRE(jobs.ok());
  auto results = MpmcConsumer::Attach(results_name);
  REQUIRE(results.ok());

  std::uint32_t incarnations = 0;
  auto start_worker = [&] {
    const std::uint32_t id = incarnations++;
    return std::make_unique<Child>(
        [&, id] { return Worker(jobs_name.str(), results_name.str(), id); });
  };
  std::vector<std::unique_ptr<Child>> workers;
  for (int w = 0; w < kWorkers; ++w) workers.push_back(start_worker());

  const std::uint64_t seed = std::random_device{}();
  CAPTURE(seed);
  std::mt19937_64 rng(seed);
  // Kill after roughly every jobs_total / (2 * kKills) results, with jitter: all kills happen
  // while jobs still flow.
  const std::uint64_t spacing = jobs_total / (2 * kKills);
  std::uint64_t next_kill = spacing / 2 + rng() % spacing;
  int kills = 0;

  std::vector<std::uint32_t> plain(jobs_total), flagged(jobs_total);
  std::uint64_t next_job = 0;
  std::uint64_t received = 0;
  bool jobs_closed = false;
  const absl::Time start = absl::Now();
  const absl::Time give_up = start + absl::Seconds(240);
  Result end = Result::kWouldBlock;
  while (absl::Now() < give_up) {
    // Keep the jobs ring full, then end the job stream once every job is in.
    while (next_job < jobs_total) {
      const Job job{next_job};
      if (jobs->try_send(std::as_bytes(std::span(&job, 1))) != Result::kOk) break;
      ++next_job;
    }
    if (next_job == jobs_total && !jobs_closed) {
      jobs->close();
      jobs_closed = true;
    }
    // One result (waiting a little for it), then a few more if they are there (a bounded batch,
    // so that the kills below spread over the run).
    Frame f = results->read(absl::Now() + absl::Milliseconds(5));
    for (int batch = 0; f.ok(); ++batch) {
      JobResult r;
      REQUIRE(f.data.size() == sizeof(r));
      std::memcpy(&r, f.data.data(), sizeof(r));
      REQUIRE(r.id < jobs_total);
      (r.job_redelivered != 0 ? flagged : plain)[r.id] += 1;
      ++received;
      results->release();
      f = batch < 8 ? results->try_read() : Frame{};
    }
    if (f.result == Result::kClosed) {
      end = f.result;
      break;
    }
    REQUIRE((f.result == Result::kTimeout || f.result == Result::kWouldBlock));
    if (kills < kKills && received >= next_kill) {
      auto& victim = workers[rng() % workers.size()];
      victim->Kill(SIGKILL);
      const int status = victim->Wait();
      // 0: it had already finished (the end of the job stream came first).
      CHECK((status == 128 + SIGKILL || status == 0));
      victim = start_worker();
      ++kills;
      next_kill = received + spacing / 2 + rng() % spacing;
    }
  }
  const absl::Duration elapsed = absl::Now() - start;
  REQUIRE(end == Result::kClosed);
  for (auto& w : workers) CHECK(w->Wait() == 0);

  std::uint64_t missing = 0, unflagged_duplicates = 0, duplicates = 0;
  for (std::uint64_t id = 0; id < jobs_total; ++id) {
    if (plain[id] + flagged[id] == 0) ++missing;
    if (plain[id] > 1) ++unflagged_duplicates;
    duplicates += plain[id] + flagged[id] - (plain[id] + flagged[id] > 0 ? 1 : 0);
  }
  const ChannelCounters job_counters = jobs->counters();
  const ChannelCounters result_counters = results->counters();
  WARN("pool: " << jobs_total << " jobs, " << kills << " kills, " << received << " results ("
                << duplicates << " duplicates), " << job_counters.consumers.redelivered
                << " job redeliveries, "
                << result_counters.producers.abandoned + result_counters.consumers.abandoned
                << " abandoned result claims, " << incarnations << " worker incarnations, "
                << absl::FormatDuration(elapsed));
  CHECK(kills == kKills);
  CHECK(missing == 0);
  CHECK(unflagged_duplicates == 0);
  CHECK(received == jobs_total + duplicates);
  // Each duplicate comes from a job handed out again after its worker died.
  CHECK(job_counters.consumers.redelivered >= duplicates);
  CHECK(job_counters.consumers.redelivered <= static_cast<std::uint64_t>(kKills));
}

}  // namespace
}  // namespace shmring
