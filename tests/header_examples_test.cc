// The usage examples of the public headers (the blocks between "clang-format off" and
// "clang-format on" in shmring.h, spsc.h, mpmc.h and typed.h), compiled and run here; a test also
// checks that each header still shows these lines, in this order (the headers' channel names,
// e.g. "/ticks", stand for the unique `channel` the tests pass in). Also: the Result helpers
// (ToStatus, operator<<, AbslStringify) and the absl::Duration overloads.
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "shmring/shmring.h"
#include "test_util.h"

namespace {

using shmring::testing::ScopedName;

std::vector<std::pair<std::uint64_t, std::string>> handled;
void handle(std::uint64_t sequence, std::span<const std::byte> data) {
  handled.emplace_back(sequence,
                       std::string(reinterpret_cast<const char*>(data.data()), data.size()));
}

// BEGIN shmring.h EXAMPLE
absl::Status ShmringExample(const std::string& channel) {
  shmring::ChannelOptions options;  // SPSC, 1 MiB ring by default
  absl::Status created = shmring::CreateChannel(channel, options);
  absl::StatusOr<shmring::SpscProducer> producer = shmring::SpscProducer::Attach(channel);
  if (!producer.ok()) return producer.status();
  const char tick[] = "EURUSD 1.0842";
  shmring::Result r = producer->send(std::as_bytes(std::span(tick)), absl::Seconds(1));
  producer->close();  // end of stream
  absl::StatusOr<shmring::SpscConsumer> consumer = shmring::SpscConsumer::Attach(channel);
  for (;;) {
    shmring::Frame frame = consumer->read(absl::InfiniteFuture());
    if (frame.result == shmring::Result::kClosed) break;  // drained and closed
    handle(frame.sequence, frame.data);                   // bytes in place, in the ring
    consumer->release();
  }
  absl::Status removed = shmring::RemoveChannel(channel);
  if (!created.ok()) return created;
  if (!removed.ok()) return removed;
  return shmring::ToStatus(r);
}
// END shmring.h EXAMPLE

std::vector<std::byte> used;
void use(std::span<const std::byte> data, std::uint64_t) { used.assign(data.begin(), data.end()); }

// BEGIN spsc.h EXAMPLE
void SpscExample(const std::string& channel, const std::byte* bytes) {
  auto producer = shmring::SpscProducer::Attach(channel);
  shmring::Claim c = producer->claim(64, absl::InfiniteFuture());
  if (c.ok()) {
    std::memcpy(c.data.data(), bytes, 64);
    producer->commit();
  }
  auto consumer = shmring::SpscConsumer::Attach(channel);
  shmring::Frame f = consumer->read(absl::Now() + absl::Seconds(1));
  if (f.ok()) {
    use(f.data, f.sequence);  // the bytes in the ring, valid until release()
    consumer->release();
  }
}
// END spsc.h EXAMPLE

std::vector<std::byte> ran;
void run(std::span<const std::byte> data) { ran.assign(data.begin(), data.end()); }

// BEGIN mpmc.h EXAMPLE
shmring::Result MpmcExample(const std::string& channel, std::span<const std::byte> job_bytes) {
  auto producer = shmring::MpmcProducer::Attach(channel);
  shmring::Result r = producer->send(job_bytes, absl::Now() + absl::Seconds(1));
  auto consumer = shmring::MpmcConsumer::Attach(channel);
  shmring::Frame f = consumer->read(absl::Now() + absl::Seconds(1));
  if (f.ok()) {
    run(f.data);
    consumer->release();
  }
  return r;
}
// END mpmc.h EXAMPLE

struct Quote {
  std::size_t size;
};
Quote parse(std::span<const std::byte> data) { return Quote{data.size()}; }
std::vector<std::pair<std::uint64_t, std::size_t>> quotes_used;
void use(const Quote& q, std::uint64_t sequence) { quotes_used.emplace_back(sequence, q.size); }
std::vector<std::pair<std::uint64_t, std::uint64_t>> gaps;
void report_gap(std::uint64_t first, std::uint64_t missed) { gaps.emplace_back(first, missed); }

// BEGIN broadcast.h EXAMPLE
absl::Status BroadcastExample(const std::string& channel, const std::byte* bytes) {
  // Once: create the channel (lossless; a stuck subscriber is evicted after a second).
  shmring::ChannelOptions options;
  options.kind = shmring::Kind::kBroadcast;
  absl::Status created = shmring::CreateChannel(channel, options);
  if (!created.ok()) return created;

  // Each subscriber process: attach, then read every frame published from now on.
  auto subscriber = shmring::BroadcastSubscriber::Attach(channel);

  // The publisher process: write a frame in place.
  auto publisher = shmring::BroadcastPublisher::Attach(channel);
  if (!subscriber.ok() || !publisher.ok()) return absl::InternalError("attach");
  shmring::Claim c = publisher->claim(64, absl::Seconds(1));
  if (c.ok()) {
    std::memcpy(c.data.data(), bytes, 64);
    publisher->commit();
  }

  // Back in a subscriber: read it in place, then check it was not overwritten meanwhile.
  shmring::Frame f = subscriber->read(absl::Seconds(1));
  if (f.ok()) {
    Quote q = parse(f.data);  // the bytes in the ring
    if (subscriber->release() == shmring::Result::kOk) use(q, f.sequence);
  } else if (f.result == shmring::Result::kLapped) {
    report_gap(f.sequence, subscriber->last_missed());  // exactly the frames skipped
  }
  return shmring::ToStatus(f.result);
}
// END broadcast.h EXAMPLE

// BEGIN typed.h EXAMPLE
// clang-format off
struct Job { std::uint64_t id; double weight; };
// clang-format on
std::vector<Job> jobs_run;
void run(const Job& job) { jobs_run.push_back(job); }
template <typename Producer, typename Consumer>
shmring::Result TypedExample(Producer* producer, Consumer* consumer) {
  shmring::Result r = shmring::SendValue(*producer, Job{7, 0.5}, absl::Seconds(1));
  Job job;
  shmring::Received got = shmring::ReceiveValue(*consumer, &job, absl::Seconds(1));
  if (got.ok()) run(job);
  return r;
}
// END typed.h EXAMPLE

TEST_CASE("shmring.h example: produce, close, consume, remove") {
  ScopedName ticks("ticks");  // the example creates and removes it
  handled.clear();
  REQUIRE(ShmringExample(ticks.str()).ok());
  REQUIRE(handled.size() == 1);
  CHECK(handled[0].first == 0);
  CHECK(handled[0].second == std::string("EURUSD 1.0842", sizeof("EURUSD 1.0842")));
}

TEST_CASE("spsc.h example: claim/commit, read/release in place") {
  ScopedName quotes("quotes");
  REQUIRE(shmring::CreateChannel(quotes, shmring::ChannelOptions{}).ok());
  std::byte bytes[64];
  for (int i = 0; i < 64; ++i) bytes[i] = static_cast<std::byte>(i);
  used.clear();
  SpscExample(quotes.str(), bytes);
  REQUIRE(used.size() == 64);
  CHECK(std::memcmp(used.data(), bytes, 64) == 0);
}

TEST_CASE("mpmc.h example: one job to one worker") {
  ScopedName jobs("jobs");
  shmring::ChannelOptions options;
  options.kind = shmring::Kind::kMpmc;
  options.capacity = 8;
  REQUIRE(shmring::CreateChannel(jobs, options).ok());
  const char job[] = "job 1";
  ran.clear();
  CHECK(MpmcExample(jobs.str(), std::as_bytes(std::span(job))) == shmring::Result::kOk);
  CHECK(ran.size() == sizeof(job));
}

TEST_CASE("broadcast.h example: publish one frame, a subscriber reads and validates it") {
  ScopedName ticks("ticks");
  std::byte bytes[64];
  for (int i = 0; i < 64; ++i) bytes[i] = static_cast<std::byte>(i);
  quotes_used.clear();
  gaps.clear();
  REQUIRE(BroadcastExample(ticks.str(), bytes).ok());
  REQUIRE(quotes_used.size() == 1);
  CHECK(quotes_used[0] == std::make_pair(std::uint64_t{0}, std::size_t{64}));
  CHECK(gaps.empty());
}

TEST_CASE("typed.h example and size checks, on both kinds") {
  ScopedName spsc("typed-spsc");
  REQUIRE(shmring::CreateChannel(spsc, shmring::ChannelOptions{}).ok());
  auto producer = shmring::SpscProducer::Attach(spsc);
  auto consumer = shmring::SpscConsumer::Attach(spsc);
  REQUIRE((producer.ok() && consumer.ok()));
  jobs_run.clear();
  CHECK(TypedExample(&*producer, &*consumer) == shmring::Result::kOk);
  REQUIRE(jobs_run.size() == 1);
  CHECK(jobs_run[0].id == 7);
  CHECK(jobs_run[0].weight == 0.5);
  // A frame of another size is left unread, with its size.
  const std::uint32_t small = 3;
  REQUIRE(shmring::TrySendValue(*producer, small) == shmring::Result::kOk);
  Job job{};
  shmring::Received got = shmring::TryReceiveValue(*consumer, &job);
  CHECK(got.result == shmring::Result::kTooLarge);
  CHECK(got.size == sizeof(small));
  std::uint32_t value = 0;
  got = shmring::ReceiveValue(*consumer, &value, absl::InfiniteFuture());
  CHECK(got.ok());
  CHECK(value == 3);
  CHECK(shmring::TryReceiveValue(*consumer, &value).result == shmring::Result::kWouldBlock);

  ScopedName mpmc("typed-mpmc");
  shmring::ChannelOptions options;
  options.kind = shmring::Kind::kMpmc;
  options.capacity = 4;
  REQUIRE(shmring::CreateChannel(mpmc, options).ok());
  auto mp = shmring::MpmcProducer::Attach(mpmc);
  auto mc = shmring::MpmcConsumer::Attach(mpmc);
  REQUIRE((mp.ok() && mc.ok()));
  jobs_run.clear();
  CHECK(TypedExample(&*mp, &*mc) == shmring::Result::kOk);
  REQUIRE(jobs_run.size() == 1);
  CHECK(jobs_run[0].id == 7);
}

TEST_CASE("Result: ToStatus, streaming, AbslStringify, Duration overloads") {
  CHECK(shmring::ToStatus(shmring::Result::kOk).ok());
  CHECK(shmring::ToStatus(shmring::Result::kClosed).code() == absl::StatusCode::kOutOfRange);
  CHECK(shmring::ToStatus(shmring::Result::kTimeout).code() == absl::StatusCode::kDeadlineExceeded);
  CHECK(shmring::ToStatus(shmring::Result::kCorrupted).code() == absl::StatusCode::kDataLoss);
  CHECK(std::string(shmring::ToStatus(shmring::Result::kWouldBlock).message()) ==
        "shmring: WouldBlock");
  std::ostringstream os;
  os << shmring::Result::kTooLarge;
  CHECK(os.str() == "TooLarge");
#if __has_include("absl/strings/has_absl_stringify.h")
  // Abseil with AbslStringify support (20230125 and later; Debian 12's predates it).
  CHECK(absl::StrCat(shmring::Result::kAbandoned) == "Abandoned");
  CHECK(absl::StrFormat("%v", shmring::Result::kTimeout) == "Timeout");
#endif

  ScopedName name("duration");
  shmring::ChannelOptions options;
  options.capacity = 4096;
  REQUIRE(shmring::CreateChannel(name, options).ok());
  auto consumer = shmring::SpscConsumer::Attach(name);
  REQUIRE(consumer.ok());
  CHECK(consumer->read(absl::Milliseconds(1)).result == shmring::Result::kTimeout);
  std::byte buffer[8];
  CHECK(consumer->receive(buffer, absl::ZeroDuration()).result == shmring::Result::kTimeout);
  CHECK(shmring::DeadlineAfter(absl::InfiniteDuration()) == absl::InfiniteFuture());
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && s[i] == ' ') ++i;
  return s.substr(i);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    // Spacing is clang-format's business (it aligns trailing comments differently in a header
    // comment and in code): compare with runs of spaces collapsed.
    std::string collapsed;
    for (char c : Trim(line)) {
      if (c != ' ' || collapsed.empty() || collapsed.back() != ' ') collapsed += c;
    }
    if (!collapsed.empty()) out.push_back(collapsed);
  }
  return out;
}

