#include "test_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
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

namespace {

pid_t g_main_pid = 0;
char g_signal_prefix[64];
std::size_t g_signal_prefix_size = 0;

// Async-signal-safe: getdents64 and unlinkat on /dev/shm (shm_unlink is unlink there), no malloc.
void OnTerminatingSignal(int signal) {
  if (getpid() == g_main_pid) {
    const int dir = open("/dev/shm", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
      alignas(8) char buffer[8192];
      for (;;) {
        const long n = syscall(SYS_getdents64, dir, buffer, sizeof(buffer));
        if (n <= 0) break;
        for (long at = 0; at < n;) {
          // struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, char name[].
          unsigned short reclen;
          std::memcpy(&reclen, buffer + at + 16, sizeof(reclen));
          const char* entry = buffer + at + 19;
          if (std::strncmp(entry, g_signal_prefix, g_signal_prefix_size) == 0) {
            unlinkat(dir, entry, 0);
          }
          at += reclen;
        }
      }
      close(dir);
    }
  }
  ::signal(signal, SIG_DFL);
  raise(signal);
}

}  // namespace

void RemoveTestObjectsOnSignal() {
  const std::string prefix = TestPrefix();
  g_main_pid = getpid();
  g_signal_prefix_size = std::min(prefix.size(), sizeof(g_signal_prefix) - 1);
  std::memcpy(g_signal_prefix, prefix.data(), g_signal_prefix_size);
  struct sigaction action = {};
  action.sa_handler = OnTerminatingSignal;
  sigemptyset(&action.sa_mask);
  for (int s : {SIGTERM, SIGINT, SIGHUP}) sigaction(s, &action, nullptr);
}

Child::Child(std::function<int()> body) {
  std::fflush(nullptr);
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    // Die with the test binary (a timeout, ^C), instead of running on as an orphan.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(98);
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
