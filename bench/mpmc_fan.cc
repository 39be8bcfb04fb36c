// mpmc_fan.cc — see mpmc_fan.h.
#include "mpmc_fan.h"

#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <new>
#include <vector>

#include "shmring/shmring.h"

namespace shmring::bench {
namespace {

constexpr int kMaxProcesses = 32;  // per side
constexpr std::uint64_t kCounterMask = (std::uint64_t{1} << 56) - 1;
// Consumers read the clock every this many frames (and at each producer's last frame): the end
// of the run is then known to a few µs without a clock read per frame.
constexpr std::uint64_t kClockEvery = 64;

// State shared by the parent and every child (an anonymous shared mapping made before fork).
struct Shared {
  std::atomic<int> attached{0};
  std::atomic<int> go{0};
  struct Consumer {
    std::uint64_t frames;
    std::int64_t last_ns;
    std::uint64_t count[kMaxProcesses];  // frames per producer
    std::uint64_t sum[kMaxProcesses];    // sum of their counters
  } consumers[kMaxProcesses];
  char errors[2 * kMaxProcesses][192];  // producers, then consumers
};

void WaitForGo(Shared* shared) {
  shared->attached.fetch_add(1);
  while (shared->go.load(std::memory_order_acquire) == 0) sched_yield();
}

int ProducerMain(const FanSpec& spec, const std::string& name, int id, Shared* shared,
                 absl::Time deadline) {
  char* error = shared->errors[id];
  EndpointOptions options;
  options.wait = ToWaitMode(spec.wait);
  absl::StatusOr<MpmcProducer> producer = MpmcProducer::Attach(name, options);
  if (!producer.ok()) {
    std::snprintf(error, sizeof(shared->errors[0]), "producer %d: %s", id,
                  producer.status().ToString().c_str());
    return 1;
  }
  WaitForGo(shared);
  const std::uint64_t tag = static_cast<std::uint64_t>(id) << 56;
  for (std::uint64_t i = 0; i < spec.count; ++i) {
    const Claim c = producer->claim(spec.size, deadline);
    if (!c.ok()) {
      std::snprintf(error, sizeof(shared->errors[0]), "producer %d: claim of frame %llu: %s", id,
                    static_cast<unsigned long long>(i), std::string(ToString(c.result)).c_str());
      return 1;
    }
    const std::uint64_t stamp = tag | i;
    std::memcpy(c.data.data(), &stamp, sizeof(stamp));
    if (const Result r = producer->commit(); r != Result::kOk) {
      std::snprintf(error, sizeof(shared->errors[0]), "producer %d: commit of frame %llu: %s", id,
                    static_cast<unsigned long long>(i), std::string(ToString(r)).c_str());
      return 1;
    }
  }
  return 0;
}

int ConsumerMain(const FanSpec& spec, const std::string& name, int id, Shared* shared,
                 absl::Time deadline) {
  char* error = shared->errors[kMaxProcesses + id];
  EndpointOptions options;
  options.wait = ToWaitMode(spec.wait);
  absl::StatusOr<MpmcConsumer> consumer = MpmcConsumer::Attach(name, options);
  if (!consumer.ok()) {
    std::snprintf(error, sizeof(shared->errors[0]), "consumer %d: %s", id,
                  consumer.status().ToString().c_str());
    return 1;
  }
  // Tallies stay in this process while frames flow (no shared line written per frame) and are
  // copied to the shared state once, at the end.
  Shared::Consumer mine{};
  std::vector<std::uint64_t> next(static_cast<std::size_t>(spec.producers), 0);
  WaitForGo(shared);
  for (;;) {
    const Frame f = consumer->read(deadline);
    if (f.result == Result::kClosed) break;
    if (!f.ok()) {
      std::snprintf(error, sizeof(shared->errors[0]), "consumer %d: read: %s", id,
                    std::string(ToString(f.result)).c_str());
      return 1;
    }
    std::uint64_t stamp = 0;
    if (f.data.size() != spec.size) {
      std::snprintf(error, sizeof(shared->errors[0]), "consumer %d: frame of %zu bytes, not %zu",
                    id, f.data.size(), spec.size);
      return 1;
    }
    std::memcpy(&stamp, f.data.data(), sizeof(stamp));
    consumer->release();
    const std::uint64_t producer = stamp >> 56;
    const std::uint64_t counter = stamp & kCounterMask;
    if (producer >= next.size() || counter < next[producer] || counter >= spec.count) {
      std::snprintf(error, sizeof(shared->errors[0]),
                    "consumer %d: frame (producer %llu, counter %llu) out of order or unknown", id,
                    static_cast<unsigned long long>(producer),
                    static_cast<unsigned long long>(counter));
      return 1;
    }
    next[producer] = counter + 1;
    ++mine.count[producer];
    mine.sum[producer] += counter;
    if (++mine.frames % kClockEvery == 0 || counter + 1 == spec.count) mine.last_ns = NowNs();
  }
  shared->consumers[id] = mine;
  return 0;
}

// Reaps children until every one in `wait_for` exited, by `deadline_ns`. A child of `others`
// that exits meanwhile is reaped too (and removed from its list). Returns false as soon as any
// child failed, or at the deadline; `error` then says which.
bool Reap(std::vector<pid_t>* wait_for, std::vector<pid_t>* others, std::int64_t deadline_ns,
          std::string* error) {
  while (!wait_for->empty()) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid > 0) {
      const bool mine = std::find(wait_for->begin(), wait_for->end(), pid) != wait_for->end();
      for (std::vector<pid_t>* list : {wait_for, others}) {
        list->erase(std::remove(list->begin(), list->end(), pid), list->end());
      }
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        *error = std::string("a ") + (mine ? "" : "peer ") + "process " +
                 (WIFSIGNALED(status) ? "was killed by signal " + std::to_string(WTERMSIG(status))
                                      : "failed");
        return false;
      }
      continue;
    }
    if (NowNs() > deadline_ns) {
      *error = "timed out (--timeout)";
      return false;
    }
    usleep(1000);
  }
  return true;
}

