// Restart after a crash: a service creates its channel with ChannelOptions::reclaim_stale, is
// killed with SIGKILL at a random moment (while creating, attached, sending, blocked on a full
// ring), and is started again — a fresh process image (fork + exec of this binary running the
// hidden test case "restart service"), as an init system or a shell would. The restarted service
// must find the stale segment and reclaim it when every endpoint is dead — never when one is
// alive: then it gets AlreadyExists and attaches to the live segment instead, and the surviving
// consumer sees the sequence continue.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "segment.h"
#include "shmring/channel.h"
#include "shmring/spsc.h"
#include "test_util.h"

namespace shmring {
namespace {

using absl::StatusCode;
using testing::Child;
using testing::Pipe;
using testing::Scale;
using testing::ScopedName;

constexpr absl::Duration kGenerous = absl::Seconds(60);

ChannelOptions ServiceChannel() {
  ChannelOptions o;
  o.capacity = 4096;
  o.reclaim_stale = true;
  return o;
}

// What a service instance reports on its status pipe.
struct ServiceStatus {
  char how = 0;  // 'C' created (maybe after reclaiming), 'A' attached to a live one
  std::uint64_t first_sequence = 0;  // the producer's next_sequence() after attaching
};

// The service: create-or-attach, then produce frames carrying their sequence number.
// Environment: SHMRING_RESTART_NAME (channel), SHMRING_RESTART_FRAMES (then close and exit;
// 0 = until killed), SHMRING_RESTART_FD (status pipe).
TEST_CASE("restart service", "[.restart-service]") {
  const char* name = std::getenv("SHMRING_RESTART_NAME");
  const char* frames_env = std::getenv("SHMRING_RESTART_FRAMES");
  const char* fd_env = std::getenv("SHMRING_RESTART_FD");
  REQUIRE(name != nullptr);
  REQUIRE(frames_env != nullptr);
  REQUIRE(fd_env != nullptr);
  const std::uint64_t frames = std::strtoull(frames_env, nullptr, 10);
  const int status_fd = std::atoi(fd_env);
  ServiceStatus status;
  const absl::Status created = CreateChannel(name, ServiceChannel());
  if (created.ok()) {
    status.how = 'C';
  } else {
    INFO(created.ToString());
    REQUIRE(created.code() == StatusCode::kAlreadyExists);
    status.how = 'A';
  }
  auto producer = SpscProducer::Attach(name);
  INFO(producer.status().ToString());
  REQUIRE(producer.ok());
  status.first_sequence = producer->next_sequence();
  REQUIRE(write(status_fd, &status, sizeof(status)) == static_cast<ssize_t>(sizeof(status)));
  for (std::uint64_t sent = 0; frames == 0 || sent < frames;) {
    Claim c = producer->claim(sizeof(std::uint64_t), absl::Now() + absl::Milliseconds(100));
    if (c.result == Result::kTimeout) continue;  // nobody reads: the ring is full
    REQUIRE(c.ok());
    std::memcpy(c.data.data(), &c.sequence, sizeof(c.sequence));
    producer->commit();
    ++sent;
  }
  producer->close();
}

// StatusPipe: the pipe a service reports its ServiceStatus on. Not a testing::Pipe: the write
// end's descriptor number crosses exec (SHMRING_RESTART_FD), and the message is a struct.
struct StatusPipe {
  int fds[2];
  StatusPipe() { REQUIRE(pipe(fds) == 0); }
  ~StatusPipe() {
    close(fds[0]);
    if (fds[1] >= 0) close(fds[1]);
  }
};

// Service: a running service process, a testing::Child that execs this binary.
class Service {
 public:
  Service(const std::string& name, std::uint64_t frames)
      : process_([&] {
          close(status_.fds[0]);
          setenv("SHMRING_RESTART_NAME", name.c_str(), 1);
          setenv("SHMRING_RESTART_FRAMES", absl::StrCat(frames).c_str(), 1);
          setenv("SHMRING_RESTART_FD", absl::StrCat(status_.fds[1]).c_str(), 1);
          const int devnull = open("/dev/null", O_WRONLY);
          if (devnull >= 0) dup2(devnull, STDOUT_FILENO);  // Catch2's summary line
          execl("/proc/self/exe", "restart_test", "restart service", static_cast<char*>(nullptr));
          return 127;
        }) {
    // Only the service writes: its death is then the end of the pipe for Status().
    close(status_.fds[1]);
    status_.fds[1] = -1;
  }
  // Status: blocks until the service reported, or returns how == 0 if it died first.
  ServiceStatus Status() {
    ServiceStatus s;
    if (read(status_.fds[0], &s, sizeof(s)) != static_cast<ssize_t>(sizeof(s))) s.how = 0;
    return s;
  }
  void Kill() { process_.Kill(SIGKILL); }
  // Wait: the exit code, 128 + signal, or -1 after the deadline (then it is killed).
  int Wait(absl::Duration timeout = kGenerous) { return process_.Wait(timeout); }

