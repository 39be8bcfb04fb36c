// bridge.cc — RunOut (channel -> broker) and RunIn (broker -> channel). See bridge.h and
// docs/bridge.md for the guarantees; the comments here say how each is kept.
#include "bridge/bridge.h"

#include <unistd.h>

#include <deque>
#include <memory>
#include <optional>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "shmring/channel.h"
#include "shmring/mpmc.h"
#include "shmring/spsc.h"

namespace shmring::bridge {
namespace {

constexpr absl::Duration kSlice = absl::Milliseconds(100);  // longest wait between `stop` checks
// After `stop`, how long out waits for the confirms of what is in flight. What is still
// unconfirmed then stays unreleased in the channel (sent again by the next run).
constexpr absl::Duration kDrainTimeout = absl::Seconds(30);
// How long out waits before publishing again after the broker returned an unroutable message.
constexpr absl::Duration kUnroutableDelay = absl::Seconds(1);

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "unknown";
  return name;
}

// Retryable: the connection is gone, a new one may work. Everything else (login refused, a
// missing exchange/queue, a message the broker refuses) would fail again the same way.
bool Retryable(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsDeadlineExceeded(s);
}

// ---- sources (out): a channel's consuming end that can hold a window of frames ----

// Source: frames read from a channel stay unreleased for everyone else from Hold() until
// Confirm(): a bridge killed in between leaves them in the channel for the next consumer.
class Source {
 public:
  virtual ~Source() = default;
  virtual Frame TryRead() = 0;  // again before Hold(): the same frame
  virtual Frame Read(absl::Time deadline) = 0;
  // Hold takes the frame just read into the window and returns a token for Confirm.
  virtual std::uint64_t Hold() = 0;
  // Confirm releases held frames; called in Hold() order, then Flush() once per batch.
  virtual void Confirm(std::uint64_t token) = 0;
  virtual void Flush() {}
  virtual std::uint32_t capacity() const = 0;  // most frames held at once
  virtual const char* kind() const = 0;
};

// SPSC: release_held() per frame, publish_release(mark) for the newest confirmed frame.
class SpscSource final : public Source {
 public:
  explicit SpscSource(SpscConsumer consumer) : consumer_(std::move(consumer)) {}
  Frame TryRead() override { return consumer_.try_read(); }
  Frame Read(absl::Time deadline) override { return consumer_.read(deadline); }
  std::uint64_t Hold() override {
    marks_.push_back(consumer_.release_held());
    return marks_.size() - 1 + first_mark_;
  }
  void Confirm(std::uint64_t token) override {
    // Tokens come in order: drop the marks up to this one, remember it for Flush.
    while (first_mark_ <= token) {
      confirmed_ = marks_.front();
      marks_.pop_front();
      ++first_mark_;
      have_confirmed_ = true;
    }
  }
  void Flush() override {
    if (have_confirmed_) consumer_.publish_release(confirmed_);
    have_confirmed_ = false;
  }
  std::uint32_t capacity() const override { return UINT32_MAX; }
  const char* kind() const override { return "spsc"; }

 private:
  SpscConsumer consumer_;
  std::deque<ReleaseMark> marks_;
  std::uint64_t first_mark_ = 0;  // token of marks_.front()
  ReleaseMark confirmed_;
  bool have_confirmed_ = false;
};

// MPMC: a consumer holds one frame until release(); a pool of consumers holds the window.
class MpmcSource final : public Source {
 public:
  explicit MpmcSource(std::vector<MpmcConsumer> pool) : pool_(std::move(pool)) {
    for (std::size_t i = 0; i < pool_.size(); ++i) free_.push_back(i);
  }
  Frame TryRead() override {
    if (free_.empty()) return {Result::kWouldBlock, false, {}, 0};
    return pool_[free_.front()].try_read();
  }
  Frame Read(absl::Time deadline) override {
    if (free_.empty()) return {Result::kTimeout, false, {}, 0};
    return pool_[free_.front()].read(deadline);
  }
  std::uint64_t Hold() override {
    const std::size_t i = free_.front();
    free_.pop_front();
    return i;
  }
  void Confirm(std::uint64_t token) override {
    pool_[token].release();
    free_.push_back(token);
  }
  std::uint32_t capacity() const override { return static_cast<std::uint32_t>(pool_.size()); }
  const char* kind() const override { return "mpmc"; }

