// make_seeds — writes the seed corpora of the segment, spsc_consumer and mpmc_consumer fuzz
// targets from real channels of the current ABI (run it again after every ABI change):
//   build-fuzz/tests/fuzz/make_seeds tests/fuzz/corpus
// Each seed is a state the library itself produced (frames committed, read, wrapped, closed, a
// frame held by a consumer that died), laid out as the target's header comment describes, so the
// fuzzer starts from well-formed images and mutates them, instead of from bytes the validation
// rejects on the first check.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "segment.h"
#include "shmring/shmring.h"

namespace {

using shmring::internal::ControlBlock;
using shmring::internal::EndpointEntry;
using shmring::internal::Segment;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "make_seeds: %s\n", what.c_str());
  std::exit(1);
}

void Check(bool ok, const std::string& what) {
  if (!ok) Die(what);
}

// Channel: a fresh channel under a unique name, removed when the object goes away.
class Channel {
 public:
  Channel(const char* tag, const shmring::ChannelOptions& options)
      : name_(std::string("/shmring-fuzz-seeds-") + tag + "-" + std::to_string(getpid())) {
    (void)shmring::RemoveChannel(name_);
    Check(shmring::CreateChannel(name_, options).ok(), "cannot create " + name_);
  }
  ~Channel() { (void)shmring::RemoveChannel(name_); }
  const std::string& name() const { return name_; }
  std::unique_ptr<Segment> Map() const {
    auto seg = Segment::Open(name_, {});
    Check(seg.ok(), "cannot map " + name_);
    return std::move(*seg);
  }

 private:
  std::string name_;
};

class Seed {
 public:
  void Put(const void* p, std::size_t n) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    bytes_.insert(bytes_.end(), b, b + n);
  }
  void Put64(std::uint64_t v) { Put(&v, sizeof(v)); }
  void Write(const std::string& dir, const std::string& name) const {
    const std::string path = dir + "/" + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    Check(f != nullptr, "cannot write " + path);
    Check(std::fwrite(bytes_.data(), 1, bytes_.size(), f) == bytes_.size(), "short write " + path);
    std::fclose(f);
  }

 private:
  std::vector<std::uint8_t> bytes_;
};

std::vector<std::byte> Payload(std::size_t n, int salt) {
  std::vector<std::byte> p(n);
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<std::byte>((i * 31 + salt) & 0xff);
  return p;
}

const shmring::EndpointOptions kSpin{.wait = shmring::WaitMode::kSpin};

// ---- segment: 8 bytes object size, then the header ----
void SegmentSeeds(const std::string& dir) {
  const auto one = [&](const char* name, const shmring::ChannelOptions& options, bool truncate) {
    Channel ch(name, options);
    auto seg = ch.Map();
    Seed s;
    const std::uint64_t size = seg->geometry().total_size;
    s.Put64(truncate ? size / 2 : size);
    s.Put(seg->header(), sizeof(shmring::internal::SegmentHeader));
    s.Write(dir + "/segment", name);
  };
  one("spsc", {.kind = shmring::Kind::kSpsc, .capacity = 4096}, false);
  one("spsc-truncated", {.kind = shmring::Kind::kSpsc, .capacity = 4096}, true);
  one("mpmc", {.kind = shmring::Kind::kMpmc, .capacity = 8, .max_frame = 64, .max_endpoints = 4},
      false);
  one("broadcast-block", {.kind = shmring::Kind::kBroadcast, .capacity = 4096, .max_endpoints = 4},
      false);
  one("broadcast-overwrite",
      {.kind = shmring::Kind::kBroadcast,
       .capacity = 4096,
       .max_endpoints = 4,
       .overflow = shmring::OverflowPolicy::kOverwrite},
      false);
}