// CreateFanChannel: the run's MPMC channel, registered for removal.
absl::Status CreateFanChannel(const FanSpec& spec, const std::string& name) {
  ChannelOptions options;
  options.kind = Kind::kMpmc;
  options.max_frame = static_cast<std::uint32_t>(spec.size);
  // About 2 MiB of slots, 16 at least: room for bursts without measuring a cache-sized toy.
  std::uint64_t slots = 16;
  while (slots * 2 * (spec.size + 64) <= (std::uint64_t{2} << 20)) slots *= 2;
  options.capacity = slots;
  options.max_endpoints = static_cast<std::uint32_t>(spec.producers + spec.consumers + 1);
  if (absl::Status s = CreateChannel(name, options); !s.ok()) return s;
  RegisterName(name, NameKind::kShm);
  return absl::OkStatus();
}

// Children: the forked producers and consumers of one run, not yet reaped.
struct Children {
  std::vector<pid_t> producers, consumers;

  // Spawn forks one child running ProducerMain or ConsumerMain (on spec.cpus). False if fork
  // failed.
  bool Spawn(const FanSpec& spec, const std::string& name, Shared* shared, absl::Time deadline,
             bool producer, int id) {
    const pid_t parent = getpid();
    std::fflush(nullptr);
    const pid_t pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(1);
      if (!spec.cpus.empty()) {
        cpu_set_t set;
        CPU_ZERO(&set);
        for (int cpu : spec.cpus) CPU_SET(cpu, &set);
        sched_setaffinity(0, sizeof(set), &set);
      }
      _exit(producer ? ProducerMain(spec, name, id, shared, deadline)
                     : ConsumerMain(spec, name, id, shared, deadline));
    }
    if (pid > 0) (producer ? producers : consumers).push_back(pid);
    return pid > 0;
  }

  // Forget removes a reaped child from its list.
  void Forget(pid_t pid) {
    for (std::vector<pid_t>* list : {&producers, &consumers}) {
      list->erase(std::remove(list->begin(), list->end(), pid), list->end());
    }
  }

  // KillAll kills and reaps those not reaped (after a failure or the timeout).
  void KillAll() {
    for (std::vector<pid_t>* left : {&producers, &consumers}) {
      for (const pid_t pid : *left) kill(pid, SIGKILL);
      for (const pid_t pid : *left) waitpid(pid, nullptr, 0);
      left->clear();
    }
  }
};

// AwaitAttached waits until every child attached (false if one exited first, or at the deadline).
bool AwaitAttached(const FanSpec& spec, Shared* shared, Children& children,
                   std::int64_t deadline_ns) {
  const int everyone = spec.producers + spec.consumers;
  while (shared->attached.load() < everyone && NowNs() < deadline_ns) {
    if (const pid_t pid = waitpid(-1, nullptr, WNOHANG); pid > 0) {
      children.Forget(pid);
      return false;  // a child exited before the start: it failed to attach
    }
    usleep(200);
  }
  return shared->attached.load() == everyone;
}