 private:
  std::vector<MpmcConsumer> pool_;
  std::deque<std::size_t> free_;
};

absl::StatusOr<std::unique_ptr<Source>> OpenSource(const OutOptions& o) {
  auto spsc = SpscConsumer::Attach(o.channel);
  if (spsc.ok()) return std::make_unique<SpscSource>(std::move(*spsc));
  if (!absl::IsFailedPrecondition(spsc.status())) return spsc.status();
  // Not SPSC (or its consumer role is taken): MPMC?
  std::vector<MpmcConsumer> pool;
  const std::uint32_t want = std::max<std::uint32_t>(1, std::min(o.window, o.mpmc_holders));
  while (pool.size() < want) {
    auto c = MpmcConsumer::Attach(o.channel);
    if (!c.ok()) {
      if (pool.empty()) return spsc.status();            // not MPMC either: the SPSC error says why
      if (absl::IsResourceExhausted(c.status())) break;  // hold fewer: the table is full
      return c.status();
    }
    pool.push_back(std::move(*c));
  }
  return std::make_unique<MpmcSource>(std::move(pool));
}

// ---- sinks (in): a channel's producing end ----
class Sink {
 public:
  virtual ~Sink() = default;
  virtual Result Send(std::span<const std::byte> payload, absl::Time deadline) = 0;
  virtual std::size_t max_frame() const = 0;
};
template <typename Producer>
class ProducerSink final : public Sink {
 public:
  explicit ProducerSink(Producer p) : producer_(std::move(p)) {}
  Result Send(std::span<const std::byte> payload, absl::Time deadline) override {
    return producer_.send(payload, deadline);
  }
  std::size_t max_frame() const override { return producer_.max_frame(); }

 private:
  Producer producer_;
};

absl::StatusOr<std::unique_ptr<Sink>> OpenSink(const std::string& channel) {
  auto spsc = SpscProducer::Attach(channel);
  if (spsc.ok()) return std::make_unique<ProducerSink<SpscProducer>>(std::move(*spsc));
  if (!absl::IsFailedPrecondition(spsc.status())) return spsc.status();
  auto mpmc = MpmcProducer::Attach(channel);
  if (mpmc.ok()) return std::make_unique<ProducerSink<MpmcProducer>>(std::move(*mpmc));
  return absl::IsFailedPrecondition(mpmc.status()) ? spsc.status() : mpmc.status();
}

// Link: an AmqpLink that knows how to set itself up again, with backoff, and the run's stats.
class Link {
 public:
  Link(const ConnectionOptions& options, const std::atomic<bool>& stop, Stats& stats,
       std::function<absl::Status(AmqpLink&)> setup)
      : options_(options), stop_(stop), stats_(stats), setup_(std::move(setup)) {}

  AmqpLink& amqp() { return link_; }

  // Open: the first connection; any error is final.
  absl::Status Open() {
    absl::Status s = link_.Connect(options_.url, options_.tls);
    if (s.ok()) s = setup_(link_);
    if (!s.ok()) link_.Drop();
    return s;
  }

  // Reconnect after `why`: OK once set up again; `why` (or a new final error) if reconnecting
  // cannot help; OK with !connected() if `stop` came first.
  absl::Status Reconnect(const absl::Status& why) {
    link_.Drop();
    if (!Retryable(why)) return why;
    absl::Duration delay = options_.backoff_initial;
    while (!stop_.load(std::memory_order_relaxed)) {  // relaxed: a flag, no data with it
      SleepUnlessStopped(delay);
      if (stop_.load(std::memory_order_relaxed)) break;
      absl::Status s = Open();
      if (s.ok()) {
        ++stats_.reconnects;
        return s;
      }
      if (!Retryable(s)) return s;
      delay = std::min(delay * 2, options_.backoff_max);
    }
    return absl::OkStatus();
  }

  // SleepUnlessStopped sleeps `d`, or less if `stop` is set meanwhile.
  void SleepUnlessStopped(absl::Duration d) {
    const absl::Time end = absl::Now() + d;
    while (!stop_.load(std::memory_order_relaxed) && absl::Now() < end) {
      absl::SleepFor(std::min(kSlice, end - absl::Now()));
    }
  }