// ---- spsc_consumer: read_position, write_position, the ring (4 KiB); odd length closes ----
void SpscSeed(const std::string& dir, const char* name, int frames, int read, bool close) {
  Channel ch(name, {.kind = shmring::Kind::kSpsc, .capacity = 4096});
  auto producer = shmring::SpscProducer::Attach(ch.name(), kSpin);
  auto consumer = shmring::SpscConsumer::Attach(ch.name(), kSpin);
  Check(producer.ok() && consumer.ok(), "spsc attach");
  std::vector<std::byte> buf(4096);
  for (int i = 0; i < frames; ++i) {
    // Read as we go, so long streams wrap around the ring (lap bit, padding).
    while (producer->try_send(Payload(16 + (i * 37) % 200, i)) != shmring::Result::kOk) {
      Check(consumer->try_receive(buf).ok(), "spsc drain");
      --read;
    }
  }
  for (int i = 0; i < read; ++i) Check(consumer->try_receive(buf).ok(), "spsc read");
  if (close) producer->close();
  auto seg = ch.Map();
  const ControlBlock* c = seg->control();
  Seed s;
  s.Put64(c->read_position.load());
  s.Put64(c->write_position.load());
  s.Put(seg->data(), 4096);
  if (close) s.Put("", 1);  // odd length: the target closes the stream
  s.Write(dir + "/spsc_consumer", name);
}

// ---- mpmc_consumer: read/write tickets, 4 bytes of flags, the endpoint table, the slots ----
void MpmcSeed(const std::string& dir, const char* name, int frames, int read, bool close,
              bool dead_holder) {
  Channel ch(name,
             {.kind = shmring::Kind::kMpmc, .capacity = 8, .max_frame = 64, .max_endpoints = 4});
  {
    auto producer = shmring::MpmcProducer::Attach(ch.name(), kSpin);
    auto consumer = shmring::MpmcConsumer::Attach(ch.name(), kSpin);
    Check(producer.ok() && consumer.ok(), "mpmc attach");
    std::vector<std::byte> buf(64);
    for (int i = 0; i < frames; ++i) {
      while (producer->try_send(Payload(8 + (i * 13) % 56, i)) != shmring::Result::kOk) {
        Check(consumer->try_receive(buf).ok(), "mpmc drain");
        --read;
      }
    }
    for (int i = 0; i < read; ++i) Check(consumer->try_receive(buf).ok(), "mpmc read");
    if (dead_holder) {
      // A consumer that reads a frame and dies holding it.
      const pid_t pid = fork();
      Check(pid >= 0, "fork");
      if (pid == 0) {
        auto c = shmring::MpmcConsumer::Attach(ch.name(), kSpin);
        _exit(c.ok() && c->try_read().ok() ? 0 : 1);
      }
      int status = 0;
      Check(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "mpmc dead holder");
    }
    if (close) producer->close();
  }
  auto seg = ch.Map();
  const ControlBlock* c = seg->control();
  const std::uint32_t flags = c->closed.load() | (c->finishing.load() << 2);
  Seed s;
  s.Put64(c->read_position.load());
  s.Put64(c->write_position.load());
  s.Put(&flags, sizeof(flags));
  s.Put(seg->endpoint(0), std::size_t{seg->geometry().max_endpoints} * sizeof(EndpointEntry));
  s.Put(seg->data(), seg->geometry().data_size);
  s.Write(dir + "/mpmc_consumer", name);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) Die("usage: make_seeds CORPUS_DIR (e.g. tests/fuzz/corpus)");
  const std::string dir = argv[1];
  SegmentSeeds(dir);
  SpscSeed(dir, "empty", 0, 0, false);
  SpscSeed(dir, "frames", 12, 3, false);
  SpscSeed(dir, "frames-closed", 12, 0, true);
  SpscSeed(dir, "wrapped", 70, 60, false);
  SpscSeed(dir, "wrapped-closed", 70, 66, true);
  MpmcSeed(dir, "empty", 0, 0, false, false);
  MpmcSeed(dir, "frames", 6, 2, false, false);
  MpmcSeed(dir, "lapped", 21, 15, false, false);
  MpmcSeed(dir, "closed", 5, 1, true, false);
  MpmcSeed(dir, "dead-holder", 5, 1, false, true);
  std::printf("make_seeds: wrote the seeds under %s\n", dir.c_str());
  return 0;
}