// The example lines of a header: the first block between "// clang-format off" and
// "// clang-format on", without the comment markers.
std::vector<std::string> HeaderExample(const std::string& header) {
  const std::string begin = "// clang-format off\n", end = "// clang-format on\n";
  const auto b = header.find(begin);
  const auto e = header.find(end, b);
  if (b == std::string::npos || e == std::string::npos) return {};
  std::string block;
  std::istringstream in(header.substr(b + begin.size(), e - b - begin.size()));
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("//", 0) == 0) line = line.substr(2);
    // The examples name their channel ("/ticks"); the compiled code takes a unique name.
    for (const char* literal : {"\"/ticks\"", "\"/quotes\"", "\"/jobs\""}) {
      for (auto at = line.find(literal); at != std::string::npos; at = line.find(literal)) {
        line.replace(at, std::strlen(literal), "channel");
      }
    }
    if (line.find("#include") != std::string::npos) continue;    // the test includes it itself
    if (line.find("// Process") != std::string::npos) continue;  // labels of the two halves
    if (line.find("// Master process") != std::string::npos) continue;
    if (line.find("// Each worker") != std::string::npos) continue;
    block += line + "\n";
  }
  return Lines(block);
}

TEST_CASE("the headers show these examples") {
  const char* dir = std::getenv("SHMRING_SOURCE_DIR");
  if (dir == nullptr) {
    WARN("SHMRING_SOURCE_DIR not set");
    return;
  }
  const std::string self = Slurp(std::string(dir) + "/tests/header_examples_test.cc");
  for (const char* header : {"shmring.h", "spsc.h", "mpmc.h", "typed.h", "broadcast.h"}) {
    INFO(header);
    const std::string begin = absl::StrCat("// BEGIN ", header, " EXAMPLE\n");
    const std::string end = absl::StrCat("// END ", header, " EXAMPLE\n");
    const auto b = self.find(begin);
    const auto e = self.find(end);
    REQUIRE((b != std::string::npos && e != std::string::npos));
    const std::vector<std::string> code = Lines(self.substr(b, e - b));
    const std::vector<std::string> example =
        HeaderExample(Slurp(absl::StrCat(dir, "/include/shmring/", header)));
    REQUIRE(!example.empty());
    // Every example line appears in the compiled code, in order.
    std::size_t at = 0;
    for (const std::string& line : example) {
      INFO(line);
      while (at < code.size() && code[at] != line) ++at;
      CHECK(at < code.size());
    }
  }
}

}  // namespace
