// bridge_unit_test — the parts of shm-bridge that need no broker: the duplicate rule of `in`
// (tools/bridge/bridge.h) and URL parsing/redaction (tools/bridge/amqp_link.h). The behaviour
// against a real broker is tests/bridge_test.py.
#include <catch2/catch.hpp>
#include <string>

#include "bridge/amqp_link.h"
#include "bridge/bridge.h"

namespace shmring::bridge {
namespace {

FrameHeaders H(std::string host, std::string channel, std::string kind, std::uint64_t seq) {
  return {std::move(host), std::move(channel), std::move(kind), seq};
}

TEST_CASE("duplicate rule, spsc origin: seq <= last committed from that origin") {
  DuplicateFilter f;
  CHECK_FALSE(f.IsDuplicate(H("a", "/q", "spsc", 0)));
  for (std::uint64_t s = 0; s < 10; ++s) f.Committed(H("a", "/q", "spsc", s));
  CHECK(f.IsDuplicate(H("a", "/q", "spsc", 9)));
  CHECK(f.IsDuplicate(H("a", "/q", "spsc", 0)));
  CHECK_FALSE(f.IsDuplicate(H("a", "/q", "spsc", 10)));
  // Another host, another channel: separate origins.
  CHECK_FALSE(f.IsDuplicate(H("b", "/q", "spsc", 3)));
  CHECK_FALSE(f.IsDuplicate(H("a", "/r", "spsc", 3)));
  // A gap (a frame abandoned on the origin) is not filled later by an spsc origin.
  f.Committed(H("a", "/q", "spsc", 20));
  CHECK(f.IsDuplicate(H("a", "/q", "spsc", 15)));
}

TEST_CASE("duplicate rule, mpmc origin: exactly the seqs committed in this run") {
  DuplicateFilter f;
  f.Committed(H("a", "/jobs", "mpmc", 5));
  f.Committed(H("a", "/jobs", "mpmc", 7));
  CHECK(f.IsDuplicate(H("a", "/jobs", "mpmc", 5)));
  CHECK(f.IsDuplicate(H("a", "/jobs", "mpmc", 7)));
  // A redelivered frame arriving after later ones is not a duplicate.
  CHECK_FALSE(f.IsDuplicate(H("a", "/jobs", "mpmc", 6)));
  // The memory is bounded: the oldest seqs are forgotten (let through: at-least-once).
  for (std::uint64_t s = 100; s < 100 + DuplicateFilter::kRemembered; ++s) {
    f.Committed(H("a", "/jobs", "mpmc", s));
  }
  CHECK_FALSE(f.IsDuplicate(H("a", "/jobs", "mpmc", 5)));
  CHECK(f.IsDuplicate(H("a", "/jobs", "mpmc", 100 + DuplicateFilter::kRemembered - 1)));
}

TEST_CASE("duplicate rule: a message without x-shmring-seq is never a duplicate") {
  DuplicateFilter f;
  FrameHeaders none;
  f.Committed(none);
  CHECK_FALSE(f.IsDuplicate(none));
}

TEST_CASE("AMQP URLs: parsed, defaults, percent-decoding, redaction without the password") {
  auto u = ParseAmqpUrl("amqp://alice:s%40cret@broker.example:5673/prod");
  REQUIRE(u.ok());
  CHECK(u->host == "broker.example");
  CHECK(u->port == 5673);
  CHECK(u->user == "alice");
  CHECK(u->password == "s@cret");
  CHECK(u->vhost == "prod");
  CHECK_FALSE(u->tls);
  CHECK(u->Redacted().find("s@cret") == std::string::npos);
  CHECK(u->Redacted().find("s%40cret") == std::string::npos);
  auto d = ParseAmqpUrl("amqp://host");
  REQUIRE(d.ok());
  CHECK(d->port == 5672);
  CHECK(d->vhost == "/");
  CHECK(d->user == "guest");
  auto root = ParseAmqpUrl("amqp://h/%2f");
  REQUIRE(root.ok());
  CHECK(root->vhost == "/");
  auto tls = ParseAmqpUrl("amqps://h");
  REQUIRE(tls.ok());
  CHECK(tls->tls);
  CHECK(tls->port == 5671);
  // An empty host is the default one (AMQP URI spec; rabbitmq-c's amqp_parse_url).
  auto empty = ParseAmqpUrl("amqp://");
  REQUIRE(empty.ok());
  CHECK(empty->host == "localhost");
  for (const char* bad :
       {"", "http://h", "amqp://h:notaport", "amqp://h:99999", "amqp://u:secret-pw@h:bad"}) {
    INFO(bad);
    auto r = ParseAmqpUrl(bad);
    CHECK_FALSE(r.ok());
    if (!r.ok()) CHECK(std::string(r.status().message()).find("secret-pw") == std::string::npos);
  }
}

}  // namespace
}  // namespace shmring::bridge
