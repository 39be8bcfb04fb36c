// amqp_link.h — one AMQP 0-9-1 connection with one channel, over rabbitmq-c, for shm-bridge.
//
//   auto url = shmring::bridge::ParseAmqpUrl("amqp://user:pass@broker:5672/%2f");
//   shmring::bridge::AmqpLink link;
//   absl::Status s = link.Connect(*url, tls);   // TCP (or TLS), login, channel 1
//
// Errors come back as absl::Status with one line naming the broker (host:port/vhost, never the
// credentials) and the cause. Unavailable means "the connection is gone, reconnect" (refused,
// reset, broker shutting down); the other codes are not cured by reconnecting: Unauthenticated
// (login refused), NotFound (exchange/queue missing), FailedPrecondition (a message the broker
// refuses, e.g. larger than its max_message_size), InvalidArgument (bad URL, TLS files).
//
// Not thread-safe: one thread owns a link. Every call may block on the socket up to the link's
// timeout (AmqpLink::kRpcTimeout for RPCs).
#ifndef SHMRING_TOOLS_BRIDGE_AMQP_LINK_H_
#define SHMRING_TOOLS_BRIDGE_AMQP_LINK_H_

#include <amqp.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace shmring::bridge {

// AmqpUrl: a parsed amqp:// or amqps:// URL.
struct AmqpUrl {
  std::string host;
  int port = 5672;
  std::string user = "guest";
  std::string password = "guest";
  std::string vhost = "/";
  bool tls = false;
  // Redacted: "amqp://user@host:port/vhost" — what error messages and --progress print.
  std::string Redacted() const;
};

// ParseAmqpUrl parses amqp://[user[:password]@]host[:port][/vhost] (percent-encoding decoded, as
// rabbitmq-c's amqp_parse_url; no path means vhost "/"). amqps:// selects TLS (port 5671 by
// default). InvalidArgument on anything else; the message never repeats the password.
absl::StatusOr<AmqpUrl> ParseAmqpUrl(std::string_view url);

// TlsOptions: for amqps:// only. The peer certificate and its host name are always verified.
struct TlsOptions {
  std::string ca_file;    // PEM CA bundle; empty = /etc/ssl/certs/ca-certificates.crt
  std::string cert_file;  // client certificate (PEM), with key_file, for mutual TLS
  std::string key_file;
};

// Header names every message of shm-bridge carries (docs/bridge.md).
inline constexpr char kHeaderHost[] = "x-shmring-host";        // longstr: origin host name
inline constexpr char kHeaderChannel[] = "x-shmring-channel";  // longstr: "/name" on the origin
inline constexpr char kHeaderSeq[] = "x-shmring-seq";          // signed 64-bit: frame sequence
inline constexpr char kHeaderKind[] = "x-shmring-kind";        // longstr: "spsc" or "mpmc"

// FrameHeaders: the headers of one message, or what was found of them in a received one.
struct FrameHeaders {
  std::string host;
  std::string channel;
  std::string kind;
  std::optional<std::uint64_t> seq;  // nullopt: no (valid) x-shmring-seq header
};

class AmqpLink {
 public:
  static constexpr absl::Duration kRpcTimeout = absl::Seconds(30);

  AmqpLink() = default;
  AmqpLink(const AmqpLink&) = delete;
  AmqpLink& operator=(const AmqpLink&) = delete;
  ~AmqpLink();  // closes politely if still connected

  // Connect opens the socket, logs in (heartbeats off: a dropped peer shows as a socket error)
  // and opens channel 1. Any previous connection is dropped first.
  absl::Status Connect(const AmqpUrl& url, const TlsOptions& tls);
  // Close closes channel and connection politely (bounded by kRpcTimeout), then frees them.
  void Close();
  // Drop frees the connection without a goodbye (after an error).
  void Drop();
  bool connected() const { return conn_ != nullptr; }

  // DeclareExchange: durable exchange of `type`; passive (only checks it exists) if !create.
  absl::Status DeclareExchange(const std::string& name, const std::string& type, bool create);
  // DeclareQueue: durable queue; passive if !create. BindQueue binds it to exchange/key.
  absl::Status DeclareQueue(const std::string& name, bool create);
  absl::Status BindQueue(const std::string& queue, const std::string& exchange,
                         const std::string& key);

  // ---- publisher (shm-bridge out) ----
  // SelectConfirms puts the channel in confirm mode; delivery tags then count 1, 2, ... per
  // connection, one per Publish.
  absl::Status SelectConfirms();
  // Publish sends one message with `headers`; the returned tag is its delivery tag (the next
  // number). `mandatory`: the broker returns a message no queue takes (basic.return, seen by
  // WaitConfirm) instead of dropping it. Unavailable if the socket failed.
  absl::StatusOr<std::uint64_t> Publish(const std::string& exchange, const std::string& key,
                                        std::span<const std::byte> body,
                                        const FrameHeaders& headers, bool persistent,
                                        bool mandatory);
  // Confirm: one basic.ack/nack from the broker: every tag ≤ `tag` if `multiple`.
  struct Confirm {
    std::uint64_t tag = 0;
    bool multiple = false;
    bool ack = true;  // false: nack, the broker lost the message(s): publish them again
    // A mandatory message came back unroutable (no queue bound); its ack follows. `tag` is 0.
    bool returned = false;
  };
  // WaitConfirm waits up to `timeout` for the next confirm: nullopt if none came in time;
  // an error if the channel or connection was closed (with the broker's reason).
  absl::StatusOr<std::optional<Confirm>> WaitConfirm(absl::Duration timeout);

  // ---- consumer (shm-bridge in) ----
  // Consume sets basic.qos prefetch and starts consuming `queue` with manual acks.
  absl::Status Consume(const std::string& queue, std::uint16_t prefetch);
  // Delivery: one received message; valid until the next NextDelivery.
  struct Delivery {
    std::uint64_t tag = 0;
    bool redelivered = false;
    std::span<const std::byte> body;
    FrameHeaders headers;
  };
  // NextDelivery waits up to `timeout`: nullopt if nothing came.
  absl::StatusOr<std::optional<Delivery>> NextDelivery(absl::Duration timeout);
  // Ack acknowledges every delivery up to `tag`.
  absl::Status Ack(std::uint64_t tag);

 private:
  absl::Status RpcStatus(amqp_rpc_reply_t reply, std::string_view what);
  absl::Status LibraryStatus(int code, std::string_view what);
  absl::Status ClosedStatus(const amqp_method_t& method, std::string_view what);

  amqp_connection_state_t conn_ = nullptr;
  std::string where_;  // redacted URL, for messages
  std::uint64_t next_tag_ = 1;
  bool have_envelope_ = false;
  amqp_envelope_t envelope_{};
};

}  // namespace shmring::bridge

#endif  // SHMRING_TOOLS_BRIDGE_AMQP_LINK_H_