 private:
  const ConnectionOptions& options_;
  const std::atomic<bool>& stop_;
  Stats& stats_;
  std::function<absl::Status(AmqpLink&)> setup_;
  AmqpLink link_;
};

// Progress: calls the callback every period.
class Progress {
 public:
  Progress(const ProgressFn& fn, absl::Duration period) : fn_(fn), period_(period) {}
  void Tick(const Stats& s) {
    if (!fn_) return;
    const absl::Time now = absl::Now();
    if (now < next_) return;
    next_ = now + period_;
    fn_(s);
  }
  void Final(const Stats& s) {
    if (fn_) fn_(s);
  }

 private:
  const ProgressFn& fn_;
  absl::Duration period_;
  absl::Time next_ = absl::Now();
};

std::string ChannelError(const std::string& channel, std::string_view what) {
  return absl::StrCat("shmring channel '", CanonicalName(channel), "': ", std::string(what));
}

}  // namespace

// ---- DuplicateFilter ----

bool DuplicateFilter::IsDuplicate(const FrameHeaders& h) const {
  if (!h.seq) return false;
  const auto it = origins_.find({h.host, h.channel});
  if (it == origins_.end() || !it->second.has_last) return false;
  const Origin& o = it->second;
  if (h.kind == "spsc") return *h.seq <= o.last;
  return o.recent.count(*h.seq) != 0;
}

void DuplicateFilter::Committed(const FrameHeaders& h) {
  if (!h.seq) return;
  Origin& o = origins_[{h.host, h.channel}];
  if (!o.has_last || *h.seq > o.last) o.last = *h.seq;
  o.has_last = true;
  if (h.kind == "spsc") return;  // the ordered rule needs only `last`
  o.recent.insert(*h.seq);
  if (o.recent.size() > kRemembered) o.recent.erase(o.recent.begin());
}

// ---- out ----

