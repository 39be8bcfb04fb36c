// amqp_plain_publisher — the baseline of bench/bridge_bench.py: a plain rabbitmq-c publisher with
// publisher confirms and a window of unconfirmed messages, nothing else (no ring, no copies).
//
//   amqp_plain_publisher HOST PORT USER PASSWORD EXCHANGE COUNT SIZE WINDOW PERSISTENT(0|1)
//
// Publishes COUNT messages of SIZE bytes with the same headers shm-bridge sends, keeps at most
// WINDOW unconfirmed, waits for the last confirm, and prints one JSON line: count, seconds (from
// before the connection to the last confirm), frames_per_s.
#include <amqp.h>
#include <amqp_tcp_socket.h>
#include <sys/time.h>
#include <time.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

double Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

[[noreturn]] void Die(const char* what) {
  std::fprintf(stderr, "amqp_plain_publisher: %s\n", what);
  std::exit(2);
}

void Check(amqp_rpc_reply_t r, const char* what) {
  if (r.reply_type != AMQP_RESPONSE_NORMAL) Die(what);
}

// Publish sends message `seq` with the headers shm-bridge sends.
void Publish(amqp_connection_state_t conn, const std::string& exchange, std::vector<char>& body,
             std::uint64_t seq, bool persistent) {
  static char host_name[] = "bench-host";
  static char channel_name[] = "/bench";
  amqp_table_entry_t entries[4];
  entries[0].key = amqp_cstring_bytes("x-shmring-host");
  entries[0].value.kind = AMQP_FIELD_KIND_UTF8;
  entries[0].value.value.bytes = amqp_cstring_bytes(host_name);
  entries[1].key = amqp_cstring_bytes("x-shmring-channel");
  entries[1].value.kind = AMQP_FIELD_KIND_UTF8;
  entries[1].value.value.bytes = amqp_cstring_bytes(channel_name);
  entries[2].key = amqp_cstring_bytes("x-shmring-seq");
  entries[2].value.kind = AMQP_FIELD_KIND_I64;
  entries[2].value.value.i64 = static_cast<std::int64_t>(seq);
  entries[3].key = amqp_cstring_bytes("x-shmring-kind");
  entries[3].value.kind = AMQP_FIELD_KIND_UTF8;
  entries[3].value.value.bytes = amqp_cstring_bytes("spsc");
  amqp_basic_properties_t props;
  std::memset(&props, 0, sizeof(props));
  props._flags =
      AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG;
  props.content_type = amqp_cstring_bytes("application/octet-stream");
  props.delivery_mode = persistent ? 2 : 1;
  props.headers.num_entries = 4;
  props.headers.entries = entries;
  amqp_bytes_t b{body.size(), body.data()};
  if (amqp_basic_publish(conn, 1, amqp_cstring_bytes(exchange.c_str()), amqp_empty_bytes, 1, 0,
                         &props, b) != AMQP_STATUS_OK) {
    Die("publish");
  }
}

// AwaitConfirm reads one frame and advances `confirmed` by a broker ack (a nack or a close is
// fatal; other frames are ignored).
void AwaitConfirm(amqp_connection_state_t conn, std::uint64_t* confirmed) {
  amqp_frame_t frame;
  if (amqp_simple_wait_frame(conn, &frame) != AMQP_STATUS_OK) Die("wait");
  if (frame.frame_type != AMQP_FRAME_METHOD) return;
  if (frame.payload.method.id == AMQP_BASIC_ACK_METHOD) {
    const auto* a = static_cast<amqp_basic_ack_t*>(frame.payload.method.decoded);
    // Tags are 1-based; with `multiple` everything up to the tag is confirmed.
    if (a->multiple) {
      *confirmed = a->delivery_tag;
    } else if (a->delivery_tag == *confirmed + 1) {
      *confirmed = a->delivery_tag;
    }
  } else if (frame.payload.method.id != AMQP_BASIC_RETURN_METHOD) {
    Die("unexpected method (nack or close)");
  }
  amqp_maybe_release_buffers(conn);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 10) Die("usage: HOST PORT USER PASSWORD EXCHANGE COUNT SIZE WINDOW PERSISTENT");
  const char* host = argv[1];
  const int port = std::atoi(argv[2]);
  const std::string exchange = argv[5];
  const std::uint64_t count = std::strtoull(argv[6], nullptr, 10);
  const std::size_t size = std::strtoull(argv[7], nullptr, 10);
  const std::uint64_t window = std::strtoull(argv[8], nullptr, 10);
  const bool persistent = std::atoi(argv[9]) != 0;

  const double start = Now();
  amqp_connection_state_t conn = amqp_new_connection();
  amqp_socket_t* socket = amqp_tcp_socket_new(conn);
  if (amqp_socket_open(socket, host, port) != AMQP_STATUS_OK) Die("connect");
  Check(amqp_login(conn, "/", 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, argv[3], argv[4]), "login");
  amqp_channel_open(conn, 1);
  Check(amqp_get_rpc_reply(conn), "channel.open");
  amqp_confirm_select(conn, 1);
  Check(amqp_get_rpc_reply(conn), "confirm.select");

  std::vector<char> body(size, 'x');
  std::uint64_t published = 0, confirmed = 0;
  while (confirmed < count) {
    while (published < count && published - confirmed < window) {
      Publish(conn, exchange, body, published++, persistent);
    }
    AwaitConfirm(conn, &confirmed);
  }
  const double seconds = Now() - start;
  amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
  amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
  amqp_destroy_connection(conn);
  std::printf("{\"count\": %" PRIu64 ", \"seconds\": %.6f, \"frames_per_s\": %.1f}\n", count,
              seconds, static_cast<double>(count) / seconds);
  return 0;
}
