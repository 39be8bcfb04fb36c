// The usage example of README.md, compiled and run here; the test also checks that the README
// still shows exactly this code (between the BEGIN/END markers).
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "test_util.h"

// BEGIN README EXAMPLE
#include <cstdio>
#include <cstring>

#include "shmring/shmring.h"

// In the producing process:
absl::Status Produce(const std::string& channel) {
  absl::StatusOr<shmring::SpscProducer> producer = shmring::SpscProducer::Attach(channel);
  if (!producer.ok()) return producer.status();
  for (int i = 0; i < 3; ++i) {
    // Zero-copy: write straight into the ring, then publish.
    shmring::Claim claim = producer->claim(sizeof(i), absl::Now() + absl::Seconds(1));
    if (!claim.ok()) return absl::UnavailableError(std::string(shmring::ToString(claim.result)));
    std::memcpy(claim.data.data(), &i, sizeof(i));
    producer->commit();
  }
  producer->close();  // end of stream: the consumer drains, then reads kClosed
  return absl::OkStatus();
}

// In the consuming process:
absl::StatusOr<int> Consume(const std::string& channel) {
  absl::StatusOr<shmring::SpscConsumer> consumer = shmring::SpscConsumer::Attach(channel);
  if (!consumer.ok()) return consumer.status();
  int sum = 0;
  for (;;) {
    shmring::Frame frame = consumer->read(absl::Now() + absl::Seconds(5));
    if (frame.result == shmring::Result::kClosed) return sum;
    if (!frame.ok()) return absl::DeadlineExceededError("no frame within 5 s");
    int value;
    std::memcpy(&value, frame.data.data(), sizeof(value));  // read in place
    std::printf("frame #%llu: %d\n", static_cast<unsigned long long>(frame.sequence), value);
    sum += value;
    consumer->release();  // hand the room back to the producer
  }
}
// END README EXAMPLE

namespace {

TEST_CASE("the README example runs between two processes") {
  shmring::testing::ScopedName name("readme");
  REQUIRE(shmring::CreateChannel(name, shmring::ChannelOptions{}).ok());
  shmring::testing::Child producer([&] { return Produce(name.str()).ok() ? 0 : 1; });
  absl::StatusOr<int> sum = Consume(name.str());
  REQUIRE(sum.ok());
  CHECK(*sum == 0 + 1 + 2);
  CHECK(producer.Wait() == 0);
}

std::string Between(const std::string& text, const std::string& begin, const std::string& end) {
  const auto b = text.find(begin);
  const auto e = text.find(end);
  if (b == std::string::npos || e == std::string::npos || e < b) return {};
  return text.substr(b + begin.size(), e - b - begin.size());
}

TEST_CASE("README.md shows this example verbatim") {
  const char* dir = std::getenv("SHMRING_SOURCE_DIR");
  if (dir == nullptr) {
    WARN("SHMRING_SOURCE_DIR not set");
    return;
  }
  auto slurp = [](const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  const std::string self = slurp(std::string(dir) + "/tests/readme_example_test.cc");
  const std::string readme = slurp(std::string(dir) + "/README.md");
  const std::string code = Between(self, "// BEGIN README EXAMPLE\n", "// END README EXAMPLE\n");
  REQUIRE(!code.empty());
  CHECK(readme.find(code) != std::string::npos);
}

}  // namespace
