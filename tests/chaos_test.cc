// Crash chaos: producers and consumers (fork()ed processes) are SIGKILLed at random moments under
// load and replaced by new ones that take their roles over. After every iteration the test checks,
// from a ledger the children keep in anonymous shared memory (it survives their deaths):
//   - every committed frame was delivered; a frame is delivered twice only when a consumer was
//     killed holding it (read, marked, not released) — the documented at-most-one redelivery per
//     consumer death;
//   - payloads are intact (length and every byte derived from the frame's identity);
//   - sequence numbers: SPSC — strictly increasing per consumer, contiguous except where a
//     producer was killed inside commit() (its sequence number is then skipped, see
//     docs/failure-model.md); MPMC — every gap is an abandoned claim, counted in the segment's
//     counters, and each producer's frames carry increasing sequence numbers;
//   - nobody stays blocked: every blocking call has a deadline (a timeout must come at or after
//     it), and the parent gives each iteration a generous watchdog;
//   - once every process is gone the segment is stale: CreateChannel with reclaim_stale takes it,
//     or `shm-cat gc` removes it (when an endpoint died attached); nothing is left in /dev/shm.
//
// The binary runs chaos_iterations() iterations: 30 by default (suite 'chaos'); 1000 when the
// executable's name contains "stress" (the same source registered as chaos_stress_test in suite
// 'stress'); SHMRING_CHAOS_ITERATIONS overrides both. SHMRING_TEST_SCALE scales the frame counts
// (and, down to a floor, the iterations). SHMRING_CHAOS_SEED replays a run (the seed is printed).
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "segment.h"
#include "shmring/channel.h"
#include "shmring/mpmc.h"
#include "shmring/spsc.h"
#include "test_util.h"

namespace shmring {
namespace {

using testing::Child;
using testing::Mix;
using testing::Scale;
using testing::ScopedName;

// Each blocking call waits at most this long, then loops (so a timeout is exercised too).
constexpr absl::Duration kStep = absl::Milliseconds(150);
// The whole iteration must finish within this (a generous bound for a noisy 2-core machine).
constexpr absl::Duration kWatchdog = absl::Seconds(120);

int Iterations() {
  if (const char* s = std::getenv("SHMRING_CHAOS_ITERATIONS"); s != nullptr && std::atoi(s) > 0) {
    return std::atoi(s);
  }
  const bool stress = std::strstr(program_invocation_short_name, "stress") != nullptr;
  const int base = stress ? 1000 : 30;
  return std::max(stress ? 100 : 8, static_cast<int>(base * std::min(1.0, Scale())));
}

std::uint64_t Seed() {
  if (const char* s = std::getenv("SHMRING_CHAOS_SEED"); s != nullptr) {
    return std::strtoull(s, nullptr, 10);
  }
  return static_cast<std::uint64_t>(absl::ToUnixNanos(absl::Now())) ^
         (static_cast<std::uint64_t>(getpid()) << 32);
}

// PatternByte: byte i of the payload of the frame with identity `id`.
std::byte PatternByte(std::uint64_t id, std::size_t i) {
  const std::uint64_t m = Mix(id ^ (i >> 3));
  return static_cast<std::byte>(m >> ((i & 7) * 8));
}

// SizeFor: the payload length of the frame with identity `id` (mostly small, sometimes large, so
// the ring wraps at every possible offset and fills up).
std::size_t SizeFor(std::uint64_t id, std::size_t min, std::size_t max) {
  const std::uint64_t h = Mix(id * 31 + 7);
  const std::size_t span = (h & 3) == 0 ? max - min : std::min<std::size_t>(64, max - min);
  return min + static_cast<std::size_t>((h >> 2) % (span + 1));
}

// Anonymous shared memory, mapped before fork(): the parent and every child see the same pages.
template <typename T>
class SharedMemory {
 public:
  SharedMemory() {
    void* p = mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    value_ = new (p) T();
  }
  ~SharedMemory() {
    value_->~T();
    munmap(value_, sizeof(T));
  }
  SharedMemory(const SharedMemory&) = delete;
  SharedMemory& operator=(const SharedMemory&) = delete;
  T* operator->() const { return value_; }
  T& operator*() const { return *value_; }

