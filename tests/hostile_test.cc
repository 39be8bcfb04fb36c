// Hostile segments: another process (same user — the objects are 0600) writes random bytes at
// random offsets of a live segment — cursors, wake words, frame lengths and sequence numbers,
// slot turns, the endpoint table, header fields — while consumers read, producers write and
// openers attach. Every call must return a documented result (kOk, kWouldBlock, kTimeout,
// kClosed, kCorrupted, kAbandoned; or an error Status from an open), never crash, never touch
// memory outside the segment's data area, and never block past its deadline (each child runs a
// bounded loop; the parent gives it a generous watchdog). ASan+UBSan run this suite too.
//
// shm-inspect (read-only, pread-based) faces the same writer, and an object shrunk and regrown
// under it: each run exits 0 or 2, never dies of a signal, never hangs.
//
// Also: a segment shrunk with ftruncate while mapped. Only its owner can do that (0600). An
// endpoint that touches a page beyond the new end gets SIGBUS from the kernel — the library does
// not catch it — while a new opener checks the header against fstat and gets DataLoss, and maps
// no more than fstat reported (see docs/failure-model.md).
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <random>
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

using absl::StatusCode;
using testing::Child;
using testing::Eventually;
using testing::Pipe;
using testing::Scale;
using testing::ScopedName;

constexpr absl::Duration kWatchdog = absl::Seconds(120);
constexpr absl::Duration kStep = absl::Milliseconds(20);

// How long each hostile phase lasts.
absl::Duration Phase() { return std::max(absl::Seconds(1), absl::Seconds(3) * Scale()); }

std::uint64_t Seed() {
  return static_cast<std::uint64_t>(absl::ToUnixNanos(absl::Now())) ^
         (static_cast<std::uint64_t>(getpid()) << 40);
}

int Violation(int code, const char* what, std::uint64_t a = 0) {
  std::fprintf(stderr, "hostile test child %d: %s (%llu)\n", getpid(), what,
               static_cast<unsigned long long>(a));
  return code;
}

// Anonymous shared flags between the parent and its children.
struct Flags {
  std::atomic<std::uint32_t> attached{0};   // children holding their endpoints
  std::atomic<std::uint32_t> go{0};         // the hostile writer may start
  std::atomic<std::uint64_t> results[8]{};  // Result counts seen by the children
};

