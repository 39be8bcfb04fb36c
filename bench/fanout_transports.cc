// fanout_transports.cc — fan-out transports: one publisher (side A), Config::subscribers
// subscriber processes (side B, one per subscriber), every subscriber receives every message.
//
//   shmring-broadcast     one broadcast channel (lossless: the block policy, never evicting, so a
//                         slow subscriber costs time, never frames); every subscriber its cursor
//   shmring-spsc-fanout   what users build today: one SPSC channel per subscriber; the publisher
//                         writes each frame into every one of them
//
// Start: each subscriber says hello on its reply channel once it attached, and the publisher's
// Attach waits for every hello, so no frame is published before every subscriber can see it.
//
// The replies (latency echoes, stream acknowledgements) travel back on one shmring SPSC channel
// per subscriber, the same for every fan-out transport, so two fan-out transports differ only in
// how the publisher reaches the subscribers. A subclass provides that downstream part.
#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "shmring/broadcast.h"
#include "shmring/shmring.h"
#include "transport.h"

namespace shmring::bench {
namespace {

// kHello: the sequence number of a subscriber's first reply, sent once it attached.
constexpr std::uint64_t kHello = ~std::uint64_t{2};

std::uint64_t SequenceIn(const std::byte* message) {
  std::uint64_t sequence;
  std::memcpy(&sequence, message, sizeof(sequence));
  return sequence;
}

// Fanout: the reply channels and the roles; the downstream (publisher → subscribers) is the
// subclass's.
class Fanout : public Transport {
 public:
  absl::Status Setup(const Config& config) override {
    config_ = config;
    for (int k = 0; k < config.subscribers; ++k) {
      ChannelOptions options;
      options.capacity = kDefaultRingBytes;
      reply_names_.push_back(UniqueName("reply" + std::to_string(k)));
      if (absl::Status s = CreateChannel(reply_names_.back(), options); !s.ok()) return s;
      RegisterName(reply_names_.back(), NameKind::kShm);
    }
    return SetupDownstream();
  }

  absl::Status Attach(Side side) override {
    if (side == Side::kB) return AttachSubscriber(0);
    for (const std::string& name : reply_names_) {
      auto consumer = SpscConsumer::Attach(name, Endpoint());
      if (!consumer.ok()) return consumer.status();
      replies_.push_back(std::move(*consumer));
    }
    // Only a streaming publisher batches its publication.
    batch_ = config_.stream ? config_.batch : 1;
    if (absl::Status s = AttachPublisher(); !s.ok()) return s;
    std::vector<std::byte> hello(config_.size);
    if (!ReceiveEach(kHello, hello.data(), nullptr)) {
      return absl::DeadlineExceededError("not every subscriber attached");
    }
    return absl::OkStatus();
  }

  absl::Status AttachSubscriber(int subscriber) override {
    subscriber_ = subscriber;
    auto producer = SpscProducer::Attach(reply_names_[subscriber], Endpoint());
    if (!producer.ok()) return producer.status();
    reply_.emplace(std::move(*producer));
    release_batch_ = config_.stream ? config_.batch : 1;
    if (absl::Status s = AttachDownstream(subscriber); !s.ok()) return s;
    std::vector<std::byte> hello(config_.size);
    std::memcpy(hello.data(), &kHello, sizeof(kHello));
    if (reply_->send(hello, config_.deadline) != Result::kOk) {
      return absl::UnavailableError("cannot say hello to the publisher");
    }
    return absl::OkStatus();
  }

  // Side A publishes to every subscriber; a subscriber replies on its own channel.
  bool Send(const std::byte* message) override {
    if (subscriber_ >= 0) {
      return reply_->send(std::span<const std::byte>(message, config_.size), config_.deadline) ==
             Result::kOk;
    }
    const bool publish = ++deferred_ >= batch_;
    if (publish) deferred_ = 0;
    return Publish(message, publish);
  }

  // A subscriber receives the next published message. (Side A receives with ReceiveEach.)
  bool Receive(std::byte* message) override {
    if (subscriber_ < 0) return false;
    const bool release = ++released_ >= release_batch_;
    if (release) released_ = 0;
    return ReceiveDownstream(message, release);
  }