// StreamAndClose starts the run, waits for the producers, then closes the channel so the
// consumers drain and stop, and waits for them. Returns false (with `error`) on a failure.
bool StreamAndClose(const std::string& name, Shared* shared, Children& children,
                    std::int64_t deadline_ns, std::int64_t* start_ns, std::string* error) {
  *start_ns = NowNs();
  shared->go.store(1, std::memory_order_release);
  if (!Reap(&children.producers, &children.consumers, deadline_ns, error)) return false;
  absl::StatusOr<MpmcProducer> closer = MpmcProducer::Attach(name);
  if (!closer.ok()) {
    *error = closer.status().ToString();
    return false;
  }
  closer->close();
  std::vector<pid_t> none;
  return Reap(&children.consumers, &none, deadline_ns, error);
}

// Verify checks exactly-once delivery and computes the rates: each producer's frames arrived
// `count` times in total, counters summing to 0 + 1 + ... + count-1 (each consumer already saw
// them strictly increasing).
void Verify(const FanSpec& spec, const Shared& shared, std::int64_t start_ns, FanResult& result) {
  const std::uint64_t want_sum = spec.count * (spec.count - 1) / 2;
  std::int64_t end_ns = start_ns;
  std::uint64_t busiest = 0;
  for (int c = 0; c < spec.consumers; ++c) {
    end_ns = std::max(end_ns, shared.consumers[c].last_ns);
    busiest = std::max(busiest, shared.consumers[c].frames);
  }
  for (int p = 0; p < spec.producers; ++p) {
    std::uint64_t count = 0, sum = 0;
    for (int c = 0; c < spec.consumers; ++c) {
      count += shared.consumers[c].count[p];
      sum += shared.consumers[c].sum[p];
    }
    if (count != spec.count || sum != want_sum) {
      result.error = "producer " + std::to_string(p) + ": " + std::to_string(count) +
                     " frames delivered, " + std::to_string(spec.count) + " sent";
      return;
    }
  }
  result.frames = spec.count * static_cast<std::uint64_t>(spec.producers);
  result.seconds = static_cast<double>(end_ns - start_ns) / 1e9;
  result.msgs_per_s = static_cast<double>(result.frames) / result.seconds;
  result.bytes_per_s = result.msgs_per_s * static_cast<double>(spec.size);
  result.max_consumer_share = static_cast<double>(busiest) / static_cast<double>(result.frames);
  result.ok = true;
}

}  // namespace

FanResult RunFan(const FanSpec& spec) {
  FanResult result;
  if (spec.producers < 1 || spec.producers > kMaxProcesses || spec.consumers < 1 ||
      spec.consumers > kMaxProcesses) {
    result.error = "producers and consumers must be 1.." + std::to_string(kMaxProcesses);
    return result;
  }
  const std::string name = UniqueName("fan");
  if (absl::Status s = CreateFanChannel(spec, name); !s.ok()) {
    result.error = s.ToString();
    return result;
  }
  std::byte* memory = MapSharedAnonymous(sizeof(Shared));
  if (memory == nullptr) {
    result.error = std::string("mmap: ") + std::strerror(errno);
    (void)RemoveChannel(name);
    UnregisterName(name);
    return result;
  }
  Shared* shared = new (memory) Shared;
  const std::int64_t deadline_ns = NowNs() + std::int64_t{spec.timeout_s} * 1000000000;
  const absl::Time deadline = absl::Now() + absl::Seconds(spec.timeout_s);

  Children children;
  bool ok = true;
  for (int i = 0; ok && i < spec.consumers; ++i) {
    ok = children.Spawn(spec, name, shared, deadline, false, i);
  }
  for (int i = 0; ok && i < spec.producers; ++i) {
    ok = children.Spawn(spec, name, shared, deadline, true, i);
  }
  if (!ok) result.error = std::string("fork: ") + std::strerror(errno);
  if (ok && !AwaitAttached(spec, shared, children, deadline_ns)) {
    ok = false;
    result.error = "not every process attached";
  }
  std::int64_t start_ns = 0;
  if (ok) ok = StreamAndClose(name, shared, children, deadline_ns, &start_ns, &result.error);
  children.KillAll();
  (void)RemoveChannel(name);
  UnregisterName(name);
  for (int i = 0; i < 2 * kMaxProcesses; ++i) {
    if (shared->errors[i][0] != '\0') {
      result.error = shared->errors[i];  // the child's own words beat "process failed"
      ok = false;
      break;
    }
  }
  if (ok) Verify(spec, *shared, start_ns, result);
  shared->~Shared();
  munmap(memory, sizeof(Shared));
  return result;
}

}  // namespace shmring::bench
