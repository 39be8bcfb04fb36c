// amqp_link.cc — rabbitmq-c behind absl::Status: connect/login, declares, publish with
// confirms, consume with manual acks. See amqp_link.h for the error mapping.
#include "bridge/amqp_link.h"

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <sys/time.h>

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace shmring::bridge {
namespace {

timeval TimevalOf(absl::Duration d) {
  if (d < absl::ZeroDuration()) d = absl::ZeroDuration();
  const std::int64_t us = absl::ToInt64Microseconds(d);
  return timeval{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
}

std::string BytesToString(amqp_bytes_t b) {
  return std::string(static_cast<const char*>(b.bytes), b.len);
}

// ReplyCodeStatus maps an AMQP reply code (channel.close/connection.close) to a status.
absl::Status ReplyCodeStatus(int code, const std::string& text, std::string_view where,
                             std::string_view what) {
  const std::string message = absl::StrFormat("AMQP broker %s: %s: %d %s", where, what, code, text);
  switch (code) {
    case 403:  // ACCESS_REFUSED (login, or a resource the user may not use)
      return absl::UnauthenticatedError(message);
    case 404:  // NOT_FOUND (exchange, queue)
    case 530:  // NOT_ALLOWED (e.g. no such vhost)
      return absl::NotFoundError(message);
    case 406:  // PRECONDITION_FAILED (message too large, exchange of another type, ...)
    case 405:  // RESOURCE_LOCKED (exclusive queue)
      return absl::FailedPreconditionError(message);
    default:  // 320 CONNECTION_FORCED (broker shutting down), 541 INTERNAL_ERROR, ...
      return absl::UnavailableError(message);
  }
}

}  // namespace

std::string AmqpUrl::Redacted() const {
  return absl::StrCat(tls ? "amqps://" : "amqp://", user, "@", host, ":", port, "/", vhost);
}

absl::StatusOr<AmqpUrl> ParseAmqpUrl(std::string_view text) {
  std::string copy(text);  // amqp_parse_url writes into its argument
  amqp_connection_info info;
  amqp_default_connection_info(&info);
  if (amqp_parse_url(copy.data(), &info) != AMQP_STATUS_OK || info.host == nullptr ||
      info.host[0] == '\0') {
    return absl::InvalidArgumentError(
        "bad AMQP URL (expected amqp://[user[:password]@]host[:port][/vhost] or amqps://...)");
  }
  AmqpUrl url;
  url.host = info.host;
  url.port = info.port;
  url.user = info.user;
  url.password = info.password;
  url.vhost = info.vhost;
  url.tls = info.ssl != 0;
  if (url.port <= 0 || url.port > 65535) return absl::InvalidArgumentError("bad AMQP URL: port");
  return url;
}

AmqpLink::~AmqpLink() { Close(); }

void AmqpLink::Drop() {
  if (have_envelope_) amqp_destroy_envelope(&envelope_);
  have_envelope_ = false;
  if (conn_ != nullptr) amqp_destroy_connection(conn_);
  conn_ = nullptr;
}

void AmqpLink::Close() {
  if (conn_ == nullptr) return;
  amqp_channel_close(conn_, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(conn_, AMQP_REPLY_SUCCESS);
  Drop();
}

absl::Status AmqpLink::LibraryStatus(int code, std::string_view what) {
  return absl::UnavailableError(
      absl::StrFormat("AMQP broker %s: %s: %s", where_, what, amqp_error_string2(code)));
}

absl::Status AmqpLink::ClosedStatus(const amqp_method_t& method, std::string_view what) {
  if (method.id == AMQP_CONNECTION_CLOSE_METHOD) {
    const auto* m = static_cast<const amqp_connection_close_t*>(method.decoded);
    return ReplyCodeStatus(m->reply_code, BytesToString(m->reply_text), where_, what);
  }
  if (method.id == AMQP_CHANNEL_CLOSE_METHOD) {
    const auto* m = static_cast<const amqp_channel_close_t*>(method.decoded);
    return ReplyCodeStatus(m->reply_code, BytesToString(m->reply_text), where_, what);
  }
  return absl::UnavailableError(
      absl::StrFormat("AMQP broker %s: %s: unexpected method 0x%08x", where_, what, method.id));
}

absl::Status AmqpLink::RpcStatus(amqp_rpc_reply_t reply, std::string_view what) {
  switch (reply.reply_type) {
    case AMQP_RESPONSE_NORMAL:
      return absl::OkStatus();
    case AMQP_RESPONSE_NONE:
      return absl::UnavailableError(
          absl::StrFormat("AMQP broker %s: %s: no reply (missing RPC reply type)", where_, what));
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
      return LibraryStatus(reply.library_error, what);
    case AMQP_RESPONSE_SERVER_EXCEPTION:
      return ClosedStatus(reply.reply, what);
  }
  return absl::UnavailableError("unknown rabbitmq-c reply");
}

absl::Status AmqpLink::Connect(const AmqpUrl& url, const TlsOptions& tls) {
  Drop();
  where_ = absl::StrCat(url.host, ":", url.port, " (vhost ", url.vhost, ")");
  next_tag_ = 1;
  conn_ = amqp_new_connection();
  if (conn_ == nullptr) return absl::ResourceExhaustedError("amqp_new_connection failed");
  amqp_socket_t* socket = nullptr;
  if (url.tls) {
    socket = amqp_ssl_socket_new(conn_);
    if (socket == nullptr) return absl::InternalError("cannot create a TLS socket");
    const std::string ca = tls.ca_file.empty() ? "/etc/ssl/certs/ca-certificates.crt" : tls.ca_file;
    if (amqp_ssl_socket_set_cacert(socket, ca.c_str()) != AMQP_STATUS_OK) {
      Drop();
      return absl::InvalidArgumentError(absl::StrCat("cannot load TLS CA file '", ca, "'"));
    }
    if (!tls.cert_file.empty() && amqp_ssl_socket_set_key(socket, tls.cert_file.c_str(),
                                                          tls.key_file.c_str()) != AMQP_STATUS_OK) {
      Drop();
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot load TLS client certificate '", tls.cert_file, "' / key '", tls.key_file, "'"));
    }
    amqp_ssl_socket_set_verify_peer(socket, 1);
    amqp_ssl_socket_set_verify_hostname(socket, 1);
  } else {
    socket = amqp_tcp_socket_new(conn_);
    if (socket == nullptr) return absl::InternalError("cannot create a TCP socket");
  }
  timeval connect_timeout = TimevalOf(absl::Seconds(10));
  const int rc = amqp_socket_open_noblock(socket, url.host.c_str(), url.port, &connect_timeout);
  if (rc != AMQP_STATUS_OK) {
    absl::Status s = LibraryStatus(rc, "cannot connect");
    Drop();
    return s;
  }
  timeval rpc_timeout = TimevalOf(kRpcTimeout);
  amqp_set_rpc_timeout(conn_, &rpc_timeout);
  amqp_set_handshake_timeout(conn_, &rpc_timeout);
  // Heartbeat 0: none. A dead broker shows as a socket error or an RPC timeout.
  absl::Status s =
      RpcStatus(amqp_login(conn_, url.vhost.c_str(), 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
                           url.user.c_str(), url.password.c_str()),
                absl::StrCat("login as '", url.user, "'"));
  if (s.ok()) {
    amqp_channel_open(conn_, 1);
    s = RpcStatus(amqp_get_rpc_reply(conn_), "channel.open");
  }
  if (!s.ok()) Drop();
  return s;
}

absl::Status AmqpLink::DeclareExchange(const std::string& name, const std::string& type,
                                       bool create) {
  amqp_exchange_declare(conn_, 1, amqp_cstring_bytes(name.c_str()),
                        amqp_cstring_bytes(type.c_str()), create ? 0 : 1, /*durable=*/1,
                        /*auto_delete=*/0, /*internal=*/0, amqp_empty_table);
  return RpcStatus(amqp_get_rpc_reply(conn_), absl::StrCat("exchange '", name, "'"));
}

absl::Status AmqpLink::DeclareQueue(const std::string& name, bool create) {
  amqp_queue_declare(conn_, 1, amqp_cstring_bytes(name.c_str()), create ? 0 : 1, /*durable=*/1,
                     /*exclusive=*/0, /*auto_delete=*/0, amqp_empty_table);
  return RpcStatus(amqp_get_rpc_reply(conn_), absl::StrCat("queue '", name, "'"));
}

absl::Status AmqpLink::BindQueue(const std::string& queue, const std::string& exchange,
                                 const std::string& key) {
  amqp_queue_bind(conn_, 1, amqp_cstring_bytes(queue.c_str()), amqp_cstring_bytes(exchange.c_str()),
                  amqp_cstring_bytes(key.c_str()), amqp_empty_table);
  return RpcStatus(amqp_get_rpc_reply(conn_),
                   absl::StrCat("binding queue '", queue, "' to exchange '", exchange, "'"));
}

absl::Status AmqpLink::SelectConfirms() {
  amqp_confirm_select(conn_, 1);
  return RpcStatus(amqp_get_rpc_reply(conn_), "confirm.select");
}

absl::StatusOr<std::uint64_t> AmqpLink::Publish(const std::string& exchange, const std::string& key,
                                                std::span<const std::byte> body,
                                                const FrameHeaders& headers, bool persistent,
                                                bool mandatory) {
  amqp_table_entry_t entries[4];
  entries[0].key = amqp_cstring_bytes(kHeaderHost);
  entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
  entries[0].value.value.bytes = amqp_cstring_bytes(headers.host.c_str());
  entries[1].key = amqp_cstring_bytes(kHeaderChannel);
  entries[1].value.kind = AMQP_FIELD_KIND_UTF8;
  entries[1].value.value.bytes = amqp_cstring_bytes(headers.channel.c_str());
  entries[2].key = amqp_cstring_bytes(kHeaderSeq);
  entries[2].value.kind = AMQP_FIELD_KIND_I64;
  entries[2].value.value.i64 = static_cast<std::int64_t>(headers.seq.value_or(0));
  entries[3].key = amqp_cstring_bytes(kHeaderKind);
  entries[3].value.kind = AMQP_FIELD_KIND_UTF8;
  entries[3].value.value.bytes = amqp_cstring_bytes(headers.kind.c_str());
  amqp_basic_properties_t props;
  std::memset(&props, 0, sizeof(props));
  props._flags =
      AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG;
  props.content_type = amqp_cstring_bytes("application/octet-stream");
  props.delivery_mode = persistent ? 2 : 1;
  props.headers.num_entries = 4;
  props.headers.entries = entries;
  amqp_bytes_t bytes;
  bytes.len = body.size();
  bytes.bytes = const_cast<std::byte*>(body.data());  // rabbitmq-c only reads it
  const int rc =
      amqp_basic_publish(conn_, 1, amqp_cstring_bytes(exchange.c_str()),
                         amqp_cstring_bytes(key.c_str()), mandatory ? 1 : 0, 0, &props, bytes);
  if (rc != AMQP_STATUS_OK) return LibraryStatus(rc, "publish");
  return next_tag_++;
}

absl::StatusOr<std::optional<AmqpLink::Confirm>> AmqpLink::WaitConfirm(absl::Duration timeout) {
  amqp_maybe_release_buffers(conn_);
  for (;;) {
    amqp_frame_t frame;
    timeval tv = TimevalOf(timeout);
    const int rc = amqp_simple_wait_frame_noblock(conn_, &frame, &tv);
    if (rc == AMQP_STATUS_TIMEOUT) return std::nullopt;
    if (rc != AMQP_STATUS_OK) return LibraryStatus(rc, "waiting for confirms");
    if (frame.frame_type != AMQP_FRAME_METHOD) continue;
    switch (frame.payload.method.id) {
      case AMQP_BASIC_ACK_METHOD: {
        const auto* m = static_cast<const amqp_basic_ack_t*>(frame.payload.method.decoded);
        return Confirm{m->delivery_tag, m->multiple != 0, true};
      }
      case AMQP_BASIC_NACK_METHOD: {
        const auto* m = static_cast<const amqp_basic_nack_t*>(frame.payload.method.decoded);
        return Confirm{m->delivery_tag, m->multiple != 0, false};
      }
      case AMQP_BASIC_RETURN_METHOD: {
        amqp_message_t returned;  // the returned message's header and body follow: skip them
        const amqp_rpc_reply_t r = amqp_read_message(conn_, frame.channel, &returned, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) return RpcStatus(r, "basic.return");
        amqp_destroy_message(&returned);
        return Confirm{0, false, true, true};
      }
      case AMQP_CHANNEL_CLOSE_METHOD:
      case AMQP_CONNECTION_CLOSE_METHOD:
        return ClosedStatus(frame.payload.method, "publish");
      default:
        continue;
    }
  }
}

absl::Status AmqpLink::Consume(const std::string& queue, std::uint16_t prefetch) {
  amqp_basic_qos(conn_, 1, 0, prefetch, 0);
  absl::Status s = RpcStatus(amqp_get_rpc_reply(conn_), "basic.qos");
  if (!s.ok()) return s;
  amqp_basic_consume(conn_, 1, amqp_cstring_bytes(queue.c_str()), amqp_empty_bytes, 0,
                     /*no_ack=*/0, 0, amqp_empty_table);
  return RpcStatus(amqp_get_rpc_reply(conn_), absl::StrCat("consuming queue '", queue, "'"));
}

namespace {
std::optional<std::uint64_t> IntegerField(const amqp_field_value_t& v) {
  switch (v.kind) {
    case AMQP_FIELD_KIND_I8:
      return v.value.i8 < 0 ? std::nullopt : std::optional<std::uint64_t>(v.value.i8);
    case AMQP_FIELD_KIND_U8:
      return v.value.u8;
    case AMQP_FIELD_KIND_I16:
      return v.value.i16 < 0 ? std::nullopt : std::optional<std::uint64_t>(v.value.i16);
    case AMQP_FIELD_KIND_U16:
      return v.value.u16;
    case AMQP_FIELD_KIND_I32:
      return v.value.i32 < 0 ? std::nullopt : std::optional<std::uint64_t>(v.value.i32);
    case AMQP_FIELD_KIND_U32:
      return v.value.u32;
    case AMQP_FIELD_KIND_I64:
      return v.value.i64 < 0 ? std::nullopt : std::optional<std::uint64_t>(v.value.i64);
    case AMQP_FIELD_KIND_U64:
      return v.value.u64;
    default:
      return std::nullopt;
  }
}

FrameHeaders ParseHeaders(const amqp_basic_properties_t& props) {
  FrameHeaders h;
  if ((props._flags & AMQP_BASIC_HEADERS_FLAG) == 0) return h;
  for (int i = 0; i < props.headers.num_entries; ++i) {
    const amqp_table_entry_t& e = props.headers.entries[i];
    const std::string key = BytesToString(e.key);
    const bool text = e.value.kind == AMQP_FIELD_KIND_UTF8 || e.value.kind == AMQP_FIELD_KIND_BYTES;
    if (key == kHeaderSeq) {
      h.seq = IntegerField(e.value);
    } else if (text && key == kHeaderHost) {
      h.host = BytesToString(e.value.value.bytes);
    } else if (text && key == kHeaderChannel) {
      h.channel = BytesToString(e.value.value.bytes);
    } else if (text && key == kHeaderKind) {
      h.kind = BytesToString(e.value.value.bytes);
    }
  }
  return h;
}
}  // namespace

absl::StatusOr<std::optional<AmqpLink::Delivery>> AmqpLink::NextDelivery(absl::Duration timeout) {
  if (have_envelope_) amqp_destroy_envelope(&envelope_);
  have_envelope_ = false;
  amqp_maybe_release_buffers(conn_);
  timeval tv = TimevalOf(timeout);
  const amqp_rpc_reply_t reply = amqp_consume_message(conn_, &envelope_, &tv, 0);
  if (reply.reply_type == AMQP_RESPONSE_NORMAL) {
    have_envelope_ = true;
    Delivery d;
    d.tag = envelope_.delivery_tag;
    d.redelivered = envelope_.redelivered != 0;
    d.body = std::span<const std::byte>(static_cast<const std::byte*>(envelope_.message.body.bytes),
                                        envelope_.message.body.len);
    d.headers = ParseHeaders(envelope_.message.properties);
    return d;
  }
  if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
      reply.library_error == AMQP_STATUS_TIMEOUT) {
    return std::nullopt;
  }
  if (reply.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
      reply.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
    // Something other than a delivery: a close (broker stopping, queue deleted) or noise.
    amqp_frame_t frame;
    const int rc = amqp_simple_wait_frame(conn_, &frame);
    if (rc != AMQP_STATUS_OK) return LibraryStatus(rc, "consume");
    if (frame.frame_type == AMQP_FRAME_METHOD) {
      switch (frame.payload.method.id) {
        case AMQP_CHANNEL_CLOSE_METHOD:
        case AMQP_CONNECTION_CLOSE_METHOD:
          return ClosedStatus(frame.payload.method, "consume");
        case AMQP_BASIC_CANCEL_METHOD:
          return absl::NotFoundError(absl::StrFormat(
              "AMQP broker %s: the broker cancelled the consumer (queue deleted?)", where_));
        default:
          break;
      }
    }
    return std::nullopt;
  }
  return RpcStatus(reply, "consume");
}

absl::Status AmqpLink::Ack(std::uint64_t tag) {
  const int rc = amqp_basic_ack(conn_, 1, tag, /*multiple=*/1);
  if (rc != AMQP_STATUS_OK) return LibraryStatus(rc, "ack");
  return absl::OkStatus();
}

}  // namespace shmring::bridge