  // Polls every pending reply channel; a pass that finds nothing spins again (Wait::kSpin) or
  // waits on the first pending subscriber (block, hybrid), so a publisher sharing CPUs with its
  // subscribers does not steal their time.
  bool ReceiveEach(std::uint64_t sequence, std::byte* scratch, std::int64_t* arrival_ns) override {
    if (deferred_ != 0) {  // the replies may answer what is not published yet
      deferred_ = 0;
      Flush();
    }
    const std::span<std::byte> buffer(scratch, config_.size);
    std::vector<bool> pending(replies_.size(), true);
    std::size_t left = replies_.size();
    const auto take = [&](std::size_t k, const Received& r) {
      if (!r.ok() || r.size != config_.size || SequenceIn(scratch) != sequence) return false;
      if (arrival_ns != nullptr) arrival_ns[k] = NowNs();
      pending[k] = false;
      --left;
      return true;
    };
    for (std::uint32_t pass = 1; left > 0; ++pass) {
      bool any = false;
      for (std::size_t k = 0; k < replies_.size(); ++k) {
        if (!pending[k]) continue;
        const Received r = replies_[k].try_receive(buffer);
        if (r.result == Result::kWouldBlock) continue;
        if (!take(k, r)) return false;
        any = true;
      }
      if (any || left == 0) continue;
      if (config_.wait != Wait::kSpin) {
        const std::size_t k = static_cast<std::size_t>(
            std::find(pending.begin(), pending.end(), true) - pending.begin());
        if (!take(k, replies_[k].receive(buffer, config_.deadline))) return false;
      } else if ((pass & 4095) == 0 && absl::Now() > config_.deadline) {
        return false;
      }
    }
    return true;
  }

  void Cleanup() override {
    replies_.clear();
    reply_.reset();
    CleanupDownstream();
    for (const std::string& name : reply_names_) {
      (void)RemoveChannel(name);
      UnregisterName(name);
    }
    reply_names_.clear();
  }

 protected:
  EndpointOptions Endpoint() const {
    EndpointOptions options;
    options.wait = ToWaitMode(config_.wait);
    return options;
  }

  // SetupDownstream creates (and RegisterName()s) the publisher's channel(s), in the parent.
  virtual absl::Status SetupDownstream() = 0;
  virtual absl::Status AttachPublisher() = 0;
  virtual absl::Status AttachDownstream(int subscriber) = 0;
  // Publish sends one message to every subscriber; `publish` false: the frame may stay deferred
  // (batched publication) until a later Publish(…, true) or Flush().
  virtual bool Publish(const std::byte* message, bool publish) = 0;
  virtual void Flush() = 0;
  // ReceiveDownstream: the subscriber's next message; `release` false: its release may be deferred.
  virtual bool ReceiveDownstream(std::byte* message, bool release) = 0;
  // CleanupDownstream detaches and removes what SetupDownstream created. Idempotent.
  virtual void CleanupDownstream() = 0;

  Config config_;
  int subscriber_ = -1;  // side B: which subscriber this process is; -1: the publisher

 private:
  std::vector<std::string> reply_names_;
  std::vector<SpscConsumer> replies_;  // publisher: one per subscriber
  std::optional<SpscProducer> reply_;  // subscriber
  std::size_t batch_ = 1;
  std::size_t deferred_ = 0;
  std::size_t release_batch_ = 1;
  std::size_t released_ = 0;
};

// ---- shmring-spsc-fanout ----
class SpscFanout final : public Fanout {
 public:
  ~SpscFanout() override { Cleanup(); }

 protected:
  absl::Status SetupDownstream() override {
    ChannelOptions options;
    options.capacity = config_.capacity != 0 ? config_.capacity : kDefaultRingBytes;
    for (int k = 0; k < config_.subscribers; ++k) {
      names_.push_back(UniqueName("fan" + std::to_string(k)));
      if (absl::Status s = CreateChannel(names_.back(), options); !s.ok()) return s;
      RegisterName(names_.back(), NameKind::kShm);
    }
    return absl::OkStatus();
  }
  absl::Status AttachPublisher() override {
    for (const std::string& name : names_) {
      auto producer = SpscProducer::Attach(name, Endpoint());
      if (!producer.ok()) return producer.status();
      producers_.push_back(std::move(*producer));
    }
    return absl::OkStatus();
  }
  absl::Status AttachDownstream(int subscriber) override {
    auto consumer = SpscConsumer::Attach(names_[subscriber], Endpoint());
    if (!consumer.ok()) return consumer.status();
    consumer_.emplace(std::move(*consumer));
    return absl::OkStatus();
  }
  bool Publish(const std::byte* message, bool publish) override {
    for (SpscProducer& p : producers_) {
      const Claim c = p.claim(config_.size, config_.deadline);
      if (!c.ok()) return false;
      std::memcpy(c.data.data(), message, config_.size);
      if (publish) {
        p.commit();
      } else {
        p.commit_deferred();
      }
    }
    return true;
  }
  void Flush() override {
    for (SpscProducer& p : producers_) p.flush();
  }
  bool ReceiveDownstream(std::byte* message, bool release) override {
    const Frame f = consumer_->read(config_.deadline);
    if (!f.ok() || f.data.size() != config_.size) return false;
    std::memcpy(message, f.data.data(), config_.size);
    if (release) {
      consumer_->release();
    } else {
      consumer_->release_deferred();
    }
    return true;
  }
  void CleanupDownstream() override {
    producers_.clear();
    consumer_.reset();
    for (const std::string& name : names_) {
      (void)RemoveChannel(name);
      UnregisterName(name);
    }
    names_.clear();
  }

