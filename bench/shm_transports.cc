// shm_transports.cc — transports over shared memory: shmring's two rings and the two reference
// points they are judged against (floor: the physical limit of a hand-off between two cores;
// naive: the textbook spin ring that publishes every frame with its own store).
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <optional>
#include <string>

#include "shmring/shmring.h"
#include "transport.h"

namespace shmring::bench {
namespace {

constexpr std::size_t kLine = 128;  // one writer per 128-byte pair of lines (adjacent prefetch)
std::size_t RoundUp(std::size_t v, std::size_t a) { return (v + a - 1) / a * a; }

// SlotsIn: the largest power of two n with n * stride <= bytes (0 if not even one fits).
std::uint64_t SlotsIn(std::uint64_t bytes, std::uint64_t stride) {
  if (stride > bytes) return 0;
  std::uint64_t slots = 1;
  while (slots * 2 * stride <= bytes) slots *= 2;
  return slots;
}

// The naive ring's slot: the message rounded up to 16 bytes.
std::uint64_t NaiveStride(std::size_t size) { return RoundUp(size, 16); }

inline void Relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

// Spins until `ready()` or the deadline; the clock is read every 4096 polls only.
template <typename Ready>
bool SpinUntil(absl::Time deadline, Ready&& ready) {
  for (std::uint32_t i = 1; !ready(); ++i) {
    Relax();
    if ((i & 4095) == 0 && absl::Now() > deadline) return false;
  }
  return true;
}

// A pair of one-direction channels in one shared anonymous mapping.
class SharedPair : public Transport {
 public:
  ~SharedPair() override { Cleanup(); }
  void Cleanup() override {
    if (base_ != nullptr) munmap(base_, bytes_);
    base_ = nullptr;
  }

 protected:
  absl::Status Map(std::size_t per_direction) {
    per_direction_ = RoundUp(per_direction, 4096);
    bytes_ = 2 * per_direction_;
    base_ = MapSharedAnonymous(bytes_);
    if (base_ == nullptr) return absl::ResourceExhaustedError("mmap of the shared area failed");
    return absl::OkStatus();
  }
  std::byte* Direction(bool a_to_b) const { return base_ + (a_to_b ? 0 : per_direction_); }

  std::byte* base_ = nullptr;
  std::size_t bytes_ = 0;
  std::size_t per_direction_ = 0;
};

// ---- floor ----
// One slot per direction: [sequence (atomic) | payload ...] on the same lines, then the reader's
// acknowledgement on a line of its own. The writer copies the payload and stores the sequence
// (release); the reader spins on the sequence (acquire) and copies the payload out. That is the
// least any cross-core hand-off of `size` bytes can do: the lines move once, no index, no fence.
// In stream mode the writer also waits for the reader's acknowledgement (one slot, no overwrite).
struct FloorSlot {
  std::atomic<std::uint64_t> sequence;  // count of messages written; payload follows at +8
};

class Floor final : public SharedPair {
 public:
  absl::Status Setup(const Config& config) override {
    config_ = config;
    payload_offset_ = sizeof(std::uint64_t);
    ack_offset_ = RoundUp(payload_offset_ + config.size, kLine);
    return Map(ack_offset_ + kLine);
  }
  absl::Status Attach(Side side) override {
    out_ = Direction(side == Side::kA);
    in_ = Direction(side == Side::kB);
    return absl::OkStatus();
  }
  bool Send(const std::byte* message) override {
    if (config_.stream) {
      // Acquire: pairs with the reader's release of its acknowledgement; it is done copying.
      if (!SpinUntil(config_.deadline,
                     [&] { return Ack(out_).load(std::memory_order_acquire) == sent_; })) {
        return false;
      }
    }
    std::memcpy(out_ + payload_offset_, message, config_.size);
    // Release: publishes the payload; pairs with the acquire in Receive.
    Seq(out_).store(++sent_, std::memory_order_release);
    return true;
  }
  bool Receive(std::byte* message) override {
    const std::uint64_t want = received_ + 1;
    if (!SpinUntil(config_.deadline,
                   [&] { return Seq(in_).load(std::memory_order_acquire) == want; })) {
      return false;
    }
    std::memcpy(message, in_ + payload_offset_, config_.size);
    received_ = want;
    if (config_.stream) Ack(in_).store(want, std::memory_order_release);
    return true;
  }

 private:
  static std::atomic<std::uint64_t>& Seq(std::byte* d) {
    return reinterpret_cast<FloorSlot*>(d)->sequence;
  }
  std::atomic<std::uint64_t>& Ack(std::byte* d) const {
    return *reinterpret_cast<std::atomic<std::uint64_t>*>(d + ack_offset_);
  }

