// kernel_transports.cc — the mechanisms users would pick instead of shmring: pipe, unix socket,
// eventfd, POSIX message queue, TCP loopback, and Boost.Interprocess's message queue. Each is used
// the ordinary, blocking way.
#include <arpa/inet.h>
#include <fcntl.h>
#include <mqueue.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "transport.h"

namespace shmring::bench {
namespace {

absl::Status Errno(std::string_view what) {
  return absl::UnknownError(std::string(what) + ": " + std::strerror(errno));
}

void CloseFd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// Moves exactly n bytes over a stream fd (pipe, TCP); the stream carries fixed-size messages, so
// the size is the framing.
bool WriteAll(int fd, const std::byte* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}
bool ReadAll(int fd, std::byte* p, std::size_t n) {
  while (n > 0) {
    const ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;  // error, or the peer closed
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

// A transport over two fds per process: one to send on, one to receive on. Setup creates both
// directions' fds; Attach keeps the ones of its side and closes the peer's.
class FdPair : public Transport {
 public:
  ~FdPair() override { Cleanup(); }
  absl::Status Attach(Side side) override {
    const int keep = side == Side::kA ? 0 : 1;
    for (int i = 0; i < 2; ++i) {
      if (i != keep) {
        CloseFd(send_fd_[i]);
        CloseFd(receive_fd_[i]);
      }
    }
    send_fd_[0] = send_fd_[keep];
    receive_fd_[0] = receive_fd_[keep];
    if (keep == 1) send_fd_[1] = receive_fd_[1] = -1;
    return absl::OkStatus();
  }
  bool Send(const std::byte* message) override {
    return WriteAll(send_fd_[0], message, config_.size);
  }
  bool Receive(std::byte* message) override {
    return ReadAll(receive_fd_[0], message, config_.size);
  }
  void Cleanup() override {
    for (int i = 0; i < 2; ++i) {
      CloseFd(send_fd_[i]);
      CloseFd(receive_fd_[i]);
    }
  }

 protected:
  Config config_;
  // [0]: side A's fds, [1]: side B's (after Attach, [0] holds this process's).
  int send_fd_[2] = {-1, -1};
  int receive_fd_[2] = {-1, -1};
};

// ---- pipe ----
class Pipe final : public FdPair {
 public:
  absl::Status Setup(const Config& config) override {
    config_ = config;
    int ab[2], ba[2];
    if (pipe2(ab, O_CLOEXEC) != 0) return Errno("pipe2");
    if (pipe2(ba, O_CLOEXEC) != 0) {
      close(ab[0]);
      close(ab[1]);
      return Errno("pipe2");
    }
    send_fd_[0] = ab[1];
    receive_fd_[1] = ab[0];
    send_fd_[1] = ba[1];
    receive_fd_[0] = ba[0];
    return absl::OkStatus();
  }
};

// ---- tcp ----
// Loopback only: a listener on 127.0.0.1, port chosen by the kernel, one connection.
class Tcp : public FdPair {
 public:
  absl::Status Setup(const Config& config) override {
    config_ = config;
    int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (listener < 0) return Errno("socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listener, 1) != 0 ||
        getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      absl::Status s = Errno("bind/listen on 127.0.0.1");
      close(listener);
      return s;
    }
    int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (client < 0 || connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      absl::Status s = Errno("connect to 127.0.0.1");
      if (client >= 0) close(client);
      close(listener);
      return s;
    }
    int server = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    close(listener);
    if (server < 0) {
      close(client);
      return Errno("accept");
    }
    const int one = 1;
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    send_fd_[0] = receive_fd_[0] = client;
    send_fd_[1] = receive_fd_[1] = server;
    return absl::OkStatus();
  }
  absl::Status Attach(Side side) override {
    // One fd serves both directions; close only the peer's socket.
    const int keep = side == Side::kA ? 0 : 1;
    int mine = send_fd_[keep];
    close(send_fd_[1 - keep]);
    send_fd_[0] = receive_fd_[0] = mine;
    send_fd_[1] = receive_fd_[1] = -1;
    return absl::OkStatus();
  }
  void Cleanup() override {
    if (send_fd_[0] >= 0) close(send_fd_[0]);
    if (send_fd_[1] >= 0 && send_fd_[1] != send_fd_[0]) close(send_fd_[1]);
    send_fd_[0] = send_fd_[1] = receive_fd_[0] = receive_fd_[1] = -1;
  }
};

// ---- unix ----
// SOCK_SEQPACKET keeps message boundaries: one send, one recv per message.
class Unix final : public Tcp {
 public:
  absl::Status Setup(const Config& config) override {
    config_ = config;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
      return Errno("socketpair(AF_UNIX, SOCK_SEQPACKET)");
    }
    // Room for a few messages of any size in flight.
    const int buffer = static_cast<int>(std::max<std::size_t>(config.size * 8, 256 * 1024));
    for (int fd : sv) setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
    send_fd_[0] = receive_fd_[0] = sv[0];
    send_fd_[1] = receive_fd_[1] = sv[1];
    return absl::OkStatus();
  }
  bool Send(const std::byte* message) override {
    for (;;) {
      const ssize_t w = send(send_fd_[0], message, config_.size, MSG_NOSIGNAL);
      if (w < 0 && errno == EINTR) continue;
      return w == static_cast<ssize_t>(config_.size);
    }
  }
  bool Receive(std::byte* message) override {
    for (;;) {
      const ssize_t r = recv(receive_fd_[0], message, config_.size, 0);
      if (r < 0 && errno == EINTR) continue;
      return r == static_cast<ssize_t>(config_.size);
    }
  }
};

// ---- eventfd ----
// Each direction: a ring of slots in a shared anonymous mapping and two semaphore eventfds,
// `items` (messages ready) and `space` (free slots). The sender takes a space token, copies, and
// posts an item; the receiver takes an item, copies out, posts a space token. The eventfd
// read/write syscalls order the plain copies (each is a full barrier in the kernel). In a
// ping-pong the reply proves the slot was consumed, so only `items` is used there: one write and
// one blocking read per hop, the kernel's wake-up floor.
class Eventfd final : public Transport {
 public:
  static constexpr std::size_t kSlots = 16;
  ~Eventfd() override { Cleanup(); }

  absl::Status Setup(const Config& config) override {
    config_ = config;
    stride_ = (config.size + 127) / 128 * 128;
    const std::size_t slots = config.stream ? kSlots : 1;
    bytes_ = 2 * slots * stride_;
    base_ = MapSharedAnonymous(bytes_);
    if (base_ == nullptr) return Errno("mmap");
    for (int d = 0; d < 2; ++d) {
      items_[d] = eventfd(0, EFD_SEMAPHORE | EFD_CLOEXEC);
      space_[d] = eventfd(static_cast<unsigned>(slots), EFD_SEMAPHORE | EFD_CLOEXEC);
      if (items_[d] < 0 || space_[d] < 0) return Errno("eventfd");
    }
    slots_ = slots;
    return absl::OkStatus();
  }
  absl::Status Attach(Side side) override {
    out_ = side == Side::kA ? 0 : 1;
    return absl::OkStatus();
  }
  bool Send(const std::byte* message) override {
    std::uint64_t token;
    if (config_.stream && !ReadToken(space_[out_], &token)) return false;
    std::memcpy(Slot(out_, sent_++), message, config_.size);
    const std::uint64_t one = 1;
    return write(items_[out_], &one, sizeof(one)) == sizeof(one);
  }
  bool Receive(std::byte* message) override {
    const int in = 1 - out_;
    std::uint64_t token;
    if (!ReadToken(items_[in], &token)) return false;
    std::memcpy(message, Slot(in, received_++), config_.size);
    if (config_.stream) {
      const std::uint64_t one = 1;
      return write(space_[in], &one, sizeof(one)) == sizeof(one);
    }
    return true;
  }
  void Cleanup() override {
    for (int d = 0; d < 2; ++d) {
      CloseFd(items_[d]);
      CloseFd(space_[d]);
    }
    if (base_ != nullptr) munmap(base_, bytes_);
    base_ = nullptr;
  }

 private:
  static bool ReadToken(int fd, std::uint64_t* token) {
    for (;;) {
      const ssize_t r = read(fd, token, sizeof(*token));
      if (r < 0 && errno == EINTR) continue;
      return r == sizeof(*token);
    }
  }
  std::byte* Slot(int direction, std::uint64_t n) const {
    return base_ + (direction * slots_ + n % slots_) * stride_;
  }

  Config config_;
  std::byte* base_ = nullptr;
  std::size_t bytes_ = 0;
  std::size_t stride_ = 0;
  std::size_t slots_ = 1;
  int items_[2] = {-1, -1};
  int space_[2] = {-1, -1};
  int out_ = 0;
  std::uint64_t sent_ = 0;
  std::uint64_t received_ = 0;
};

// ---- posix-mq ----
class PosixMq final : public Transport {
 public:
  ~PosixMq() override { Cleanup(); }
  absl::Status Setup(const Config& config) override {
    config_ = config;
    mq_attr attr{};
    attr.mq_maxmsg = 10;  // the default /proc/sys/fs/mqueue/msg_max for unprivileged users
    attr.mq_msgsize = static_cast<long>(config.size);
    for (int d = 0; d < 2; ++d) {
      names_[d] = UniqueName(d == 0 ? "mq-ab" : "mq-ba");
      queues_[d] = mq_open(names_[d].c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600, &attr);
      if (queues_[d] == static_cast<mqd_t>(-1)) {
        // Unavailable: this machine's mqueue limits rule the transport out (shmring-bench then
        // reports it and goes on; it does not fail the comparison).
        absl::Status s = absl::UnavailableError(Errno("mq_open " + names_[d] + " (msgsize " +
                                                      std::to_string(config.size) +
                                                      "; see /proc/sys/fs/mqueue/msgsize_max)")
                                                    .message());
        names_[d].clear();
        return s;
      }
      RegisterName(names_[d], NameKind::kMq);
    }
    return absl::OkStatus();
  }
  absl::Status Attach(Side side) override {
    out_ = side == Side::kA ? 0 : 1;
    return absl::OkStatus();
  }
  bool Send(const std::byte* message) override {
    for (;;) {
      if (mq_send(queues_[out_], reinterpret_cast<const char*>(message), config_.size, 0) == 0) {
        return true;
      }
      if (errno != EINTR) return false;
    }
  }
  bool Receive(std::byte* message) override {
    for (;;) {
      const ssize_t r =
          mq_receive(queues_[1 - out_], reinterpret_cast<char*>(message), config_.size, nullptr);
      if (r >= 0) return r == static_cast<ssize_t>(config_.size);
      if (errno != EINTR) return false;
    }
  }
  void Cleanup() override {
    for (int d = 0; d < 2; ++d) {
      if (queues_[d] != static_cast<mqd_t>(-1)) mq_close(queues_[d]);
      queues_[d] = static_cast<mqd_t>(-1);
      if (!names_[d].empty()) {
        mq_unlink(names_[d].c_str());
        UnregisterName(names_[d]);
        names_[d].clear();
      }
    }
  }

 private:
  Config config_;
  std::string names_[2];
  mqd_t queues_[2] = {static_cast<mqd_t>(-1), static_cast<mqd_t>(-1)};
  int out_ = 0;
};

// ---- boost-mq ----
// boost::interprocess::message_queue: a ring of messages in a shm object guarded by a
// process-shared mutex and condition variables. Boost reports errors with exceptions; they are
// caught here and become a Status or a false return.
namespace bip = boost::interprocess;
class BoostMq final : public Transport {
 public:
  static constexpr std::size_t kMessages = 16;
  ~BoostMq() override { Cleanup(); }
  absl::Status Setup(const Config& config) override {
    config_ = config;
    for (int d = 0; d < 2; ++d) {
      // Boost wants the name without the leading '/'; on Linux the object is /dev/shm/<name>.
      names_[d] = UniqueName(d == 0 ? "bmq-ab" : "bmq-ba");
      try {
        bip::message_queue queue(bip::create_only, names_[d].c_str() + 1, kMessages, config.size);
      } catch (const std::exception& e) {
        names_[d].clear();
        return absl::UnknownError(std::string("boost message_queue create: ") + e.what());
      }
      RegisterName(names_[d], NameKind::kShm);
    }
    return absl::OkStatus();
  }
  absl::Status Attach(Side side) override {
    const int out = side == Side::kA ? 0 : 1;
    try {
      out_ = std::make_unique<bip::message_queue>(bip::open_only, names_[out].c_str() + 1);
      in_ = std::make_unique<bip::message_queue>(bip::open_only, names_[1 - out].c_str() + 1);
    } catch (const std::exception& e) {
      return absl::UnknownError(std::string("boost message_queue open: ") + e.what());
    }
    return absl::OkStatus();
  }
  bool Send(const std::byte* message) override {
    try {
      out_->send(message, config_.size, 0);
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }
  bool Receive(std::byte* message) override {
    try {
      bip::message_queue::size_type received = 0;
      unsigned int priority = 0;
      in_->receive(message, config_.size, received, priority);
      return received == config_.size;
    } catch (const std::exception&) {
      return false;
    }
  }
  void Cleanup() override {
    out_.reset();
    in_.reset();
    for (std::string& name : names_) {
      if (name.empty()) continue;
      try {
        bip::message_queue::remove(name.c_str() + 1);
      } catch (const std::exception&) {
      }
      UnregisterName(name);
      name.clear();
    }
  }

 private:
  Config config_;
  std::string names_[2];
  std::unique_ptr<bip::message_queue> out_;
  std::unique_ptr<bip::message_queue> in_;
};

}  // namespace

std::unique_ptr<Transport> MakePipe() { return std::make_unique<Pipe>(); }
std::unique_ptr<Transport> MakeUnix() { return std::make_unique<Unix>(); }
std::unique_ptr<Transport> MakeEventfd() { return std::make_unique<Eventfd>(); }
std::unique_ptr<Transport> MakePosixMq() { return std::make_unique<PosixMq>(); }
std::unique_ptr<Transport> MakeTcp() { return std::make_unique<Tcp>(); }
std::unique_ptr<Transport> MakeBoostMq() { return std::make_unique<BoostMq>(); }

}  // namespace shmring::bench