absl::Status RunOut(const OutOptions& o, const std::atomic<bool>& stop,
                    const ProgressFn& progress_fn) {
  auto source_or = OpenSource(o);
  if (!source_or.ok()) return source_or.status();
  Source& source = **source_or;
  const std::uint32_t limit = std::max<std::uint32_t>(1, std::min(o.window, source.capacity()));
  const std::string canonical = CanonicalName(o.channel);
  FrameHeaders headers{o.origin_host.empty() ? HostName() : o.origin_host, canonical, source.kind(),
                       0};

  struct InFlight {
    std::uint64_t seq;
    std::vector<std::byte> body;  // the copy republished after a reconnect
    std::uint64_t token;
    std::uint64_t tag = 0;
    bool confirmed = false;
  };
  std::deque<InFlight> window;  // in publish order; tags ascend along it
  Stats stats;
  Progress progress(progress_fn, o.connection.progress_period);

  auto publish = [&](AmqpLink& amqp, InFlight& m) -> absl::Status {
    headers.seq = m.seq;
    auto tag = amqp.Publish(o.exchange, o.routing_key, m.body, headers, o.persistent, o.mandatory);
    if (!tag.ok()) return tag.status();
    m.tag = *tag;
    m.confirmed = false;
    return absl::OkStatus();
  };
  // Setup of every connection: the exchange, confirm mode, then everything still unconfirmed
  // again, in order (the old connection's confirms are gone with it).
  Link link(o.connection, stop, stats, [&](AmqpLink& amqp) -> absl::Status {
    absl::Status s = amqp.DeclareExchange(o.exchange, o.exchange_type, o.connection.declare);
    if (s.ok()) s = amqp.SelectConfirms();
    for (InFlight& m : window) {
      if (!s.ok()) break;
      s = publish(amqp, m);
      ++stats.republished;
    }
    return s;
  });
  absl::Status s = link.Open();
  if (!s.ok()) return s;

  // Confirmed frames leave the window from the front only, so releases stay in stream order.
  auto on_confirm = [&](const AmqpLink::Confirm& c) {
    for (InFlight& m : window) {
      if (m.tag > c.tag) break;
      if (c.multiple || m.tag == c.tag) m.confirmed = true;
    }
    bool any = false;
    while (!window.empty() && window.front().confirmed) {
      source.Confirm(window.front().token);
      ++stats.frames;
      stats.bytes += window.front().body.size();
      window.pop_front();
      any = true;
    }
    if (any) source.Flush();
  };
  // A final error names the first frame still in the channel because of it.
  auto final_error = [&](const absl::Status& why) {
    if (window.empty()) return why;
    // The broker's reason does not say which message it refused: name the largest one (for a
    // "message too large" that is the culprit).
    const InFlight* largest = &window.front();
    for (const InFlight& m : window) {
      if (m.body.size() > largest->body.size()) largest = &m;
    }
    return absl::Status(
        why.code(), absl::StrCat(why.message(), "; frames from seq ", window.front().seq,
                                 " on stay in channel '", canonical, "' (largest unconfirmed: seq ",
                                 largest->seq, ", ", largest->body.size(), " bytes)"));
  };
  // Handles an error of the link: OK to go on (reconnected, or stopping), else final.
  auto recover = [&](const absl::Status& why) -> absl::Status {
    absl::Status r = link.Reconnect(why);
    return r.ok() ? r : final_error(r);
  };

  bool end_of_stream = false;
  while (!stop.load(std::memory_order_relaxed)) {  // relaxed: a flag, no data with it
    stats.unconfirmed = window.size();
    progress.Tick(stats);
    if (!link.amqp().connected()) break;  // stop came during a reconnect
    // Fill the window from the ring.
    bool ring_empty = false;
    while (!end_of_stream && window.size() < limit) {
      const Frame f = source.TryRead();
      if (f.result == Result::kWouldBlock) {
        ring_empty = true;
        break;
      }
      if (f.result == Result::kClosed) {
        end_of_stream = true;
        break;
      }
      if (!f.ok())
        return final_error(absl::DataLossError(ChannelError(o.channel, ToString(f.result))));
      window.push_back(
          {f.sequence, std::vector<std::byte>(f.data.begin(), f.data.end()), source.Hold()});
      s = publish(link.amqp(), window.back());
      if (!s.ok()) break;
    }
    if (!s.ok()) {
      s = recover(s);
      if (!s.ok()) return s;
      continue;
    }
    if (window.empty()) {
      if (end_of_stream) break;
      // Nothing in flight: sleep on the ring (the frame is taken by the next TryRead).
      const Frame f = source.Read(absl::Now() + kSlice);
      if (f.result == Result::kClosed) end_of_stream = true;
      continue;
    }
    // Confirms: block while the window is full (or the ring is empty / closed), else just poll.
    const absl::Duration wait = window.size() >= limit || end_of_stream ? kSlice
                                : ring_empty                            ? absl::Milliseconds(1)
                                                                        : absl::ZeroDuration();
    auto c = link.amqp().WaitConfirm(wait);
    while (c.ok() && c->has_value()) {
      if ((*c)->returned) {
        // No queue took it: keep every unconfirmed frame, publish them again a little later.
        ++stats.unroutable;
        link.SleepUnlessStopped(kUnroutableDelay);
        c = absl::UnavailableError("the broker returned an unroutable message");
        break;
      }
      if (!(*c)->ack) {
        // The broker lost these messages: a reconnect publishes the whole window again.
        c = absl::UnavailableError("the broker nacked a message");
        break;
      }
      on_confirm(**c);
      c = link.amqp().WaitConfirm(absl::ZeroDuration());
    }
    if (!c.ok()) {
      s = recover(c.status());
      if (!s.ok()) return s;
    }
  }

  // Stopping (or end-of-stream): finish the confirms in flight. What stays unconfirmed stays
  // unreleased in the channel.
  const absl::Time drain_end = absl::Now() + kDrainTimeout;
  while (!window.empty() && link.amqp().connected() && absl::Now() < drain_end) {
    auto c = link.amqp().WaitConfirm(kSlice);
    if (!c.ok()) break;
    if (c->has_value() && (*c)->ack && !(*c)->returned) on_confirm(**c);
    if (c->has_value() && (!(*c)->ack || (*c)->returned)) break;
  }
  link.amqp().Close();
  stats.unconfirmed = window.size();
  progress.Final(stats);
  return absl::OkStatus();
}

// ---- in ----

