// transport.cc — the table of transports and the registry of named objects to remove.
#include "transport.h"

#include <mqueue.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <csignal>
#include <cstring>

namespace shmring::bench {

std::unique_ptr<Transport> MakeShmringSpsc();
std::unique_ptr<Transport> MakeShmringMpmc();
std::unique_ptr<Transport> MakeFloor();
std::unique_ptr<Transport> MakeNaive();
std::unique_ptr<Transport> MakePipe();
std::unique_ptr<Transport> MakeUnix();
std::unique_ptr<Transport> MakeEventfd();
std::unique_ptr<Transport> MakePosixMq();
std::unique_ptr<Transport> MakeTcp();
std::unique_ptr<Transport> MakeBoostMq();
std::unique_ptr<Transport> MakeShmringSpscFanout();
std::unique_ptr<Transport> MakeShmringBroadcast();

shmring::WaitMode ToWaitMode(Wait wait) {
  switch (wait) {
    case Wait::kSpin:
      return shmring::WaitMode::kSpin;
    case Wait::kBlock:
      return shmring::WaitMode::kBlock;
    case Wait::kHybrid:
      return shmring::WaitMode::kHybrid;
  }
  return shmring::WaitMode::kHybrid;
}

std::int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

std::string_view WaitName(Wait wait) {
  switch (wait) {
    case Wait::kSpin:
      return "spin";
    case Wait::kBlock:
      return "block";
    case Wait::kHybrid:
      return "hybrid";
  }
  return "?";
}

const std::vector<TransportInfo>& Transports() {
  static const std::vector<TransportInfo> table = {
      {"floor", true, true, false, Wait::kSpin,
       "bare ping-pong of one slot in shared memory: the physical limit"},
      {"shmring-spsc", true, true, true, Wait::kSpin, "shmring SPSC byte ring"},
      {"shmring-mpmc", true, true, true, Wait::kSpin, "shmring MPMC slot ring"},
      {"naive", false, true, false, Wait::kSpin,
       "naive spin ring: one store per frame, no cached indices"},
      {"pipe", true, true, false, Wait::kBlock, "pipe(2), one per direction"},
      {"unix", true, true, false, Wait::kBlock, "socketpair(AF_UNIX, SOCK_SEQPACKET)"},
      {"eventfd", true, true, false, Wait::kBlock, "eventfd(2) signalling + shared buffer"},
      {"posix-mq", true, true, false, Wait::kBlock, "POSIX message queue, one per direction"},
      {"tcp", true, true, false, Wait::kBlock, "TCP over 127.0.0.1, TCP_NODELAY"},
      {"boost-mq", true, true, false, Wait::kBlock, "boost::interprocess::message_queue"},
      {"shmring-broadcast", true, true, true, Wait::kSpin,
       "shmring broadcast channel: one publisher, every subscriber reads every frame",
       /*fanout=*/true},
      {"shmring-spsc-fanout", true, true, true, Wait::kSpin,
       "one SPSC channel per subscriber, the publisher writes each frame into all",
       /*fanout=*/true},
  };
  return table;
}

const TransportInfo* FindTransport(std::string_view name) {
  for (const TransportInfo& info : Transports()) {
    if (info.name == name) return &info;
  }
  return nullptr;
}

std::unique_ptr<Transport> MakeTransport(std::string_view name) {
  if (name == "shmring-spsc") return MakeShmringSpsc();
  if (name == "shmring-mpmc") return MakeShmringMpmc();
  if (name == "floor") return MakeFloor();
  if (name == "naive") return MakeNaive();
  if (name == "pipe") return MakePipe();
  if (name == "unix") return MakeUnix();
  if (name == "eventfd") return MakeEventfd();
  if (name == "posix-mq") return MakePosixMq();
  if (name == "tcp") return MakeTcp();
  if (name == "boost-mq") return MakeBoostMq();
  if (name == "shmring-spsc-fanout") return MakeShmringSpscFanout();
  if (name == "shmring-broadcast") return MakeShmringBroadcast();
  return nullptr;
}

absl::Status Transport::AttachSubscriber(int) { return Attach(Side::kB); }

bool Transport::ReceiveEach(std::uint64_t sequence, std::byte* scratch, std::int64_t* arrival_ns) {
  if (!Receive(scratch)) return false;
  arrival_ns[0] = NowNs();
  std::uint64_t got;
  std::memcpy(&got, scratch, sizeof(got));
  return got == sequence;
}

std::string UniqueName(std::string_view tag) {
  // The counter keeps two transports of one kind in a paired run (--against) apart.
  static int counter = 0;
  return "/shmring-bench-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + "-" +
         std::string(tag);
}

std::byte* MapSharedAnonymous(std::size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
}

namespace {

// Fixed storage so a signal handler can walk it without allocating or locking.
struct NameSlot {
  volatile std::sig_atomic_t used = 0;
  NameKind kind = NameKind::kShm;
  char name[96] = {};
};
std::array<NameSlot, 80> g_names;  // a fan-out pair: 4 * kMaxSubscribers names

}  // namespace

void RegisterName(const std::string& name, NameKind kind) {
  for (NameSlot& slot : g_names) {
    if (slot.used) continue;
    std::strncpy(slot.name, name.c_str(), sizeof(slot.name) - 1);
    slot.kind = kind;
    slot.used = 1;
    return;
  }
}

void UnregisterName(const std::string& name) {
  for (NameSlot& slot : g_names) {
    if (slot.used && name == slot.name) slot.used = 0;
  }
}

void RemoveRegisteredNames() {
  // Only async-signal-safe calls: shm_unlink and mq_unlink are unlink(2)/mq_unlink(2).
  for (NameSlot& slot : g_names) {
    if (!slot.used) continue;
    if (slot.kind == NameKind::kShm) {
      shm_unlink(slot.name);
    } else {
      mq_unlink(slot.name);
    }
    slot.used = 0;
  }
}

}  // namespace shmring::bench
