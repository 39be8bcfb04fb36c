// test_util.h — helpers shared by the test suites: unique channel names that are removed even
// when a test fails, and fork()ed children with a deadline.
#ifndef SHMRING_TESTS_TEST_UTIL_H_
#define SHMRING_TESTS_TEST_UTIL_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "layout.h"

namespace shmring::testing {

// Prefix of every object the tests create: "shmring-test-<pid of the test binary>-".
std::string TestPrefix();

// UniqueName returns "/shmring-test-<pid>-<tag>-<n>", unique within the test run.
std::string UniqueName(std::string_view tag);

// ScopedName removes the channel when it goes out of scope (also when a REQUIRE throws).
// The test binary's main() additionally removes everything under TestPrefix() at exit.
class ScopedName {
 public:
  explicit ScopedName(std::string_view tag) : name_(UniqueName(tag)) {}
  ~ScopedName();
  ScopedName(const ScopedName&) = delete;
  ScopedName& operator=(const ScopedName&) = delete;
  const std::string& str() const { return name_; }
  const char* c_str() const { return name_.c_str(); }
  operator std::string_view() const { return name_; }

 private:
  std::string name_;
};

// RemoveAllTestObjects unlinks every /dev/shm object under TestPrefix().
void RemoveAllTestObjects();

// RemoveTestObjectsOnSignal makes SIGTERM, SIGINT, SIGHUP and SIGABRT (a meson timeout, ^C, a
// closed terminal, a sanitizer report) unlink every object under TestPrefix() before the test
// binary dies of the signal.
// Call it once from main(); forked children that get the signal just die of it.
void RemoveTestObjectsOnSignal();

// Scale is SHMRING_TEST_SCALE (default 1; the sanitizer runs use 0.1): how much of the frame
// counts and iterations a run does. Scaled(n) is n scaled, at least 1000 (n itself if unset).
double Scale();
std::uint64_t Scaled(std::uint64_t n);

// Mix: the splitmix64 finaliser, for payloads that are a function of their frame's identity.
std::uint64_t Mix(std::uint64_t x);

// Frames that carry their sequence number: 8 bytes of it, then its low byte repeated.
// IntactSeq checks every byte (false for a torn, misplaced or short frame).
void FillSeq(std::uint64_t seq, std::span<std::byte> out);
bool IntactSeq(std::uint64_t seq, std::span<const std::byte> in);

// Frames of (producer, counter), for many producers: 4-byte producer id, 8-byte counter, then
// bytes that are a function of both, so a torn or misdelivered frame is detected. The size is
// ProducerFrameSize: 12 .. 12 + spread - 1 bytes. DecodeProducerFrame returns false for a frame
// whose size or bytes do not match its (producer, counter).
std::size_t ProducerFrameSize(std::uint32_t producer, std::uint64_t counter, std::size_t spread);
void FillProducerFrame(std::uint32_t producer, std::uint64_t counter, std::span<std::byte> out);
bool DecodeProducerFrame(std::span<const std::byte> in, std::size_t spread, std::uint32_t* producer,
                         std::uint64_t* counter);

// CounterSum: one statistics counter of channel `name` summed over its retired counters and
// every endpoint entry, read through a read-only mapping. Throws std::runtime_error if the
// channel cannot be opened.
std::uint64_t CounterSum(const std::string& name, internal::AtomicU64 internal::Counters::*field);

// Pipe: a one-byte signal between processes (created before fork()). Await blocks until the
// other side signals, or returns false once every writer is gone.
class Pipe {
 public:
  Pipe();  // throws std::runtime_error if pipe(2) fails
  ~Pipe();
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  bool Signal();
  bool Await();

 private:
  int fd_[2];
};

// Child: a forked process running `body`; its return value is the exit code (exceptions → 99).
class Child {
 public:
  explicit Child(std::function<int()> body);
  ~Child();  // SIGKILLs and reaps the child if it was not waited for
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  pid_t pid() const { return pid_; }
  // Wait reaps the child; returns its exit code, 128+signal if killed, or -1 if it was still
  // running at the deadline (it is then SIGKILLed and reaped).
  int Wait(absl::Duration timeout = absl::Seconds(120));
  void Kill(int signal);

 private:
  pid_t pid_ = -1;
};

// Eventually polls `condition` (about every millisecond) until it holds — true — or until
// `timeout` passed — false. For conditions another process makes true; never a timing assertion.
bool Eventually(const std::function<bool()>& condition,
                absl::Duration timeout = absl::Seconds(120));

// WakeWord names one of a channel's two futex words.
enum class WakeWord { kDataReady, kSpaceReady };
// SomebodySleepsOn: an endpoint of channel `name` announced that it sleeps on `word` (its
// `waiting` flag is set; read-only, through InspectChannel). Tests wait for it with Eventually
// instead of sleeping and hoping the peer fell asleep.
bool SomebodySleepsOn(const std::string& name, WakeWord word);

}  // namespace shmring::testing

#endif  // SHMRING_TESTS_TEST_UTIL_H_