absl::Status RunIn(const InOptions& o, const std::atomic<bool>& stop,
                   const ProgressFn& progress_fn) {
  auto sink_or = OpenSink(o.channel);
  if (!sink_or.ok()) return sink_or.status();
  Sink& sink = **sink_or;
  Stats stats;
  Progress progress(progress_fn, o.connection.progress_period);
  DuplicateFilter filter;

  Link link(o.connection, stop, stats, [&](AmqpLink& amqp) -> absl::Status {
    absl::Status s = amqp.DeclareQueue(o.queue, o.connection.declare);
    if (s.ok() && !o.exchange.empty()) {
      s = amqp.DeclareExchange(o.exchange, o.exchange_type, o.connection.declare);
      if (s.ok()) s = amqp.BindQueue(o.queue, o.exchange, o.routing_key);
    }
    if (s.ok()) s = amqp.Consume(o.queue, o.prefetch);
    return s;
  });
  absl::Status s = link.Open();
  if (!s.ok()) return s;

  // Acks go out in batches (multiple=true), always after the frames they cover were committed.
  std::uint64_t committed_tag = 0;  // newest delivery committed (or dropped as duplicate)
  std::uint64_t acked_tag = 0;
  const std::uint64_t ack_batch = std::max<std::uint64_t>(1, o.prefetch / 4);
  auto ack = [&]() -> absl::Status {
    if (committed_tag == acked_tag) return absl::OkStatus();
    absl::Status r = link.amqp().Ack(committed_tag);
    if (r.ok()) acked_tag = committed_tag;
    return r;
  };
  auto recover = [&](const absl::Status& why) -> absl::Status {
    committed_tag = acked_tag = 0;  // tags start again on the new connection
    return link.Reconnect(why);
  };

  while (!stop.load(std::memory_order_relaxed)) {  // relaxed: a flag, no data with it
    stats.unconfirmed = committed_tag - acked_tag;
    progress.Tick(stats);
    if (!link.amqp().connected()) break;  // stop came during a reconnect
    auto d = link.amqp().NextDelivery(committed_tag != acked_tag ? absl::ZeroDuration() : kSlice);
    if (d.ok() && !d->has_value()) {
      s = ack();  // idle: acknowledge what is committed now
      if (!s.ok()) d = s;
    }
    if (!d.ok()) {
      s = recover(d.status());
      if (!s.ok()) return s;
      continue;
    }
    if (!d->has_value()) continue;
    const AmqpLink::Delivery& m = **d;
    if (o.drop_duplicates && filter.IsDuplicate(m.headers)) {
      ++stats.duplicates;
      committed_tag = m.tag;
    } else {
      if (m.body.size() > sink.max_frame()) {
        link.amqp().Close();  // unacked: the message stays in the queue
        return absl::FailedPreconditionError(ChannelError(
            o.channel, absl::StrCat("a message of ", m.body.size(),
                                    " bytes is larger than the channel's max frame (",
                                    sink.max_frame(), "); it stays in queue '", o.queue, "'")));
      }
      // Back-pressure: wait for room as long as it takes. Meanwhile nothing is read from the
      // socket, and the broker sends at most `prefetch` unacked messages.
      Result r = Result::kTimeout;
      while (!stop.load(std::memory_order_relaxed)) {
        r = sink.Send(m.body, absl::Now() + kSlice);
        if (r != Result::kTimeout) break;
        progress.Tick(stats);
      }
      if (r == Result::kTimeout) break;  // stopped while the ring was full: left unacked
      if (r != Result::kOk) {
        link.amqp().Close();
        return absl::FailedPreconditionError(
            ChannelError(o.channel, r == Result::kClosed ? "the channel was closed" : ToString(r)));
      }
      filter.Committed(m.headers);
      ++stats.frames;
      stats.bytes += m.body.size();
      committed_tag = m.tag;
    }
    if (committed_tag - acked_tag >= ack_batch) {
      s = ack();
      if (!s.ok()) {
        s = recover(s);
        if (!s.ok()) return s;
      }
    }
  }
  if (link.amqp().connected()) {
    (void)ack();
    link.amqp().Close();
  }
  stats.unconfirmed = 0;
  progress.Final(stats);
  return absl::OkStatus();
}

}  // namespace shmring::bridge
