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
#include <cstdlib>
#include <cstring>
#include <exception>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "inspect.h"
#include "segment.h"
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
  for (int s : {SIGTERM, SIGINT, SIGHUP, SIGABRT}) sigaction(s, &action, nullptr);
}

double Scale() {
  const char* s = std::getenv("SHMRING_TEST_SCALE");
  const double v = s != nullptr ? std::atof(s) : 1.0;
  return v > 0 ? v : 1.0;
}

std::uint64_t Scaled(std::uint64_t n) {
  if (std::getenv("SHMRING_TEST_SCALE") == nullptr) return n;
  return std::max<std::uint64_t>(1000,
                                 static_cast<std::uint64_t>(static_cast<double>(n) * Scale()));
}

std::uint64_t Mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

void FillSeq(std::uint64_t seq, std::span<std::byte> out) {
  std::memcpy(out.data(), &seq, sizeof(seq));
  std::memset(out.data() + 8, static_cast<int>(seq & 0xFF), out.size() - 8);
}

bool IntactSeq(std::uint64_t seq, std::span<const std::byte> in) {
  if (in.size() < 8) return false;
  std::uint64_t s;
  std::memcpy(&s, in.data(), 8);
  if (s != seq) return false;
  for (std::size_t i = 8; i < in.size(); ++i) {
    if (in[i] != static_cast<std::byte>(seq & 0xFF)) return false;
  }
  return true;
}

std::size_t ProducerFrameSize(std::uint32_t producer, std::uint64_t counter, std::size_t spread) {
  return 12 + Mix(counter * 8 + producer) % spread;
}

void FillProducerFrame(std::uint32_t producer, std::uint64_t counter, std::span<std::byte> out) {
  std::memcpy(out.data(), &producer, 4);
  std::memcpy(out.data() + 4, &counter, 8);
  const std::uint64_t k = Mix(counter ^ (std::uint64_t{producer} << 40));
  for (std::size_t i = 12; i < out.size(); ++i) out[i] = static_cast<std::byte>(k >> (i % 8 * 8));
}

bool DecodeProducerFrame(std::span<const std::byte> in, std::size_t spread, std::uint32_t* producer,
                         std::uint64_t* counter) {
  if (in.size() < 12) return false;
  std::memcpy(producer, in.data(), 4);
  std::memcpy(counter, in.data() + 4, 8);
  if (in.size() != ProducerFrameSize(*producer, *counter, spread)) return false;
  const std::uint64_t k = Mix(*counter ^ (std::uint64_t{*producer} << 40));
  for (std::size_t i = 12; i < in.size(); ++i) {
    if (in[i] != static_cast<std::byte>(k >> (i % 8 * 8))) return false;
  }
  return true;
}

std::uint64_t CounterSum(const std::string& name, internal::AtomicU64 internal::Counters::*field) {
  internal::OpenOptions o;
  o.access = internal::Access::kReadOnly;
  auto seg = internal::Segment::Open(name, o);
  if (!seg.ok()) throw std::runtime_error(seg.status().ToString());
  std::uint64_t sum = ((*seg)->control()->retired.*field).load();
  for (std::uint32_t i = 0; i < (*seg)->geometry().max_endpoints; ++i) {
    sum += ((*seg)->endpoint(i)->counters.*field).load();
  }
  return sum;
}

Pipe::Pipe() {
  if (pipe(fd_) != 0) throw std::runtime_error("pipe(2) failed");
}
Pipe::~Pipe() {
  close(fd_[0]);
  close(fd_[1]);
}
bool Pipe::Signal() {
  char c = 1;
  return write(fd_[1], &c, 1) == 1;
}
bool Pipe::Await() {
  char c;
  return read(fd_[0], &c, 1) == 1;
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

bool Eventually(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  for (;;) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
}

bool SomebodySleepsOn(const std::string& name, WakeWord word) {
  absl::StatusOr<internal::Snapshot> s = internal::InspectChannel(name);
  if (!s.ok()) return false;
  return word == WakeWord::kDataReady ? s->data_ready_waiting : s->space_ready_waiting;
}

}  // namespace shmring::testing
