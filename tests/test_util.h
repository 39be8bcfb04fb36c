// test_util.h — helpers shared by the test suites: unique channel names that are removed even
// when a test fails, and fork()ed children with a deadline.
#ifndef SHMRING_TESTS_TEST_UTIL_H_
#define SHMRING_TESTS_TEST_UTIL_H_

#include <sys/types.h>

#include <functional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"

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

// RemoveTestObjectsOnSignal makes SIGTERM, SIGINT and SIGHUP (a meson timeout, ^C, a closed
// terminal) unlink every object under TestPrefix() before the test binary dies of the signal.
// Call it once from main(); forked children that get the signal just die of it.
void RemoveTestObjectsOnSignal();

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

// A message for a failed status (Catch2 prints it with INFO/CAPTURE).
std::string Describe(const absl::Status& status);

}  // namespace shmring::testing

#endif  // SHMRING_TESTS_TEST_UTIL_H_