 private:
  StatusPipe status_;  // before process_: the child inherits it
  Child process_;      // SIGKILLed and reaped on destruction if not waited for
};

TEST_CASE("a service killed at a random moment reclaims its segment when restarted") {
  ScopedName name("restart");
  const int restarts = std::max(5, static_cast<int>(30 * Scale()));
  std::mt19937_64 rng(static_cast<std::uint64_t>(absl::ToUnixNanos(absl::Now())));
  int reported = 0;
  for (int i = 0; i < restarts; ++i) {
    Service service(name.str(), 0);
    // Killed anywhere: before or inside CreateChannel, while attaching (half of the time, at a
    // random moment after the start), or while sending or blocked on the full ring (the other
    // half, at a random moment after it reported).
    ServiceStatus s;
    if (rng() & 1) {
      absl::SleepFor(absl::Microseconds(rng() % 30000));
    } else {
      s = service.Status();
      absl::SleepFor(absl::Microseconds(rng() % 5000));
    }
    service.Kill();
    CHECK(service.Wait() == 128 + SIGKILL);
    if (s.how == 0) s = service.Status();
    if (s.how != 0) {
      ++reported;
      // Every earlier instance is dead: this one always reclaimed or created, and as the only
      // producer of a fresh segment it starts at sequence 0.
      CHECK(s.how == 'C');
      CHECK(s.first_sequence == 0);
    }
  }
  // The last restart runs to completion; a consumer then finds a fresh stream: 0, 1, 2, ...
  Service last(name.str(), 10);
  const ServiceStatus s = last.Status();
  CHECK(s.how == 'C');
  CHECK(s.first_sequence == 0);
  REQUIRE(last.Wait() == 0);
  auto consumer = SpscConsumer::Attach(name);
  REQUIRE(consumer.ok());
  for (std::uint64_t i = 0; i < 10; ++i) {
    Frame f = consumer->read(absl::Now() + kGenerous);
    REQUIRE(f.ok());
    CHECK(f.sequence == i);
    consumer->release();
  }
  CHECK(consumer->read(absl::Now() + kGenerous).result == Result::kClosed);
  std::printf("restart: %d of %d killed instances had attached before the kill\n", reported,
              restarts);
}

TEST_CASE("a restarted service never reclaims a segment with a live endpoint") {
  ScopedName name("restart-live");
  constexpr std::uint64_t kFirst = 20;
  // The first instance creates the channel and sends frames; a consumer attaches and reads some.
  auto first = std::make_unique<Service>(name.str(), 0);
  const ServiceStatus s1 = first->Status();
  REQUIRE(s1.how == 'C');
  Pipe ready, more;
  Child consumer([&] {
    auto c = SpscConsumer::Attach(name);
    if (!c.ok()) return 10;
    std::uint64_t expect = 0;
    auto read_some = [&](std::uint64_t n) {
      for (std::uint64_t i = 0; i < n; ++i, ++expect) {
        Frame f = c->read(absl::Now() + kGenerous);
        std::uint64_t payload = ~expect;
        if (f.ok() && f.data.size() == 8) std::memcpy(&payload, f.data.data(), 8);
        if (!f.ok() || f.sequence != expect || payload != expect) return false;
        c->release();
      }
      return true;
    };
    if (!read_some(kFirst)) return 11;
    if (!ready.Signal()) return 12;
    if (!more.Await()) return 13;
    // The restarted service continued the same stream: no reset, nothing lost or repeated.
    if (!read_some(kFirst)) return 14;
    return 0;
  });
  REQUIRE(ready.Await());
  first->Kill();
  CHECK(first->Wait() == 128 + SIGKILL);
  first.reset();

  // The consumer lives: the restarted service must not reclaim; it attaches as the producer.
  Service second(name.str(), 0);
  const ServiceStatus s2 = second.Status();
  CHECK(s2.how == 'A');
  CHECK(s2.first_sequence >= kFirst);
  REQUIRE(more.Signal());
  CHECK(consumer.Wait() == 0);
  second.Kill();
  CHECK(second.Wait() == 128 + SIGKILL);

  // Now every endpoint is dead: the next restart reclaims, and starts a fresh stream.
  Service third(name.str(), 1);
  const ServiceStatus s3 = third.Status();
  CHECK(s3.how == 'C');
  CHECK(s3.first_sequence == 0);
  CHECK(third.Wait() == 0);
}

}  // namespace
}  // namespace shmring
