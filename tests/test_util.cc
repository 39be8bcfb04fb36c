#include "test_util.h"

#include <dirent.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <exception>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "shmring/channel.h"

namespace shmring::testing {

std::string TestPrefix() {
  static const std::string prefix = absl::StrCat("shmring-test-", getpid(), "-");
  return prefix;
}

std::string UniqueName(std::string_view tag) {
  static std::atomic<int> counter{0};
  return absl::StrCat("/", TestPrefix(), absl::string_view(tag.data(), tag.size()), "-",
                      counter.fetch_add(1));
}

ScopedName::~ScopedName() { shm_unlink(name_.c_str()); }

void RemoveAllTestObjects() {
  const std::string prefix = TestPrefix();
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) return;
  while (dirent* e = readdir(dir)) {
    std::string_view n = e->d_name;
    if (n.substr(0, prefix.size()) == prefix) shm_unlink(absl::StrCat("/", e->d_name).c_str());
  }
  closedir(dir);
}

Child::Child(std::function<int()> body) {
  std::fflush(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    int code = 99;
    try {
      code = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d: exception: %s\n", getpid(), e.what());
    } catch (...) {
      std::fprintf(stderr, "child %d: unknown exception\n", getpid());
    }
    std::fflush(nullptr);
    _exit(code);
  }
}

Child::~Child() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

void Child::Kill(int signal) {
  if (pid_ > 0) kill(pid_, signal);
}

int Child::Wait(absl::Duration timeout) {
  if (pid_ <= 0) return -2;
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -3;
    }
    if (absl::Now() >= deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
      return -1;
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
}

std::string Describe(const absl::Status& status) { return status.ToString(); }

}  // namespace shmring::testing
