// bridge_peer — the two ends of a channel for tests/bridge_test.py (and bench/bridge_bench.py):
//
//   bridge_peer produce NAME FIRST COUNT MAXLEN [--close] [--rate N]
//       sends frames FIRST..FIRST+COUNT-1 of pseudo-random length 16..MAXLEN (index, send time,
//       then bytes that are a function of the index); --rate paces them (frames/s); --fixed makes
//       every frame MAXLEN bytes (such frames do not pass verify).
//   bridge_peer verify NAME COUNT MAXLEN [--timeout SECONDS] [--latency]
//       reads until every index 0..COUNT-1 arrived (or the timeout), checks each frame byte for
//       byte, and prints one JSON line: received, distinct, duplicates, out_of_order (a new index
//       that is not the next one), corrupt, missing, max_dup_distance (how far behind the
//       highest index a duplicate was), and with --latency p50_us/p99_us of now - send time.
//   bridge_peer create NAME KIND CAPACITY [MAX_FRAME]   /   bridge_peer remove NAME
//
// Exit code 0 when verify saw everything intact and in order with no duplicates, 1 otherwise.
#include <time.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "shmring/channel.h"
#include "shmring/mpmc.h"
#include "shmring/spsc.h"

namespace {

std::uint64_t Mix(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

constexpr std::size_t kHeader = 16;  // index (8), send time in ns (8)

std::size_t FrameSize(std::uint64_t index, std::size_t max_len) {
  return kHeader + Mix(index) % (max_len - kHeader + 1);
}

std::uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000ULL +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

void Fill(std::uint64_t index, std::span<std::byte> out) {
  const std::uint64_t now = NowNs();
  std::memcpy(out.data(), &index, 8);
  std::memcpy(out.data() + 8, &now, 8);
  const std::uint64_t seed = Mix(index ^ 0x5555);
  for (std::size_t i = kHeader; i < out.size(); ++i) {
    out[i] = static_cast<std::byte>((seed >> ((i % 8) * 8)) + i);
  }
}

bool Intact(std::span<const std::byte> in, std::size_t max_len, std::uint64_t* index,
            std::uint64_t* sent_ns) {
  if (in.size() < kHeader) return false;
  std::memcpy(index, in.data(), 8);
  std::memcpy(sent_ns, in.data() + 8, 8);
  if (in.size() != FrameSize(*index, max_len)) return false;
  const std::uint64_t seed = Mix(*index ^ 0x5555);
  for (std::size_t i = kHeader; i < in.size(); ++i) {
    if (in[i] != static_cast<std::byte>((seed >> ((i % 8) * 8)) + i)) return false;
  }
  return true;
}

template <typename Producer>
int Produce(Producer& p, std::uint64_t first, std::uint64_t count, std::size_t max_len, double rate,
            bool fixed) {
  std::vector<std::byte> buf(max_len);
  const std::uint64_t start = NowNs();
  for (std::uint64_t i = first; i < first + count; ++i) {
    if (rate > 0) {
      const std::uint64_t due = start + static_cast<std::uint64_t>((i - first) * 1e9 / rate);
      // Sleep, not spin: on a loaded machine a spinning producer steals the bridges' CPU.
      const timespec at{static_cast<time_t>(due / 1000000000ULL),
                        static_cast<long>(due % 1000000000ULL)};
      while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, nullptr) != 0) {
      }
    }
    std::span<std::byte> frame(buf.data(), fixed ? max_len : FrameSize(i, max_len));
    Fill(i, frame);
    const shmring::Result r = p.send(frame, absl::InfiniteFuture());
    if (r != shmring::Result::kOk) {
      std::fprintf(stderr, "bridge_peer: send %" PRIu64 ": %s\n", i,
                   std::string(shmring::ToString(r)).c_str());
      return 2;
    }
  }
  return 0;
}