 private:
  std::vector<std::string> names_;
  std::vector<SpscProducer> producers_;
  std::optional<SpscConsumer> consumer_;
};

// ---- shmring-broadcast ----
class BroadcastFanout final : public Fanout {
 public:
  ~BroadcastFanout() override { Cleanup(); }

 protected:
  absl::Status SetupDownstream() override {
    ChannelOptions options;
    options.kind = Kind::kBroadcast;
    options.capacity = config_.capacity != 0 ? config_.capacity : kDefaultRingBytes;
    options.max_endpoints = static_cast<std::uint32_t>(config_.subscribers);
    options.overflow = OverflowPolicy::kBlock;
    // Lossless: a subscriber the scheduler starved is waited for, never evicted (the run's
    // deadline still bounds everything).
    options.evict_after = absl::InfiniteDuration();
    name_ = UniqueName("bcast");
    if (absl::Status s = CreateChannel(name_, options); !s.ok()) return s;
    RegisterName(name_, NameKind::kShm);
    return absl::OkStatus();
  }
  absl::Status AttachPublisher() override {
    auto publisher = BroadcastPublisher::Attach(name_, Endpoint());
    if (!publisher.ok()) return publisher.status();
    publisher_.emplace(std::move(*publisher));
    return absl::OkStatus();
  }
  absl::Status AttachDownstream(int) override {
    // Oldest: nothing is published before every subscriber said hello, so this is frame 0.
    auto subscriber = BroadcastSubscriber::Attach(name_, StartAt::kOldest, Endpoint());
    if (!subscriber.ok()) return subscriber.status();
    subscriber_.emplace(std::move(*subscriber));
    return absl::OkStatus();
  }
  bool Publish(const std::byte* message, bool publish) override {
    const Claim c = publisher_->claim(config_.size, config_.deadline);
    if (!c.ok()) return false;
    std::memcpy(c.data.data(), message, config_.size);
    if (publish) return publisher_->commit() == Result::kOk;
    publisher_->commit_deferred();
    return true;
  }
  void Flush() override { publisher_->flush(); }
  // Read in place, copy, then release: kOk proves the copy intact (a lossless channel that never
  // evicts always gives kOk). Driven exactly as SpscFanout drives its SPSC consumers, so the two
  // compare the same idiom: in a stream, release_deferred() and a publishing release() every
  // Config::batch frames (Fanout::Receive decides `release`); in a latency run, release() each.
  bool ReceiveDownstream(std::byte* message, bool release) override {
    const Frame f = subscriber_->read(config_.deadline);
    if (!f.ok() || f.data.size() != config_.size) return false;
    std::memcpy(message, f.data.data(), config_.size);
    const Result r = release ? subscriber_->release() : subscriber_->release_deferred();
    return r == Result::kOk;
  }
  void CleanupDownstream() override {
    publisher_.reset();
    subscriber_.reset();
    if (!name_.empty()) {
      (void)RemoveChannel(name_);
      UnregisterName(name_);
      name_.clear();
    }
  }

 private:
  std::string name_;
  std::optional<BroadcastPublisher> publisher_;
  std::optional<BroadcastSubscriber> subscriber_;
};

}  // namespace

std::unique_ptr<Transport> MakeShmringSpscFanout() { return std::make_unique<SpscFanout>(); }
std::unique_ptr<Transport> MakeShmringBroadcast() { return std::make_unique<BroadcastFanout>(); }

}  // namespace shmring::bench
