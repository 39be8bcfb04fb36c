// bridge.h — the core of shm-bridge: carry a shmring channel's frames through an AMQP broker.
//
//   shmring::bridge::OutOptions out;            // channel -> exchange
//   out.channel = "/quotes"; out.url = *ParseAmqpUrl("amqp://u:p@broker/%2f");
//   out.exchange = "quotes";
//   absl::Status s = shmring::bridge::RunOut(out, stop_flag, progress_callback);
//
// RunOut attaches to the channel as its consumer (SPSC; MPMC through a pool of consumers that
// each hold one frame) and publishes every frame as one message with publisher confirms; a frame
// is released from the ring only after the broker confirmed it. RunIn consumes a queue and
// commits each message as a frame as the channel's producer, acking only after the commit.
// Both reconnect with backoff when the connection drops, and return OK when `stop` is set (after
// finishing what is in flight) or, for RunOut, when the channel is closed and drained.
// Guarantees, headers and the duplicate rule: docs/bridge.md. Uses only shmring's public API.
//
// Errors: InvalidArgument/NotFound/PermissionDenied/FailedPrecondition (channel or broker
// setup: bad URL, missing exchange/queue/channel, login refused, a frame the broker refuses),
// with one line naming the cause; the tool maps them to exit code 2.
#ifndef SHMRING_TOOLS_BRIDGE_BRIDGE_H_
#define SHMRING_TOOLS_BRIDGE_BRIDGE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "bridge/amqp_link.h"

namespace shmring::bridge {

// Stats: what --progress prints; totals since the start of the run.
struct Stats {
  std::uint64_t frames = 0;       // out: frames confirmed; in: frames committed
  std::uint64_t bytes = 0;        // payload bytes of those frames
  std::uint64_t unconfirmed = 0;  // out: published, not yet confirmed; in: delivered, not acked
  std::uint64_t reconnects = 0;
  std::uint64_t duplicates = 0;   // in: messages dropped by the duplicate rule
  std::uint64_t republished = 0;  // out: messages published again after a reconnect or nack
  std::uint64_t unroutable = 0;   // out: messages the broker returned (no queue bound)
};

// ConnectionOptions: the broker and how to reach it again.
struct ConnectionOptions {
  AmqpUrl url;
  TlsOptions tls;
  bool declare = false;  // declare what is missing (durable) instead of requiring it
  // Reconnect backoff: first delay, doubled per failed attempt up to the maximum. Attempts go on
  // until `stop`, except after a failure reconnecting cannot cure (login refused, not found).
  absl::Duration backoff_initial = absl::Milliseconds(100);
  absl::Duration backoff_max = absl::Seconds(5);
  // Progress callback period.
  absl::Duration progress_period = absl::Seconds(1);
};

struct OutOptions {
  std::string channel;
  ConnectionOptions connection;
  std::string exchange;
  std::string exchange_type = "direct";
  std::string routing_key;
  bool persistent = false;
  std::uint32_t window = 256;  // most messages published and not yet confirmed
  // Publish mandatory: a message no queue takes comes back, and out keeps its frame and
  // publishes the window again (every kUnroutableDelay) until a queue is bound. false: the
  // broker drops (and confirms) unroutable messages.
  bool mandatory = true;
  // MPMC channels: how many consumer endpoints hold the window (each holds one frame), at most
  // `window`. Every one of them takes an endpoint entry of the channel.
  std::uint32_t mpmc_holders = 32;
  std::string origin_host;  // x-shmring-host; empty = gethostname()
};

struct InOptions {
  std::string queue;
  std::string channel;
  ConnectionOptions connection;
  std::uint16_t prefetch = 256;
  // With declare: bind the queue to this exchange (declared too) with this key.
  std::string exchange;
  std::string exchange_type = "direct";
  std::string routing_key;
  bool drop_duplicates = true;
};

using ProgressFn = std::function<void(const Stats&)>;

// RunOut / RunIn: see the file comment. `stop` is polled at least every 100 ms (a signal handler
// sets it). `progress`, if set, is called every progress_period and once at the end.
absl::Status RunOut(const OutOptions& options, const std::atomic<bool>& stop,
                    const ProgressFn& progress);
absl::Status RunIn(const InOptions& options, const std::atomic<bool>& stop,
                   const ProgressFn& progress);

// DuplicateFilter: the duplicate rule of `in`, per origin (x-shmring-host, x-shmring-channel):
// - kind "spsc" (a single ordered stream): a frame whose seq ≤ the last committed seq from that
//   origin is a duplicate;
// - any other kind ("mpmc": a redelivered frame may come after later ones): a frame whose seq was
//   committed in this run is a duplicate (the last kRemembered seqs per origin are remembered;
//   older ones are let through — at-least-once, never a loss).
// Messages without a seq header are never duplicates. Memory: per origin O(kRemembered).
class DuplicateFilter {
 public:
  static constexpr std::size_t kRemembered = 1 << 16;
  // IsDuplicate says whether a message with `headers` was already committed.
  bool IsDuplicate(const FrameHeaders& headers) const;
  // Committed records that a message with `headers` was committed.
  void Committed(const FrameHeaders& headers);

 private:
  struct Origin {
    bool has_last = false;
    std::uint64_t last = 0;
    std::set<std::uint64_t> recent;
  };
  std::map<std::pair<std::string, std::string>, Origin> origins_;
};

}  // namespace shmring::bridge

#endif  // SHMRING_TOOLS_BRIDGE_BRIDGE_H_