template <typename Consumer>
int Verify(Consumer& c, std::uint64_t count, std::size_t max_len, double timeout, bool latency) {
  std::vector<bool> seen(count, false);
  std::uint64_t received = 0, distinct = 0, duplicates = 0, out_of_order = 0, corrupt = 0;
  std::uint64_t next = 0, highest = 0, max_dup_distance = 0;
  std::vector<std::uint64_t> latencies;
  const absl::Time deadline = absl::Now() + absl::Seconds(timeout);
  while (distinct < count && absl::Now() < deadline) {
    const shmring::Frame f = c.read(std::min(deadline, absl::Now() + absl::Milliseconds(200)));
    if (f.result == shmring::Result::kTimeout) continue;
    if (!f.ok()) break;
    ++received;
    std::uint64_t index = 0, sent = 0;
    if (!Intact(f.data, max_len, &index, &sent) || index >= count) {
      ++corrupt;
    } else if (seen[index]) {
      ++duplicates;
      max_dup_distance = std::max(max_dup_distance, highest - index);
    } else {
      if (latency) latencies.push_back(NowNs() - sent);
      seen[index] = true;
      ++distinct;
      if (index != next) ++out_of_order;
      next = index + 1;
      highest = std::max(highest, index);
    }
    c.release();
  }
  std::uint64_t p50 = 0, p99 = 0;
  if (!latencies.empty()) {
    std::sort(latencies.begin(), latencies.end());
    p50 = latencies[latencies.size() / 2] / 1000;
    p99 = latencies[latencies.size() * 99 / 100] / 1000;
  }
  std::printf("{\"received\": %" PRIu64 ", \"distinct\": %" PRIu64 ", \"duplicates\": %" PRIu64
              ", \"out_of_order\": %" PRIu64 ", \"corrupt\": %" PRIu64 ", \"missing\": %" PRIu64
              ", \"max_dup_distance\": %" PRIu64 ", \"p50_us\": %" PRIu64 ", \"p99_us\": %" PRIu64
              "}\n",
              received, distinct, duplicates, out_of_order, corrupt, count - distinct,
              max_dup_distance, p50, p99);
  return distinct == count && corrupt == 0 && duplicates == 0 && out_of_order == 0 ? 0 : 1;
}

int Usage() {
  std::fprintf(stderr, "usage: see the comment at the top of tests/bridge_peer.cc\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return Usage();
  const std::string cmd = argv[1];
  const std::string name = argv[2];
  if (cmd == "remove") return shmring::RemoveChannel(name).ok() ? 0 : 2;
  if (cmd == "create") {
    if (argc < 5) return Usage();
    shmring::ChannelOptions o;
    o.kind = std::string(argv[3]) == "mpmc" ? shmring::Kind::kMpmc : shmring::Kind::kSpsc;
    o.capacity = std::strtoull(argv[4], nullptr, 0);
    if (argc > 5) o.max_frame = static_cast<std::uint32_t>(std::strtoul(argv[5], nullptr, 0));
    const absl::Status s = shmring::CreateChannel(name, o);
    if (!s.ok()) std::fprintf(stderr, "bridge_peer: %s\n", s.ToString().c_str());
    return s.ok() ? 0 : 2;
  }
  if (cmd == "produce" && argc >= 6) {
    const std::uint64_t first = std::strtoull(argv[3], nullptr, 10);
    const std::uint64_t count = std::strtoull(argv[4], nullptr, 10);
    const std::size_t max_len = std::strtoull(argv[5], nullptr, 10);
    bool close = false;
    bool fixed = false;
    double rate = 0;
    for (int i = 6; i < argc; ++i) {
      if (std::string(argv[i]) == "--close") close = true;
      if (std::string(argv[i]) == "--fixed") fixed = true;
      if (std::string(argv[i]) == "--rate" && i + 1 < argc) rate = std::atof(argv[++i]);
    }
    auto spsc = shmring::SpscProducer::Attach(name);
    if (spsc.ok()) {
      const int rc = Produce(*spsc, first, count, max_len, rate, fixed);
      if (close) spsc->close();
      return rc;
    }
    auto mpmc = shmring::MpmcProducer::Attach(name);
    if (!mpmc.ok()) {
      std::fprintf(stderr, "bridge_peer: %s\n", mpmc.status().ToString().c_str());
      return 2;
    }
    const int rc = Produce(*mpmc, first, count, max_len, rate, fixed);
    if (close) mpmc->close();
    return rc;
  }
  if (cmd == "verify" && argc >= 5) {
    const std::uint64_t count = std::strtoull(argv[3], nullptr, 10);
    const std::size_t max_len = std::strtoull(argv[4], nullptr, 10);
    double timeout = 600;
    bool latency = false;
    for (int i = 5; i < argc; ++i) {
      if (std::string(argv[i]) == "--timeout" && i + 1 < argc) timeout = std::atof(argv[++i]);
      if (std::string(argv[i]) == "--latency") latency = true;
    }
    auto spsc = shmring::SpscConsumer::Attach(name);
    if (spsc.ok()) return Verify(*spsc, count, max_len, timeout, latency);
    auto mpmc = shmring::MpmcConsumer::Attach(name);
    if (!mpmc.ok()) {
      std::fprintf(stderr, "bridge_peer: %s\n", mpmc.status().ToString().c_str());
      return 2;
    }
    return Verify(*mpmc, count, max_len, timeout, latency);
  }
  return Usage();
}
