// shmring-demo: two processes, one SPSC channel. The child streams a million 64-byte frames, the
// parent checks every sequence number and payload; then both ping-pong 64-byte frames to measure
// one-way latency, next to the same ping-pong over a pair of pipes.
#include <sched.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "shmring/shmring.h"

namespace {

constexpr int kStream = 1'000'000;
constexpr int kPings = 100'000;
constexpr std::size_t kSize = 64;

std::int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

void Pin(int which) {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return;
  int seen = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    if (seen++ == which) {
      cpu_set_t one;
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      sched_setaffinity(0, sizeof(one), &one);
      return;
    }
  }
}

struct Percentiles {
  double p50, p99;
};
Percentiles OneWay(std::vector<std::int64_t>& rtt) {
  std::sort(rtt.begin(), rtt.end());
  return {rtt[rtt.size() / 2] / 2.0, rtt[rtt.size() * 99 / 100] / 2.0};
}

int Fail(const char* what, const absl::Status& s) {
  std::fprintf(stderr, "shmring-demo: %s: %s\n", what, std::string(s.message()).c_str());
  return 2;
}

}  // namespace

int main() {
  const std::string data = "/shmring-demo-" + std::to_string(getpid());
  const std::string back = data + "-back";
  shmring::ChannelOptions options;
  options.capacity = 1 << 16;
  if (absl::Status s = shmring::CreateChannel(data, options); !s.ok()) return Fail("create", s);
  if (absl::Status s = shmring::CreateChannel(back, options); !s.ok()) {
    (void)shmring::RemoveChannel(data);
    return Fail("create", s);
  }
  int to_child[2], to_parent[2];
  if (pipe(to_child) != 0 || pipe(to_parent) != 0) return 2;
  shmring::EndpointOptions spin;
  spin.wait = shmring::WaitMode::kSpin;

  pid_t child = fork();
  if (child == 0) {
    Pin(1);
    auto out = shmring::SpscProducer::Attach(data, spin);
    auto in = shmring::SpscConsumer::Attach(back, spin);
    if (!out.ok() || !in.ok()) _exit(2);
    for (int i = 0; i < kStream; ++i) {
      shmring::Claim c = out->claim(kSize, absl::InfiniteFuture());
      if (!c.ok()) _exit(3);
      std::memset(c.data.data(), i & 0xFF, kSize);
      out->commit();
    }
    // Echo: every frame that arrives on `back` goes out again on `data`.
    for (int i = 0; i < kPings; ++i) {
      shmring::Frame f = in->read(absl::InfiniteFuture());
      if (!f.ok()) _exit(4);
      if (out->try_send(f.data) != shmring::Result::kOk) _exit(5);
      in->release();
    }
    char byte[kSize];  // the same ping-pong over pipes
    for (int i = 0; i < kPings; ++i) {
      if (read(to_child[0], byte, kSize) != static_cast<ssize_t>(kSize)) _exit(6);
      if (write(to_parent[1], byte, kSize) != static_cast<ssize_t>(kSize)) _exit(7);
    }
    out->close();
    _exit(0);
  }
  Pin(0);
  int code = 0;
  {
    auto in = shmring::SpscConsumer::Attach(data, spin);
    auto out = shmring::SpscProducer::Attach(back, spin);
    if (!in.ok() || !out.ok()) {
      code = Fail("attach", in.ok() ? out.status() : in.status());
    } else {
      const std::int64_t start = NowNs();
      std::uint64_t bad = 0;
      for (int i = 0; i < kStream; ++i) {
        shmring::Frame f = in->read(absl::Now() + absl::Seconds(10));
        if (!f.ok()) {
          ++bad;
          break;
        }
        bad += f.sequence != static_cast<std::uint64_t>(i) ||
               f.data[kSize - 1] != static_cast<std::byte>(i & 0xFF);
        in->release();
      }
      const double secs = (NowNs() - start) / 1e9;
      std::printf("streamed %d frames of %zu B in %.3f s: %.1f M frames/s, %s\n", kStream, kSize,
                  secs, kStream / secs / 1e6,
                  bad == 0 ? "sequence 0.. contiguous, payloads intact" : "ERRORS");
      if (bad != 0) code = 1;

      std::vector<std::int64_t> rtt(kPings);
      std::byte ping[kSize] = {};
      for (int i = 0; i < kPings; ++i) {
        const std::int64_t t0 = NowNs();
        if (out->try_send(ping) != shmring::Result::kOk) return 3;
        shmring::Frame f = in->read(absl::Now() + absl::Seconds(10));
        if (!f.ok()) return 4;
        in->release();
        rtt[i] = NowNs() - t0;
      }
      const Percentiles shm = OneWay(rtt);
      char byte[kSize] = {};
      for (int i = 0; i < kPings; ++i) {
        const std::int64_t t0 = NowNs();
        if (write(to_child[1], byte, kSize) != static_cast<ssize_t>(kSize)) return 5;
        if (read(to_parent[0], byte, kSize) != static_cast<ssize_t>(kSize)) return 6;
        rtt[i] = NowNs() - t0;
      }
      const Percentiles pipe_lat = OneWay(rtt);
      std::printf("one-way latency, 64 B ping-pong (%d round trips, RTT/2):\n", kPings);
      std::printf("  shmring-spsc (spin)  p50 %7.0f ns   p99 %7.0f ns\n", shm.p50, shm.p99);
      std::printf("  pipe                 p50 %7.0f ns   p99 %7.0f ns   (%.1fx slower at p50)\n",
                  pipe_lat.p50, pipe_lat.p99, pipe_lat.p50 / shm.p50);
    }
  }
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) code = code ? code : 1;
  (void)shmring::RemoveChannel(data);
  (void)shmring::RemoveChannel(back);
  return code;
}