  Config config_;
  std::size_t payload_offset_ = 0;
  std::size_t ack_offset_ = 0;
  std::byte* out_ = nullptr;
  std::byte* in_ = nullptr;
  std::uint64_t sent_ = 0;
  std::uint64_t received_ = 0;
};

// ---- naive ----
// The textbook Lamport ring: head and tail on their own lines, fixed slots, and every operation
// loads the other side's index afresh and publishes its own with a store per frame. No cached
// indices, no batching: the reference the SPSC ring's streaming rate is measured against.
class Naive final : public SharedPair {
 public:
  absl::Status Setup(const Config& config) override {
    config_ = config;
    stride_ = NaiveStride(config.size);
    slots_ = SlotsIn(config.capacity != 0 ? config.capacity : kDefaultRingBytes, stride_);
    if (slots_ < 2) slots_ = 2;  // the default ring and a message too large for it
    return Map(2 * kLine + slots_ * stride_);
  }
  absl::Status Attach(Side side) override {
    out_ = Direction(side == Side::kA);
    in_ = Direction(side == Side::kB);
    return absl::OkStatus();
  }
  bool Send(const std::byte* message) override {
    const std::uint64_t head = head_;
    // Acquire: pairs with the consumer's release of tail; the slot is free.
    if (!SpinUntil(config_.deadline,
                   [&] { return head - Tail(out_).load(std::memory_order_acquire) < slots_; })) {
      return false;
    }
    std::memcpy(out_ + 2 * kLine + (head & (slots_ - 1)) * stride_, message, config_.size);
    head_ = head + 1;
    Head(out_).store(head_, std::memory_order_release);  // pairs with the acquire in Receive
    return true;
  }
  bool Receive(std::byte* message) override {
    const std::uint64_t tail = tail_;
    if (!SpinUntil(config_.deadline,
                   [&] { return Head(in_).load(std::memory_order_acquire) != tail; })) {
      return false;
    }
    std::memcpy(message, in_ + 2 * kLine + (tail & (slots_ - 1)) * stride_, config_.size);
    tail_ = tail + 1;
    Tail(in_).store(tail_, std::memory_order_release);  // pairs with the acquire in Send
    return true;
  }

 private:
  static std::atomic<std::uint64_t>& Head(std::byte* d) {
    return *reinterpret_cast<std::atomic<std::uint64_t>*>(d);
  }
  static std::atomic<std::uint64_t>& Tail(std::byte* d) {
    return *reinterpret_cast<std::atomic<std::uint64_t>*>(d + kLine);
  }

  Config config_;
  std::uint64_t stride_ = 0;
  std::uint64_t slots_ = 0;
  std::byte* out_ = nullptr;
  std::byte* in_ = nullptr;
  std::uint64_t head_ = 0;
  std::uint64_t tail_ = 0;
};

// ---- shmring-spsc / shmring-mpmc ----
// Two channels (A→B, B→A). The parent creates them; each process attaches its endpoints after
// fork(). Send is the copying send(); Receive the copying receive(), as a user would call them.
template <typename Producer, typename Consumer, Kind kKind>
class ShmringPair final : public Transport {
 public:
  ~ShmringPair() override { Cleanup(); }

  absl::Status Setup(const Config& config) override {
    config_ = config;
    ChannelOptions options;
    options.kind = kKind;
    if (kKind == Kind::kSpsc) {
      options.capacity = config.capacity != 0 ? config.capacity : kDefaultRingBytes;
    } else {
      // The same bytes as the SPSC ring, in whole slots.
      options.max_frame = static_cast<std::uint32_t>(config.size);
      options.capacity = MpmcSlots(config.size, config.capacity);
      options.max_endpoints = 4;
    }
    for (int d = 0; d < 2; ++d) {
      names_[d] = UniqueName(d == 0 ? "ab" : "ba");
      absl::Status s = CreateChannel(names_[d], options);
      if (!s.ok()) return s;
      RegisterName(names_[d], NameKind::kShm);
    }
    return absl::OkStatus();
  }

  absl::Status Attach(Side side) override {
    EndpointOptions options;
    options.wait = ToWaitMode(config_.wait);
    const std::string& out = names_[side == Side::kA ? 0 : 1];
    const std::string& in = names_[side == Side::kA ? 1 : 0];
    auto producer = Producer::Attach(out, options);
    if (!producer.ok()) return producer.status();
    auto consumer = Consumer::Attach(in, options);
    if (!consumer.ok()) return consumer.status();
    // Only the streaming sender batches; side B's acknowledgements are published at once.
    batch_ = config_.stream && side == Side::kA ? config_.batch : 1;
    release_batch_ = config_.stream && side == Side::kB ? config_.batch : 1;
    producer_.emplace(std::move(*producer));
    consumer_.emplace(std::move(*consumer));
    return absl::OkStatus();
  }