 private:
  T* value_;
};

// Violation: a child found something wrong. It says what on stderr and exits with `code`.
int Violation(int code, const char* what, std::uint64_t a = 0, std::uint64_t b = 0) {
  std::fprintf(stderr, "chaos child %d: %s (%llu, %llu)\n", getpid(), what,
               static_cast<unsigned long long>(a), static_cast<unsigned long long>(b));
  return code;
}

// Linger: now and then, pause a little inside a critical window (between claim and commit,
// between read and release), so random kills land there often enough.
void Linger(std::uint64_t id) {
  if (Mix(id ^ 0x5EED) % 32 == 0) usleep(200);
}

// A timeout must not come before its deadline (a lower bound only: no timing assertion).
bool TimeoutHonest(absl::Time deadline) { return absl::Now() >= deadline; }

EndpointOptions RandomWait(std::uint64_t r) {
  EndpointOptions o;
  switch (r % 3) {
    case 0:
      o.wait = WaitMode::kBlock;
      break;
    case 1:
      o.wait = WaitMode::kHybrid;
      o.spin_iterations = 200;
      break;
    default:
      o.wait = WaitMode::kHybrid;
      o.spin_iterations = 5000;
      break;
  }
  o.open_timeout = absl::Seconds(30);
  return o;
}

std::unique_ptr<internal::Segment> OpenReadOnly(const std::string& name) {
  internal::OpenOptions o;
  o.access = internal::Access::kReadOnly;
  auto seg = internal::Segment::Open(name, o);
  INFO(seg.status().ToString());
  REQUIRE(seg.ok());
  return std::move(*seg);
}

// ShmCat: the shm-cat binary of this build (tools/ next to tests/), or "" if it is not built.
std::string ShmCat() {
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return "";
  std::string path(self, static_cast<std::size_t>(n));
  path = path.substr(0, path.rfind('/')) + "/../tools/shm-cat";
  return access(path.c_str(), X_OK) == 0 ? path : "";
}

// RunGc runs `shm-cat gc --prefix name` and returns its exit code.
int RunGc(const std::string& shm_cat, const std::string& name) {
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    const int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) dup2(devnull, STDOUT_FILENO);
    execl(shm_cat.c_str(), "shm-cat", "gc", "--prefix", name.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool Exists(const std::string& name) {
  const std::string file = name.substr(1);
  bool found = false;
  if (DIR* dir = opendir("/dev/shm")) {
    while (dirent* e = readdir(dir)) found |= file == e->d_name;
    closedir(dir);
  }
  return found;
}

// After every process is gone, the segment is cleaned up the way an operator or a restarted
// program would, alternately:
//   - `shm-cat gc`: it removes the segment if some endpoint died without detaching; otherwise
//     every endpoint detached cleanly (the segment is idle, and gc keeps it) — then RemoveChannel;
//   - CreateChannel with reclaim_stale: every endpoint is dead, so it must take the segment.
// Either way nothing of ours is left in /dev/shm.
struct CleanUpStats {
  int gc_removed = 0, gc_kept_idle = 0, reclaimed = 0;
} cleanups;

void CleanUp(const std::string& name, const ChannelOptions& options, bool use_gc) {
  static const std::string shm_cat = ShmCat();
  if (use_gc && !shm_cat.empty()) {
    bool dead_owner = false;
    {
      auto seg = OpenReadOnly(name);
      for (std::uint32_t i = 0; i < seg->geometry().max_endpoints; ++i) {
        CHECK_FALSE(seg->EndpointAlive(i));
        dead_owner |= seg->endpoint(i)->role.load() != 0;
      }
    }
    CHECK(RunGc(shm_cat, name) == 0);
    CHECK(Exists(name) == !dead_owner);
    ++(dead_owner ? cleanups.gc_removed : cleanups.gc_kept_idle);
    if (Exists(name)) CHECK(RemoveChannel(name).ok());
  } else {
    ChannelOptions o = options;
    o.reclaim_stale = true;
    const absl::Status reclaimed = CreateChannel(name, o);
    INFO(reclaimed.ToString());
    CHECK(reclaimed.ok());
    ++cleanups.reclaimed;
    CHECK(RemoveChannel(name).ok());
  }
  CHECK_FALSE(Exists(name));
}

// Kill: SIGKILLs `child` and reaps it. Returns true if it died of the signal, false if it had
// already exited (then *exit_code says how).
bool Kill(std::unique_ptr<Child>& child, int* exit_code) {
  child->Kill(SIGKILL);
  const int code = child->Wait(kWatchdog);
  child.reset();
  *exit_code = code;
  return code == 128 + SIGKILL;
}

// ---------------------------------------------------------------------------------------------
// SPSC

constexpr std::size_t kSpscMaxFrames = 1 << 16;

struct SpscLedger {
  // Producer: next_sequence() after attach and after each commit (a lower bound of what is
  // committed: a producer killed right after commit() has not recorded it yet).
  std::atomic<std::uint64_t> committed{0};
  std::atomic<std::uint32_t> seen[kSpscMaxFrames];  // deliveries per sequence number
  // Per consumer incarnation: the last sequence number it marked seen (+1; 0 = none).
  std::atomic<std::uint64_t> last_marked[256];
  void Reset() {
    committed.store(0);
    for (auto& s : seen) s.store(0, std::memory_order_relaxed);
    for (auto& l : last_marked) l.store(0, std::memory_order_relaxed);
  }
};

int SpscProducerBody(const std::string& name, SpscLedger* ledger, std::uint64_t frames,
                     std::uint64_t random) {
  auto p = SpscProducer::Attach(name, RandomWait(random));
  if (!p.ok()) return Violation(20, "producer attach failed");
  const std::size_t max = p->max_frame();
  ledger->committed.store(p->next_sequence());
  for (;;) {
    const std::uint64_t seq = p->next_sequence();
    const absl::Time deadline = absl::Now() + kStep;
    Claim c = p->claim(SizeFor(seq, 0, max), deadline);
    if (c.result == Result::kClosed) return 0;
    if (c.result == Result::kTimeout) {
      if (!TimeoutHonest(deadline)) return Violation(21, "claim timed out early");
      continue;
    }
    if (!c.ok()) return Violation(22, "claim failed", static_cast<std::uint64_t>(c.result));
    if (c.sequence != seq) return Violation(23, "claim sequence", c.sequence, seq);
    if (seq >= frames) {
      p->abort();
      p->close();
      return 0;
    }
    for (std::size_t i = 0; i < c.data.size(); ++i) c.data[i] = PatternByte(seq, i);
    Linger(seq);  // widen the claim-to-commit window for the kills
    p->commit();
    ledger->committed.store(p->next_sequence());
  }
}

int SpscConsumerBody(const std::string& name, SpscLedger* ledger, int generation,
                     std::uint64_t random) {
  auto c = SpscConsumer::Attach(name, RandomWait(random));
  if (!c.ok()) return Violation(30, "consumer attach failed");
  const std::size_t max = c->max_frame();
  std::uint64_t last = 0;  // last sequence + 1 this incarnation read
  for (;;) {
    const absl::Time deadline = absl::Now() + kStep;
    Frame f = c->read(deadline);
    if (f.result == Result::kClosed) return 0;
    if (f.result == Result::kTimeout) {
      if (!TimeoutHonest(deadline)) return Violation(31, "read timed out early");
      continue;
    }
    if (!f.ok()) return Violation(32, "read failed", static_cast<std::uint64_t>(f.result));
    if (f.sequence + 1 <= last) return Violation(33, "sequence went backwards", f.sequence, last);
    if (f.sequence >= kSpscMaxFrames) return Violation(34, "sequence out of range", f.sequence);
    if (f.data.size() != SizeFor(f.sequence, 0, max)) {
      return Violation(35, "torn frame: length", f.sequence, f.data.size());
    }
    for (std::size_t i = 0; i < f.data.size(); ++i) {
      if (f.data[i] != PatternByte(f.sequence, i)) return Violation(36, "torn payload", f.sequence);
    }
    // Marked before release: a consumer killed between the two is the redelivery case. The
    // record of what it is about to mark comes first, so a kill between the two stores only
    // makes the allowance wider, never misses a duplicate's excuse.
    ledger->last_marked[generation].store(f.sequence + 1);
    ledger->seen[f.sequence].fetch_add(1);
    Linger(f.sequence + 1);  // widen the read-to-release window (redelivery)
    c->release();
    last = f.sequence + 1;
  }
}

TEST_CASE("SPSC chaos: producers and consumers SIGKILLed at random moments, replaced") {
  const int iterations = Iterations();
  const std::uint64_t seed = Seed();
  std::printf("SPSC chaos: %d iterations, seed %llu\n", iterations,
              static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  const std::uint64_t frames =
      std::clamp<std::uint64_t>(static_cast<std::uint64_t>(4000 * Scale()), 400, 4000);
  SharedMemory<SpscLedger> ledger;
  std::uint64_t total_kills = 0, total_gaps = 0, total_redelivered = 0;

  for (int iteration = 0; iteration < iterations; ++iteration) {
    INFO("iteration " << iteration << " seed " << seed);
    ScopedName name("chaos-spsc");
    ChannelOptions options;
    options.capacity = (rng() & 1) ? 4096 : 16384;
    options.max_frame = static_cast<std::uint32_t>(rng() % 2 ? 256 : options.capacity / 2 - 16);
    REQUIRE(CreateChannel(name, options).ok());
    ledger->Reset();
    const std::string n = name.str();

    int consumer_generation = 0;
    auto spawn_producer = [&] {
      const std::uint64_t r = rng();
      return std::make_unique<Child>([&, r] { return SpscProducerBody(n, &*ledger, frames, r); });
    };
    auto spawn_consumer = [&] {
      const int g = consumer_generation++;
      const std::uint64_t r = rng();
      return std::make_unique<Child>([&, g, r] { return SpscConsumerBody(n, &*ledger, g, r); });
    };
    std::unique_ptr<Child> producer, consumer;
    if (rng() & 1) {
      producer = spawn_producer();
      consumer = spawn_consumer();
    } else {
      consumer = spawn_consumer();
      producer = spawn_producer();
    }
    std::set<std::uint64_t> allowed_gaps;  // a producer was killed with committed == s
    std::map<std::uint64_t, std::uint32_t> allowed_duplicates;  // consumers killed after marking s
    const int kills = static_cast<int>(rng() % 5);
    for (int k = 0; k < kills; ++k) {
      absl::SleepFor(absl::Microseconds(rng() % 4000));
      const bool kill_producer = (rng() & 1) != 0;
      std::unique_ptr<Child>& victim = kill_producer ? producer : consumer;
      if (!victim) continue;  // finished already
      const int generation = consumer_generation - 1;
      int code = 0;
      if (!Kill(victim, &code)) {
        INFO((kill_producer ? "producer" : "consumer") << " exited with " << code);
        REQUIRE(code == 0);  // it had finished: nothing to replace
        continue;
      }
      ++total_kills;
      if (kill_producer) {
        allowed_gaps.insert(ledger->committed.load());
        producer = spawn_producer();
      } else {
        if (const std::uint64_t m = ledger->last_marked[generation].load(); m != 0) {
          ++allowed_duplicates[m - 1];
        }
        consumer = spawn_consumer();
      }
    }
    if (producer) {
      const int code = producer->Wait(kWatchdog);
      producer.reset();
      INFO("producer: exit code " << code << " (-1: stuck past the watchdog)");
      REQUIRE(code == 0);
    }
    if (consumer) {
      const int code = consumer->Wait(kWatchdog);
      consumer.reset();
      INFO("consumer: exit code " << code << " (-1: stuck past the watchdog)");
      REQUIRE(code == 0);
    }

    // Every process is gone. The segment says how many sequence numbers were used.
    std::uint64_t used = 0;
    {
      auto seg = OpenReadOnly(n);
      used = seg->control()->next_write_seq.load();
      CHECK(seg->control()->closed.load() == 1);
      CHECK(seg->control()->write_position.load() == seg->control()->read_position.load());
    }
    REQUIRE(used >= frames);
    REQUIRE(used <= kSpscMaxFrames);
    for (std::uint64_t s = 0; s < kSpscMaxFrames; ++s) {
      const std::uint32_t seen = ledger->seen[s].load();
      if (s >= used) {
        INFO("sequence " << s << " beyond next_write_seq " << used);
        REQUIRE(seen == 0);
        continue;
      }
      INFO("sequence " << s << " delivered " << seen << " times");
      if (seen == 0) {
        // Lost, unless its producer was killed inside commit(): then it was never committed.
        REQUIRE(allowed_gaps.count(s) == 1);
        ++total_gaps;
      } else {
        // Once more per consumer killed while it held the frame.
        REQUIRE(seen - 1 <= allowed_duplicates[s]);
        total_redelivered += seen - 1;
      }
    }
    CleanUp(n, options, (iteration & 1) != 0);
  }
  std::printf("SPSC chaos: %llu kills, %llu skipped sequence numbers, %llu redeliveries\n",
              static_cast<unsigned long long>(total_kills),
              static_cast<unsigned long long>(total_gaps),
              static_cast<unsigned long long>(total_redelivered));
}

// ---------------------------------------------------------------------------------------------
// MPMC

constexpr std::size_t kMpmcMaxTickets = 1 << 15;
constexpr int kMpmcMaxGenerations = 256;
constexpr int kProducers = 2;
constexpr int kConsumers = 2;

// The payload of an MPMC frame starts with its identity.
struct MpmcStamp {
  std::uint32_t generation;  // producer incarnation
  std::uint32_t counter;     // frames that incarnation committed before this one
  std::uint64_t sequence;    // the ticket its claim returned
};

struct MpmcLedger {
  // Per producer incarnation: frames committed (a lower bound, as for SPSC), and whether it was
  // inside abort() (whose count may be lost if it is killed there).
  std::atomic<std::uint32_t> committed[kMpmcMaxGenerations];
  std::atomic<std::uint32_t> aborting[kMpmcMaxGenerations];
  // Per ticket: deliveries, and the identity the consumer found.
  std::atomic<std::uint32_t> seen[kMpmcMaxTickets];
  std::atomic<std::uint32_t> generation_of[kMpmcMaxTickets];
  std::atomic<std::uint32_t> counter_of[kMpmcMaxTickets];
  std::atomic<std::uint64_t> last_marked[kMpmcMaxGenerations];  // per consumer incarnation, +1
  void Reset() {
    for (auto& x : committed) x.store(0, std::memory_order_relaxed);
    for (auto& x : aborting) x.store(0, std::memory_order_relaxed);
    for (auto& x : seen) x.store(0, std::memory_order_relaxed);
    for (auto& x : last_marked) x.store(0, std::memory_order_relaxed);
  }
};

std::uint64_t MpmcId(std::uint32_t generation, std::uint32_t counter) {
  return (std::uint64_t{generation} << 32) | counter;
}

int MpmcProducerBody(const std::string& name, MpmcLedger* ledger, int generation,
                     std::uint64_t tickets, std::uint64_t random) {
  auto p = MpmcProducer::Attach(name, RandomWait(random));
  if (!p.ok()) return Violation(40, "producer attach failed");
  const std::size_t max = p->max_frame();
  const auto g = static_cast<std::uint32_t>(generation);
  for (std::uint32_t counter = 0;;) {
    const std::size_t size = SizeFor(MpmcId(g, counter), sizeof(MpmcStamp), max);
    const absl::Time deadline = absl::Now() + kStep;
    Claim c = p->claim(size, deadline);
    if (c.result == Result::kClosed) return 0;
    if (c.result == Result::kTimeout) {
      if (!TimeoutHonest(deadline)) return Violation(41, "claim timed out early");
      continue;
    }
    if (!c.ok()) return Violation(42, "claim failed", static_cast<std::uint64_t>(c.result));
    if (c.sequence >= tickets) {
      ledger->aborting[generation].store(1);
      p->abort();  // a counted gap
      ledger->aborting[generation].store(0);
      return 0;
    }
    const MpmcStamp stamp{g, counter, c.sequence};
    std::memcpy(c.data.data(), &stamp, sizeof(stamp));
    for (std::size_t i = sizeof(stamp); i < size; ++i) {
      c.data[i] = PatternByte(MpmcId(g, counter), i);
    }
    Linger(c.sequence);
    const Result r = p->commit();
    if (r != Result::kOk) return Violation(43, "commit failed", static_cast<std::uint64_t>(r));
    ledger->committed[generation].store(++counter);
  }
}

int MpmcConsumerBody(const std::string& name, MpmcLedger* ledger, int generation,
                     std::uint64_t random) {
  auto c = MpmcConsumer::Attach(name, RandomWait(random));
  if (!c.ok()) return Violation(50, "consumer attach failed");
  const std::size_t max = c->max_frame();
  for (;;) {
    const absl::Time deadline = absl::Now() + kStep;
    Frame f = c->read(deadline);
    if (f.result == Result::kClosed) return 0;
    if (f.result == Result::kTimeout) {
      if (!TimeoutHonest(deadline)) return Violation(51, "read timed out early");
      continue;
    }
    if (!f.ok()) return Violation(52, "read failed", static_cast<std::uint64_t>(f.result));
    if (f.sequence >= kMpmcMaxTickets) return Violation(53, "ticket out of range", f.sequence);
    MpmcStamp stamp;
    if (f.data.size() < sizeof(stamp)) return Violation(54, "short frame", f.sequence);
    std::memcpy(&stamp, f.data.data(), sizeof(stamp));
    if (stamp.sequence != f.sequence || stamp.generation >= kMpmcMaxGenerations) {
      return Violation(55, "torn frame: stamp", f.sequence, stamp.sequence);
    }
    const std::uint64_t id = MpmcId(stamp.generation, stamp.counter);
    if (f.data.size() != SizeFor(id, sizeof(stamp), max)) {
      return Violation(56, "torn frame: length", f.sequence, f.data.size());
    }
    for (std::size_t i = sizeof(stamp); i < f.data.size(); ++i) {
      if (f.data[i] != PatternByte(id, i)) return Violation(57, "torn payload", f.sequence);
    }
    ledger->generation_of[f.sequence].store(stamp.generation);
    ledger->counter_of[f.sequence].store(stamp.counter);
    ledger->last_marked[generation].store(f.sequence + 1);  // first, as for SPSC
    ledger->seen[f.sequence].fetch_add(1);
    Linger(f.sequence + 1);
    c->release();
  }
}

TEST_CASE("MPMC chaos: producers and consumers SIGKILLed at random moments, replaced") {
  const int iterations = Iterations();
  const std::uint64_t seed = Seed() + 1;
  std::printf("MPMC chaos: %d iterations, seed %llu\n", iterations,
              static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  const std::uint64_t tickets =
      std::clamp<std::uint64_t>(static_cast<std::uint64_t>(3000 * Scale()), 300, 3000);
  SharedMemory<MpmcLedger> ledger;
  std::uint64_t total_kills = 0, total_gaps = 0, total_redelivered = 0, uncounted = 0;

  for (int iteration = 0; iteration < iterations; ++iteration) {
    INFO("iteration " << iteration << " seed " << seed);
    ScopedName name("chaos-mpmc");
    ChannelOptions options;
    options.kind = Kind::kMpmc;
    options.capacity = (rng() & 1) ? 4 : 16;
    options.max_frame = (rng() & 1) ? 64 : 512;
    options.max_endpoints = 16;
    REQUIRE(CreateChannel(name, options).ok());
    ledger->Reset();
    const std::string n = name.str();

    int producer_generation = 0, consumer_generation = 0;
    auto spawn_producer = [&] {
      const int g = producer_generation++;
      REQUIRE(g < kMpmcMaxGenerations);
      const std::uint64_t r = rng();
      return std::make_unique<Child>(
          [&, g, r] { return MpmcProducerBody(n, &*ledger, g, tickets, r); });
    };
    auto spawn_consumer = [&] {
      const int g = consumer_generation++;
      REQUIRE(g < kMpmcMaxGenerations);
      const std::uint64_t r = rng();
      return std::make_unique<Child>([&, g, r] { return MpmcConsumerBody(n, &*ledger, g, r); });
    };
    // Slot i runs producer incarnation generation_in[i] (consumers likewise).
    std::unique_ptr<Child> producers[kProducers], consumers[kConsumers];
    int producer_gen[kProducers], consumer_gen[kConsumers];
    for (int i = 0; i < kConsumers; ++i) {
      consumer_gen[i] = consumer_generation;
      consumers[i] = spawn_consumer();
    }
    for (int i = 0; i < kProducers; ++i) {
      producer_gen[i] = producer_generation;
      producers[i] = spawn_producer();
    }
    std::map<std::uint64_t, std::uint32_t> allowed_duplicates;
    int kills = static_cast<int>(rng() % 5), killed = 0, killed_aborting = 0;
    for (int k = 0; k < kills; ++k) {
      absl::SleepFor(absl::Microseconds(rng() % 4000));
      const bool kill_producer = (rng() & 1) != 0;
      const int slot = static_cast<int>(rng() % (kill_producer ? kProducers : kConsumers));
      std::unique_ptr<Child>& victim = kill_producer ? producers[slot] : consumers[slot];
      if (!victim) continue;
      int code = 0;
      if (!Kill(victim, &code)) {
        INFO((kill_producer ? "producer" : "consumer") << " exited with " << code);
        REQUIRE(code == 0);
        continue;
      }
      ++killed;
      if (kill_producer) {
        killed_aborting += ledger->aborting[producer_gen[slot]].load() != 0;
        producer_gen[slot] = producer_generation;
        producers[slot] = spawn_producer();
      } else {
        if (const std::uint64_t m = ledger->last_marked[consumer_gen[slot]].load(); m != 0) {
          ++allowed_duplicates[m - 1];
        }
        consumer_gen[slot] = consumer_generation;
        consumers[slot] = spawn_consumer();
      }
    }
    total_kills += static_cast<std::uint64_t>(killed);
    for (auto& p : producers) {
      if (!p) continue;
      const int code = p->Wait(kWatchdog);
      p.reset();
      INFO("producer: exit code " << code << " (-1: stuck past the watchdog)");
      REQUIRE(code == 0);
    }
    {
      // Every producer is done: close the channel so the consumers drain and finish.
      auto closer = MpmcProducer::Attach(n);
      REQUIRE(closer.ok());
      closer->close();
    }
    for (auto& c : consumers) {
      if (!c) continue;
      const int code = c->Wait(kWatchdog);
      c.reset();
      INFO("consumer: exit code " << code << " (-1: stuck past the watchdog)");
      REQUIRE(code == 0);
    }

    std::uint64_t used = 0, counted_abandoned = 0;
    {
      auto seg = OpenReadOnly(n);
      used = seg->control()->write_position.load();
      CHECK(seg->control()->read_position.load() == used);
      counted_abandoned = seg->control()->retired.abandoned.load();
      for (std::uint32_t i = 0; i < seg->geometry().max_endpoints; ++i) {
        counted_abandoned += seg->endpoint(i)->counters.abandoned.load();
      }
    }
    REQUIRE(used >= tickets);
    REQUIRE(used <= kMpmcMaxTickets);
    std::uint64_t gaps = 0;
    std::map<std::uint32_t, std::map<std::uint32_t, std::uint64_t>> by_producer;
    for (std::uint64_t t = 0; t < kMpmcMaxTickets; ++t) {
      const std::uint32_t seen = ledger->seen[t].load();
      INFO("ticket " << t << " delivered " << seen << " times; " << used << " tickets used");
      if (t >= used) {
        REQUIRE(seen == 0);
        continue;
      }
      if (seen == 0) {
        ++gaps;
        continue;
      }
      REQUIRE(seen - 1 <= allowed_duplicates[t]);
      total_redelivered += seen - 1;
      const std::uint32_t g = ledger->generation_of[t].load();
      const std::uint32_t counter = ledger->counter_of[t].load();
      REQUIRE(by_producer[g].emplace(counter, t).second);  // one ticket per frame
    }
    // Nothing committed is lost: incarnation g committed frames 0..committed[g]-1 (and maybe one
    // more, committed just before it was killed); frames of one producer carry increasing
    // tickets (per-producer order).
    for (int g = 0; g < producer_generation; ++g) {
      const std::uint32_t committed = ledger->committed[g].load();
      const auto& frames = by_producer[static_cast<std::uint32_t>(g)];
      INFO("producer incarnation " << g << " committed " << committed << ", delivered "
                                   << frames.size());
      REQUIRE(frames.size() >= committed);
      REQUIRE(frames.size() <= committed + 1);
      std::uint32_t expect = 0;
      std::uint64_t previous_ticket = 0;
      for (const auto& [counter, ticket] : frames) {
        REQUIRE(counter == expect);
        if (expect > 0) REQUIRE(ticket > previous_ticket);
        previous_ticket = ticket;
        ++expect;
      }
    }
    // Every gap is an abandoned claim, counted — except that a process killed between abandoning
    // a slot and bumping the counter loses that one count (counters are statistics).
    INFO("gaps " << gaps << ", counted abandoned " << counted_abandoned << ", kills " << killed);
    REQUIRE(counted_abandoned <= gaps);
    REQUIRE(gaps - counted_abandoned <= static_cast<std::uint64_t>(killed));
    if (killed_aborting == 0 && killed == 0) REQUIRE(gaps == counted_abandoned);
    uncounted += gaps - counted_abandoned;
    total_gaps += gaps;
    CleanUp(n, options, (iteration & 1) != 0);
  }
  std::printf(
      "MPMC chaos: %llu kills, %llu gaps (abandoned claims), %llu of them uncounted, %llu "
      "redeliveries\n",
      static_cast<unsigned long long>(total_kills), static_cast<unsigned long long>(total_gaps),
      static_cast<unsigned long long>(uncounted),
      static_cast<unsigned long long>(total_redelivered));
}

TEST_CASE("chaos clean-up summary") {
  std::printf("clean-up: shm-cat gc removed %d stale segments, kept %d idle ones; %d reclaimed\n",
              cleanups.gc_removed, cleanups.gc_kept_idle, cleanups.reclaimed);
}

}  // namespace
}  // namespace shmring