Flags* MapFlags() {
  void* p = mmap(nullptr, sizeof(Flags), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  REQUIRE(p != MAP_FAILED);
  return new (p) Flags();
}

void AwaitAttached(const Flags* flags, std::uint32_t count) {
  REQUIRE(Eventually([&] { return flags->attached.load() >= count; }, kWatchdog));
  REQUIRE(flags->attached.load() == count);
}

// AwaitGo: in a child, false if the parent never said go (it then failed; the child exits).
bool AwaitGo(const Flags* flags) {
  return Eventually([&] { return flags->go.load() != 0; }, kWatchdog);
}

// HostileWriter maps the object read-write, as any process of the same user could, and until
// `end` writes random values at random offsets, weighted towards the fields readers trust least.
int HostileWriter(const std::string& name, absl::Time end, std::uint64_t seed, bool header_too) {
  const int fd = shm_open(name.c_str(), O_RDWR, 0);
  if (fd < 0) return Violation(60, "hostile: shm_open");
  struct stat st;
  if (fstat(fd, &st) != 0) return Violation(61, "hostile: fstat");
  const auto size = static_cast<std::size_t>(st.st_size);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return Violation(62, "hostile: mmap");
  auto* base = static_cast<unsigned char*>(p);
  const auto* header = reinterpret_cast<const internal::SegmentHeader*>(base);
  const std::uint64_t control = header->control_offset;
  const std::uint64_t endpoints = header->endpoints_offset;
  const std::uint64_t data = header->data_offset;
  const std::uint64_t capacity = header->capacity;
  std::mt19937_64 rng(seed);
  for (std::uint64_t n = 0; absl::Now() < end; ++n) {
    std::uint64_t lo = 0, hi = 0;
    const std::uint64_t region = rng() % 100;
    if (region < 35) {
      lo = control, hi = control + sizeof(internal::ControlBlock);
    } else if (region < 50) {
      lo = endpoints, hi = data;
    } else if (region < 90 || !header_too) {
      lo = data, hi = size;
    } else {
      lo = 0, hi = sizeof(internal::SegmentHeader);
    }
    std::uint64_t offset = lo + rng() % (hi - lo);
    // A `closed` flag ends every stream at once; hit it rarely, so the rest gets exercised.
    const std::uint64_t closed = control + offsetof(internal::ControlBlock, closed);
    if (offset >= closed && offset < closed + 8 && rng() % 8 != 0) continue;
    const std::uint64_t kind = rng() % 10;
    if (kind < 7) offset &= ~std::uint64_t{7};  // mostly whole aligned words
    std::uint64_t value;
    std::uint64_t old = 0;
    std::memcpy(&old, base + offset, std::min<std::uint64_t>(8, size - offset));
    switch (rng() % 6) {
      case 0:
        value = old + (rng() % 129) - 64;  // near the real value: passes coarse checks
        break;
      case 1:
        value = old + capacity * (1 + rng() % 3);  // a lap ahead
        break;
      case 2:
        value = rng() % (2 * capacity + 64);
        break;
      case 3:
        value = rng();
        break;
      case 4:
        value = 0;
        break;
      default:
        value = (rng() & 1) ? ~std::uint64_t{0} : (std::uint64_t{1} << 63) + (rng() % 64);
        break;
    }
    const std::uint64_t width = kind < 7 ? 8 : (kind < 9 ? 4 : 1);
    std::memcpy(base + offset, &value, std::min<std::uint64_t>(width, size - offset));
    if ((n & 31) == 0) usleep(50);  // let the victims run between bursts
  }
  munmap(p, size);
  return 0;
}

bool Inside(const std::byte* p, std::size_t n, const std::byte* lo, std::uint64_t len) {
  return p >= lo && n <= len && p - lo <= static_cast<std::ptrdiff_t>(len - n);
}

void Count(Flags* flags, Result r) {
  flags->results[static_cast<int>(r) & 7].fetch_add(1, std::memory_order_relaxed);
}

// The data area of `name` as this process maps it: endpoints of one process share one mapping
// (lib/segment.cc), so a span an endpoint hands out must lie inside this range.
struct DataArea {
  std::unique_ptr<internal::Segment> segment;
  explicit DataArea(const std::string& name) {
    internal::OpenOptions o;
    auto s = internal::Segment::Open(name, o);
    if (s.ok()) segment = std::move(*s);
  }
  bool Contains(std::span<const std::byte> span) const {
    return segment != nullptr &&
           Inside(span.data(), span.size(), segment->data(), segment->geometry().data_size);
  }
};

std::uint64_t Touch(std::span<const std::byte> data) {
  std::uint64_t sum = 0;
  for (std::byte b : data) sum += static_cast<std::uint64_t>(b);
  return sum;
}

template <typename Producer>
int ProducerLoop(Producer& p, const DataArea& area, Flags* flags, absl::Time end) {
  std::mt19937_64 rng(Seed());
  while (absl::Now() < end) {
    const std::size_t size = rng() % (p.max_frame() + 1);
    Claim c = p.claim(size, absl::Now() + kStep);
    Count(flags, c.result);
    switch (c.result) {
      case Result::kOk:
        if (c.data.size() != size || !area.Contains(c.data)) {
          return Violation(70, "claim span outside the data area", size);
        }
        std::memset(c.data.data(), 0x5A, c.data.size());
        if constexpr (std::is_same_v<Producer, MpmcProducer>) {
          const Result r = p.commit();
          if (r != Result::kOk && r != Result::kAbandoned) return Violation(71, "commit", 0);
        } else {
          p.commit();
        }
        break;
      case Result::kTimeout:
      case Result::kWouldBlock:
      case Result::kClosed:
      case Result::kCorrupted:
        usleep(100);
        break;
      default:
        return Violation(72, "unexpected claim result", static_cast<std::uint64_t>(c.result));
    }
  }
  return 0;
}

template <typename Consumer>
int ConsumerLoop(Consumer& c, const DataArea& area, Flags* flags, absl::Time end) {
  std::uint64_t sink = 0;
  while (absl::Now() < end) {
    Frame f = c.read(absl::Now() + kStep);
    Count(flags, f.result);
    switch (f.result) {
      case Result::kOk:
        if (f.data.size() > c.max_frame() || !area.Contains(f.data)) {
          return Violation(80, "frame outside the data area", f.data.size());
        }
        sink += Touch(f.data);
        c.release();
        break;
      case Result::kTimeout:
      case Result::kWouldBlock:
      case Result::kClosed:
      case Result::kCorrupted:
        usleep(100);
        break;
      default:
        return Violation(81, "unexpected read result", static_cast<std::uint64_t>(f.result));
    }
  }
  std::atomic_signal_fence(std::memory_order_seq_cst);
  return static_cast<int>(sink & 0);
}

EndpointOptions Bounded() {
  EndpointOptions o;
  o.open_timeout = absl::Milliseconds(100);
  o.spin_iterations = 500;
  return o;
}

TEST_CASE("SPSC: a hostile writer rewrites cursors, frames and the endpoint table under load") {
  ScopedName name("hostile-spsc");
  ChannelOptions options;
  options.capacity = 4096;
  options.max_frame = 600;
  REQUIRE(CreateChannel(name, options).ok());
  Flags* flags = MapFlags();
  const std::string n = name.str();
  const absl::Duration phase = Phase();
  Child producer([&] {
    auto p = SpscProducer::Attach(n, Bounded());
    if (!p.ok()) return Violation(10, "attach producer");
    DataArea area(n);
    flags->attached.fetch_add(1);
    if (!AwaitGo(flags)) return Violation(12, "no go from the parent");
    return ProducerLoop(*p, area, flags, absl::Now() + phase);
  });
  Child consumer([&] {
    auto c = SpscConsumer::Attach(n, Bounded());
    if (!c.ok()) return Violation(11, "attach consumer");
    DataArea area(n);
    flags->attached.fetch_add(1);
    if (!AwaitGo(flags)) return Violation(12, "no go from the parent");
    return ConsumerLoop(*c, area, flags, absl::Now() + phase);
  });
  AwaitAttached(flags, 2);
  const std::uint64_t seed = Seed();
  INFO("hostile seed " << seed);
  Child hostile([&] { return HostileWriter(n, absl::Now() + phase, seed, true); });
  flags->go.store(1);
  CHECK(hostile.Wait(kWatchdog) == 0);
  CHECK(producer.Wait(kWatchdog) == 0);
  CHECK(consumer.Wait(kWatchdog) == 0);
  // The writer did hit something that mattered.
  CHECK(flags->results[static_cast<int>(Result::kCorrupted)].load() > 0);
  std::printf("SPSC hostile: ok %llu, timeout %llu, closed %llu, corrupted %llu\n",
              static_cast<unsigned long long>(flags->results[0].load()),
              static_cast<unsigned long long>(flags->results[2].load()),
              static_cast<unsigned long long>(flags->results[3].load()),
              static_cast<unsigned long long>(flags->results[5].load()));
  munmap(flags, sizeof(Flags));
}

TEST_CASE("MPMC: a hostile writer rewrites tickets, slot turns and headers under load") {
  ScopedName name("hostile-mpmc");
  ChannelOptions options;
  options.kind = Kind::kMpmc;
  options.capacity = 8;
  options.max_frame = 200;
  options.max_endpoints = 8;
  REQUIRE(CreateChannel(name, options).ok());
  Flags* flags = MapFlags();
  const std::string n = name.str();
  const absl::Duration phase = Phase();
  auto producer_body = [&] {
    auto p = MpmcProducer::Attach(n, Bounded());
    if (!p.ok()) return Violation(10, "attach producer");
    DataArea area(n);
    flags->attached.fetch_add(1);
    if (!AwaitGo(flags)) return Violation(12, "no go from the parent");
    return ProducerLoop(*p, area, flags, absl::Now() + phase);
  };
  auto consumer_body = [&] {
    auto c = MpmcConsumer::Attach(n, Bounded());
    if (!c.ok()) return Violation(11, "attach consumer");
    DataArea area(n);
    flags->attached.fetch_add(1);
    if (!AwaitGo(flags)) return Violation(12, "no go from the parent");
    return ConsumerLoop(*c, area, flags, absl::Now() + phase);
  };
  Child p0(producer_body), p1(producer_body), c0(consumer_body), c1(consumer_body);
  AwaitAttached(flags, 4);
  const std::uint64_t seed = Seed();
  INFO("hostile seed " << seed);
  Child hostile([&] { return HostileWriter(n, absl::Now() + phase, seed, true); });
  flags->go.store(1);
  CHECK(hostile.Wait(kWatchdog) == 0);
  CHECK(p0.Wait(kWatchdog) == 0);
  CHECK(p1.Wait(kWatchdog) == 0);
  CHECK(c0.Wait(kWatchdog) == 0);
  CHECK(c1.Wait(kWatchdog) == 0);
  CHECK(flags->results[static_cast<int>(Result::kCorrupted)].load() > 0);
  std::printf("MPMC hostile: ok %llu, timeout %llu, closed %llu, corrupted %llu\n",
              static_cast<unsigned long long>(flags->results[0].load()),
              static_cast<unsigned long long>(flags->results[2].load()),
              static_cast<unsigned long long>(flags->results[3].load()),
              static_cast<unsigned long long>(flags->results[5].load()));
  munmap(flags, sizeof(Flags));
}

// Openers attach, use and detach endpoints of channels nobody else is attached to (so every
// attach takes over whatever the hostile writer left in the table and the cursors) while the
// header, control block, table and data are rewritten.
template <typename P, typename C>
int OpenerLoop(const std::string& name, absl::Time end) {
  std::uint64_t opened = 0;
  while (absl::Now() < end) {
    {
      internal::OpenOptions o;
      o.access = internal::Access::kReadOnly;
      o.deadline = absl::Now() + absl::Milliseconds(50);
      auto s = internal::Segment::Open(name, o);
      if (s.ok()) {
        const internal::Geometry& g = (*s)->geometry();
        // Validated against fstat: the mapping covers everything the geometry names.
        struct stat st;
        if (fstat((*s)->fd(), &st) != 0 || g.total_size > static_cast<std::uint64_t>(st.st_size)) {
          return Violation(90, "mapped beyond the object", g.total_size);
        }
      }
    }
    auto p = P::Attach(name, Bounded());
    if (p.ok()) {
      ++opened;
      Claim c = p->try_claim(16);
      if (c.ok()) {
        std::memset(c.data.data(), 1, c.data.size());
        (void)p->commit();
      }
    }
    auto c = C::Attach(name, Bounded());
    if (c.ok()) {
      ++opened;
      Frame f = c->try_read();
      if (f.ok()) {
        (void)Touch(f.data);
        c->release();
      }
    }
  }
  std::printf("opener %d: %llu attaches succeeded\n", getpid(),
              static_cast<unsigned long long>(opened));
  return 0;
}

TEST_CASE("openers attaching while a hostile writer rewrites the header and the table") {
  for (const Kind kind : {Kind::kSpsc, Kind::kMpmc}) {
    ScopedName name("hostile-open");
    ChannelOptions options;
    options.kind = kind;
    options.capacity = kind == Kind::kSpsc ? 4096 : 8;
    options.max_endpoints = 4;
    REQUIRE(CreateChannel(name, options).ok());
    const std::string n = name.str();
    // First the header stays intact (attaches succeed and take over whatever the writer left in
    // the table and the cursors), then the header is rewritten too (opens fail, cleanly).
    for (const bool header_too : {false, true}) {
      const absl::Time end = absl::Now() + Phase() / 2;
      const std::uint64_t seed = Seed();
      INFO("hostile seed " << seed << (header_too ? " with header" : ""));
      Child hostile([&] { return HostileWriter(n, end, seed, header_too); });
      Child opener([&] {
        return kind == Kind::kSpsc ? OpenerLoop<SpscProducer, SpscConsumer>(n, end)
                                   : OpenerLoop<MpmcProducer, MpmcConsumer>(n, end);
      });
      CHECK(hostile.Wait(kWatchdog) == 0);
      CHECK(opener.Wait(kWatchdog) == 0);
    }
  }
}

// Tool: a binary of this build's tools/ directory (next to tests/), or "" if it is not built.
std::string Tool(const char* name) {
  char self[4096];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return "";
  std::string path(self, static_cast<std::size_t>(n));
  path = path.substr(0, path.rfind('/')) + "/../tools/" + name;
  return access(path.c_str(), X_OK) == 0 ? path : "";
}

// RunTool runs `path args...` with its output discarded. Returns its exit code, 128 + signal,
// or -1 if it ran past `timeout` (it is then killed).
int RunTool(const std::string& path, std::vector<std::string> args, absl::Duration timeout) {
  Child tool([&] {
    const int devnull = open("/dev/null", O_WRONLY);
    if (devnull >= 0) {
      dup2(devnull, STDOUT_FILENO);
      dup2(devnull, STDERR_FILENO);
    }
    std::vector<char*> argv{const_cast<char*>(path.c_str())};
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(path.c_str(), argv.data());
    return 127;
  });
  return tool.Wait(timeout);
}

// InspectUntil runs every shm-inspect view of `name` in a loop until `end` (and at least 8
// times); each run must exit 0 or 2 (a clear error), never die of a signal, never hang.
// Returns the number of runs.
int InspectUntil(const std::string& inspect, const std::string& name, absl::Time end) {
  int runs = 0;
  const std::vector<std::vector<std::string>> views = {
      {name, "--json"}, {name}, {name, "--frames", "16"}, {"--all", "--json"}};
  while (absl::Now() < end || runs < 8) {
    const auto& args = views[static_cast<std::size_t>(runs) % views.size()];
    const int code = RunTool(inspect, args, absl::Seconds(30));
    INFO("shm-inspect " << args[0] << (args.size() > 1 ? " " + args[1] : "") << " -> " << code);
    REQUIRE((code == 0 || code == 2));
    ++runs;
  }
  return runs;
}

TEST_CASE("shm-inspect facing a hostile writer, then a segment shrunk and regrown under it") {
  const std::string inspect = Tool("shm-inspect");
  if (inspect.empty()) {
    WARN("shm-inspect is not built; skipped");
    return;
  }
  for (const Kind kind : {Kind::kSpsc, Kind::kMpmc}) {
    ScopedName name("hostile-inspect");
    ChannelOptions options;
    options.kind = kind;
    options.capacity = kind == Kind::kSpsc ? 1 << 16 : 64;
    REQUIRE(CreateChannel(name, options).ok());
    const std::string n = name.str();
    std::uint64_t total = 0;
    {
      internal::OpenOptions o;
      o.access = internal::Access::kReadOnly;
      auto seg = internal::Segment::Open(n, o);
      REQUIRE(seg.ok());
      total = (*seg)->geometry().total_size;
    }
    // 1. Random bytes everywhere, the header included.
    const absl::Time end = absl::Now() + Phase() / 2;
    const std::uint64_t seed = Seed();
    INFO("hostile seed " << seed);
    Child hostile([&] { return HostileWriter(n, end, seed, true); });
    const int runs = InspectUntil(inspect, n, end);
    CHECK(hostile.Wait(kWatchdog) == 0);
    // 2. The object shrinks and grows while shm-inspect reads it (it reads with pread, so a
    //    shrink is a short read, not SIGBUS).
    REQUIRE(RemoveChannel(n).ok());
    REQUIRE(CreateChannel(n, options).ok());
    const absl::Time end2 = absl::Now() + Phase() / 2;
    Child shrinker([&] {
      const int fd = shm_open(n.c_str(), O_RDWR, 0);
      if (fd < 0) return 1;
      std::mt19937_64 rng(seed);
      const off_t sizes[] = {
          0, 100, 256, 1024, 4096, static_cast<off_t>(total / 2), static_cast<off_t>(total)};
      while (absl::Now() < end2) {
        if (ftruncate(fd, sizes[rng() % std::size(sizes)]) != 0) return 2;
        usleep(static_cast<useconds_t>(rng() % 500));
      }
      close(fd);
      return 0;
    });
    const int runs2 = InspectUntil(inspect, n, end2);
    CHECK(shrinker.Wait(kWatchdog) == 0);
    std::printf("shm-inspect: %d runs under a hostile writer, %d under a shrinker\n", runs, runs2);
  }
}

TEST_CASE("a segment removed while mapped: endpoints keep working; the name is a new channel") {
  ScopedName name("removed");
  REQUIRE(CreateChannel(name, {}).ok());
  auto producer = SpscProducer::Attach(name);
  REQUIRE(producer.ok());
  Pipe attached;
  Child consumer([&] {
    auto c = SpscConsumer::Attach(name);
    if (!c.ok()) return 10;
    if (!attached.Signal()) return 13;
    for (std::uint64_t i = 0;; ++i) {
      Frame f = c->read(absl::Now() + kWatchdog);
      if (f.result == Result::kClosed) return i == 100 ? 0 : 11;
      if (!f.ok() || f.sequence != i) return 12;
      c->release();
    }
  });
  REQUIRE(attached.Await());
  const std::byte payload[8] = {};
  for (int i = 0; i < 50; ++i)
    REQUIRE(producer->send(payload, absl::Now() + kWatchdog) == Result::kOk);
  REQUIRE(RemoveChannel(name).ok());
  CHECK(SpscConsumer::Attach(name, Bounded()).status().code() == StatusCode::kNotFound);
  // A channel created anew under the name is another object: the old endpoints never see it.
  REQUIRE(CreateChannel(name, {}).ok());
  auto stranger = SpscProducer::Attach(name);
  REQUIRE(stranger.ok());
  REQUIRE(stranger->send(payload, absl::Now() + kWatchdog) == Result::kOk);
  stranger->close();
  for (int i = 0; i < 50; ++i)
    REQUIRE(producer->send(payload, absl::Now() + kWatchdog) == Result::kOk);
  producer->close();
  CHECK(consumer.Wait(kWatchdog) == 0);  // frames 0..99 on the unlinked object, then the end
}

TEST_CASE("a segment shrunk while mapped: endpoints get SIGBUS, openers get DataLoss") {
  ScopedName name("shrunk");
  ChannelOptions options;
  options.capacity = 1 << 16;
  REQUIRE(CreateChannel(name, options).ok());
  Pipe ready;
  Child consumer([&] {
    // The default action (sanitizers install their own reporting handler).
    signal(SIGBUS, SIG_DFL);
    auto c = SpscConsumer::Attach(name);
    if (!c.ok()) return 10;
    if (!ready.Signal()) return 11;
    // Reads until the pages under the ring vanish.
    for (;;) (void)c->read(absl::Now() + absl::Milliseconds(10));
  });
  REQUIRE(ready.Await());
  {
    const int fd = shm_open(name.c_str(), O_RDWR, 0);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, 0) == 0);
    close(fd);
  }
  // The kernel, not the library, decides: an access beyond the end of the object is SIGBUS.
  CHECK(consumer.Wait(kWatchdog) == 128 + SIGBUS);

  // A new opener validates against fstat first and maps nothing beyond it.
  auto again = SpscConsumer::Attach(name, Bounded());
  CHECK(again.status().code() == StatusCode::kDataLoss);
  {
    const int fd = shm_open(name.c_str(), O_RDWR, 0);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, 8192) == 0);  // header intact again, but shorter than it says
    close(fd);
  }
  // The header page is zeros now (ftruncate to 0 dropped it): not initialised / not shmring.
  auto short_one = SpscProducer::Attach(name, Bounded());
  CHECK_FALSE(short_one.ok());

  // Shrinking a fresh, intact segment below its total size: the header still says the old size.
  ScopedName other("shrunk-intact");
  REQUIRE(CreateChannel(other, options).ok());
  {
    const int fd = shm_open(other.c_str(), O_RDWR, 0);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, 8192) == 0);
    close(fd);
  }
  auto truncated = SpscProducer::Attach(other, Bounded());
  CHECK(truncated.status().code() == StatusCode::kDataLoss);
  CHECK(truncated.status().message().find("truncated") != absl::string_view::npos);
}

}  // namespace
}  // namespace shmring