  bool Send(const std::byte* message) override {
    if constexpr (kKind == Kind::kSpsc) {
      if (batch_ > 1) {
        // Batched publication: commit_deferred, and a publishing commit every batch_ frames.
        Claim c = producer_->claim(config_.size, config_.deadline);
        if (!c.ok()) return false;
        std::memcpy(c.data.data(), message, config_.size);
        if (++deferred_ == batch_) {
          deferred_ = 0;
          producer_->commit();
        } else {
          producer_->commit_deferred();
        }
        return true;
      }
    }
    return producer_->send(std::span<const std::byte>(message, config_.size), config_.deadline) ==
           Result::kOk;
  }
  bool Receive(std::byte* message) override {
    if constexpr (kKind == Kind::kSpsc) {
      if (deferred_ != 0) {  // whatever we wait for may answer what we have not published yet
        deferred_ = 0;
        producer_->flush();
      }
      if (release_batch_ > 1) {
        // Batched release: release_deferred, and a publishing release() every release_batch_
        // frames (a read that finds the ring empty publishes the rest).
        const Frame f = consumer_->read(config_.deadline);
        if (!f.ok() || f.data.size() != config_.size) return false;
        std::memcpy(message, f.data.data(), config_.size);
        if (++released_ == release_batch_) {
          released_ = 0;
          consumer_->release();
        } else {
          consumer_->release_deferred();
        }
        return true;
      }
    }
    const Received r =
        consumer_->receive(std::span<std::byte>(message, config_.size), config_.deadline);
    return r.ok() && r.size == config_.size;
  }

  void Cleanup() override {
    producer_.reset();
    consumer_.reset();
    for (std::string& name : names_) {
      if (name.empty()) continue;
      (void)RemoveChannel(name);
      UnregisterName(name);
      name.clear();
    }
  }

 private:
  Config config_;
  std::string names_[2];
  std::size_t batch_ = 1;
  std::size_t deferred_ = 0;
  std::size_t release_batch_ = 1;  // stream receiver: publish releases every this many frames
  std::size_t released_ = 0;
  std::optional<Producer> producer_;
  std::optional<Consumer> consumer_;
};

}  // namespace

std::unique_ptr<Transport> MakeFloor() { return std::make_unique<Floor>(); }
std::unique_ptr<Transport> MakeNaive() { return std::make_unique<Naive>(); }
std::unique_ptr<Transport> MakeShmringSpsc() {
  return std::make_unique<ShmringPair<SpscProducer, SpscConsumer, Kind::kSpsc>>();
}
std::unique_ptr<Transport> MakeShmringMpmc() {
  return std::make_unique<ShmringPair<MpmcProducer, MpmcConsumer, Kind::kMpmc>>();
}

bool TakesCapacity(std::string_view name) {
  return name == "shmring-spsc" || name == "shmring-mpmc" || name == "naive" ||
         name == "shmring-spsc-fanout" || name == "shmring-broadcast";
}

std::uint64_t MpmcSlots(std::size_t size, std::uint64_t capacity) {
  const std::uint64_t slots =
      SlotsIn(capacity != 0 ? capacity : kDefaultRingBytes,
              MpmcSlotBytes(static_cast<std::uint32_t>(std::min<std::size_t>(size, UINT32_MAX))));
  return capacity != 0 ? slots : std::max<std::uint64_t>(slots, 16);
}

absl::Status CheckCapacity(std::string_view name, std::size_t size, std::uint64_t capacity) {
  const std::string what = std::string(name) + " ring of " + std::to_string(capacity) + " bytes";
  const bool byte_ring =
      name == "shmring-spsc" || name == "shmring-spsc-fanout" || name == "shmring-broadcast";
  if (byte_ring && size + 16 > capacity / 2) {
    return absl::InvalidArgumentError(what + " holds messages of at most " +
                                      std::to_string(capacity / 2 - 16) + " bytes");
  }
  if (name == "shmring-mpmc" && MpmcSlots(size, capacity) < 2) {
    return absl::InvalidArgumentError(what + " holds fewer than 2 slots of " +
                                      std::to_string(MpmcSlotBytes(static_cast<std::uint32_t>(
                                          std::min<std::size_t>(size, UINT32_MAX)))) +
                                      " bytes");
  }
  if (name == "naive" && SlotsIn(capacity, NaiveStride(size)) < 2) {
    return absl::InvalidArgumentError(what + " holds fewer than 2 slots of " +
                                      std::to_string(NaiveStride(size)) + " bytes");
  }
  return absl::OkStatus();
}

}  // namespace shmring::bench
