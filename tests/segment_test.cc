// Segment create/open/remove and every bad input an opener can meet, each with its status code.
#include "segment.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "shmring/mpmc.h"
#include "shmring/spsc.h"
#include "stale.h"
#include "test_util.h"

namespace shmring {
namespace {

using absl::StatusCode;
using testing::ScopedName;

std::string Message(const absl::Status& s) { return std::string(s.message()); }

// Writes a raw shm object `name` of `size` bytes filled with `fill`.
void MakeRawObject(const std::string& name, std::size_t size, unsigned char fill) {
  int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  REQUIRE(fd >= 0);
  REQUIRE(ftruncate(fd, static_cast<off_t>(size)) == 0);
  std::vector<unsigned char> bytes(size, fill);
  if (size > 0) REQUIRE(pwrite(fd, bytes.data(), size, 0) == static_cast<ssize_t>(size));
  close(fd);
}

// Maps an existing object read-write for a test to corrupt it.
struct RawMapping {
  int fd = -1;
  void* base = nullptr;
  std::size_t size = 0;
  explicit RawMapping(const std::string& name) {
    fd = shm_open(name.c_str(), O_RDWR, 0);
    REQUIRE(fd >= 0);
    struct stat st;
    REQUIRE(fstat(fd, &st) == 0);
    size = static_cast<std::size_t>(st.st_size);
    base = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    REQUIRE(base != MAP_FAILED);
  }
  ~RawMapping() {
    munmap(base, size);
    close(fd);
  }
  internal::SegmentHeader* header() { return static_cast<internal::SegmentHeader*>(base); }
};

EndpointOptions Quick() {
  EndpointOptions o;
  o.open_timeout = absl::Milliseconds(200);
  return o;
}

TEST_CASE("create, attach both roles, remove") {
  ScopedName name("basic");
  REQUIRE(CreateChannel(name, {}).ok());
  auto producer = SpscProducer::Attach(name);
  REQUIRE(producer.ok());
  auto consumer = SpscConsumer::Attach(name);
  REQUIRE(consumer.ok());
  CHECK(producer->max_frame() == (1u << 20) / 2 - 16);
  CHECK(producer->name() == name.str());
  REQUIRE(RemoveChannel(name).ok());
  CHECK(SpscProducer::Attach(name).status().code() == StatusCode::kNotFound);
  CHECK(RemoveChannel(name).code() == StatusCode::kNotFound);
}

TEST_CASE("names are accepted with or without the leading slash") {
  ScopedName name("slash");
  REQUIRE(CreateChannel(name.str().substr(1), {}).ok());
  CHECK(SpscConsumer::Attach(name.str()).ok());
  CHECK(SpscProducer::Attach(name.str().substr(1)).ok());
}

TEST_CASE("missing name -> NotFound naming the channel") {
  auto r = SpscConsumer::Attach(testing::UniqueName("missing"));
  REQUIRE(r.status().code() == StatusCode::kNotFound);
  CHECK(Message(r.status()).find("shmring-test-") != std::string::npos);
}

TEST_CASE("existing name -> AlreadyExists") {
  ScopedName name("exists");
  REQUIRE(CreateChannel(name, {}).ok());
  absl::Status again = CreateChannel(name, {});
  CHECK(again.code() == StatusCode::kAlreadyExists);
  CHECK(Message(again).find(name.str()) != std::string::npos);
}

TEST_CASE("bad names -> InvalidArgument") {
  const std::vector<std::string> bad = {"",
                                        "/",
                                        "//x",
                                        "a/b",
                                        "..",
                                        "/..",
                                        "a b",
                                        "tab\tname",
                                        "x\n",
                                        "ü",
                                        std::string(201, 'a'),
                                        std::string("nul\0x", 5)};
  for (const std::string& n : bad) {
    CAPTURE(n);
    CHECK(CreateChannel(n, {}).code() == StatusCode::kInvalidArgument);
    CHECK(SpscProducer::Attach(n).status().code() == StatusCode::kInvalidArgument);
    CHECK(RemoveChannel(n).code() == StatusCode::kInvalidArgument);
  }
  CHECK(ValidateName(std::string(200, 'a')).ok());
  CHECK(ValidateName("/a.b_c-D9").ok());
}

TEST_CASE("bad geometry -> InvalidArgument with the value") {
  ScopedName name("geometry");
  ChannelOptions o;
  o.capacity = 5000;
  absl::Status s = CreateChannel(name, o);
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK(Message(s).find("5000") != std::string::npos);
  o.capacity = 4096;
  o.mode = 0400;  // the owner must be able to write
  CHECK(CreateChannel(name, o).code() == StatusCode::kInvalidArgument);
  CHECK(SpscProducer::Attach(name).status().code() == StatusCode::kNotFound);  // nothing left
}

TEST_CASE("wrong magic -> FailedPrecondition 'not a shmring segment'") {
  ScopedName name("magic");
  REQUIRE(CreateChannel(name, {}).ok());
  {
    RawMapping m(name.str());
    m.header()->magic = 0x1234;
  }
  auto r = SpscProducer::Attach(name, Quick());
  REQUIRE(r.status().code() == StatusCode::kFailedPrecondition);
  CHECK(Message(r.status()).find("not a shmring segment") != std::string::npos);
}

TEST_CASE("object that is not shmring at all -> FailedPrecondition") {
  ScopedName name("foreign");
  MakeRawObject(name.str(), 8192, 0xAB);
  CHECK(SpscConsumer::Attach(name, Quick()).status().code() == StatusCode::kFailedPrecondition);
}

TEST_CASE("wrong ABI version -> FailedPrecondition naming both versions") {
  ScopedName name("abi");
  REQUIRE(CreateChannel(name, {}).ok());
  {
    RawMapping m(name.str());
    m.header()->abi_version = 7;
  }
  auto r = SpscConsumer::Attach(name, Quick());
  REQUIRE(r.status().code() == StatusCode::kFailedPrecondition);
  CHECK(Message(r.status()).find("ABI version 7") != std::string::npos);
}

TEST_CASE("truncated object -> DataLoss") {
  ScopedName name("truncated");
  ChannelOptions o;
  o.capacity = 1 << 16;
  REQUIRE(CreateChannel(name, o).ok());
  int fd = shm_open(name.c_str(), O_RDWR, 0);
  REQUIRE(fd >= 0);
  REQUIRE(ftruncate(fd, 8192) == 0);
  close(fd);
  auto r = SpscConsumer::Attach(name, Quick());
  REQUIRE(r.status().code() == StatusCode::kDataLoss);
  CHECK(Message(r.status()).find("truncated") != std::string::npos);

  ScopedName tiny("tiny");
  MakeRawObject(tiny.str(), 100, 0);
  CHECK(SpscConsumer::Attach(tiny, Quick()).status().code() == StatusCode::kDataLoss);
}

TEST_CASE("zero-length object -> DataLoss") {
  ScopedName name("empty");
  MakeRawObject(name.str(), 0, 0);
  auto r = SpscProducer::Attach(name, Quick());
  REQUIRE(r.status().code() == StatusCode::kDataLoss);
  CHECK(Message(r.status()).find("zero-length") != std::string::npos);
}

TEST_CASE("corrupted geometry in the header -> DataLoss") {
  ScopedName name("corrupt");
  REQUIRE(CreateChannel(name, {}).ok());
  {
    RawMapping m(name.str());
    m.header()->data_offset = 12;
  }
  CHECK(SpscProducer::Attach(name, Quick()).status().code() == StatusCode::kDataLoss);
}

TEST_CASE("creator still initialising -> the opener waits, then DeadlineExceeded") {
  ScopedName name("initializing");
  // A live creator: the object exists (zero-filled, init_state = initializing) and some open
  // file description holds the init lock.
  MakeRawObject(name.str(), 0, 0);
  int creator = shm_open(name.c_str(), O_RDWR, 0);
  REQUIRE(creator >= 0);
  REQUIRE(internal::TryLockByte(creator, internal::kInitLockOffset));
  EndpointOptions o;
  o.open_timeout = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  auto r = SpscConsumer::Attach(name, o);
  CHECK(r.status().code() == StatusCode::kDeadlineExceeded);
  CHECK(absl::Now() - start >= absl::Milliseconds(300));  // it did wait (lower bound only)
  close(creator);
}

TEST_CASE("creator died during initialisation -> FailedPrecondition, no hang") {
  ScopedName name("deadcreator");
  MakeRawObject(name.str(), 64 << 10, 0);  // sized, header never written, nobody holds the lock
  EndpointOptions o;
  o.open_timeout = absl::Hours(1);  // must not wait for it
  auto r = SpscConsumer::Attach(name, o);
  REQUIRE(r.status().code() == StatusCode::kFailedPrecondition);
  CHECK(Message(r.status()).find("never initialised") != std::string::npos);
}

TEST_CASE("created 0600 whatever the umask; group-writable objects are refused") {
  ScopedName name("mode");
  const mode_t old = umask(0);
  REQUIRE(CreateChannel(name, {}).ok());
  umask(old);
  struct stat st;
  REQUIRE(stat(("/dev/shm" + name.str()).c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);

  ScopedName shared("shared");
  ChannelOptions o;
  o.mode = 0660;
  REQUIRE(CreateChannel(shared, o).ok());
  REQUIRE(stat(("/dev/shm" + shared.str()).c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0660);
  auto refused = SpscProducer::Attach(shared);
  REQUIRE(refused.status().code() == StatusCode::kPermissionDenied);
  CHECK(Message(refused.status()).find("0660") != std::string::npos);
  EndpointOptions allow;
  allow.allow_shared_mode = true;
  CHECK(SpscProducer::Attach(shared, allow).ok());
}

TEST_CASE("an object owned by another user is refused") {
  if (geteuid() != 0) {
    WARN("needs root to chown");
    return;
  }
  ScopedName name("owner");
  REQUIRE(CreateChannel(name, {}).ok());
  REQUIRE(chown(("/dev/shm" + name.str()).c_str(), 4242, 4242) == 0);
  auto r = SpscProducer::Attach(name);
  REQUIRE(r.status().code() == StatusCode::kPermissionDenied);
  CHECK(Message(r.status()).find("uid 4242") != std::string::npos);
}

TEST_CASE("a symlink at the name is refused") {
  ScopedName target("target");
  ScopedName link("link");
  REQUIRE(CreateChannel(target, {}).ok());
  REQUIRE(symlink(("/dev/shm" + target.str()).c_str(), ("/dev/shm" + link.str()).c_str()) == 0);
  CHECK(SpscProducer::Attach(link).status().code() == StatusCode::kPermissionDenied);
  CHECK(CreateChannel(link, {}).code() == StatusCode::kAlreadyExists);
}

TEST_CASE("second producer -> FailedPrecondition naming the holder's pid") {
  ScopedName name("second");
  REQUIRE(CreateChannel(name, {}).ok());
  testing::Pipe ready;
  testing::Child holder([&] {
    auto p = SpscProducer::Attach(name);
    // Signal even on failure (the parent must not wait forever); its checks then fail.
    if (!ready.Signal() || !p.ok()) return 1;
    pause();
    return 0;
  });
  REQUIRE(ready.Await());
  auto second = SpscProducer::Attach(name);
  REQUIRE(second.status().code() == StatusCode::kFailedPrecondition);
  CHECK(Message(second.status()).find("pid " + std::to_string(holder.pid())) != std::string::npos);
  CHECK(SpscConsumer::Attach(name).ok());  // the other role is free
  holder.Kill(SIGKILL);
  CHECK(holder.Wait() == 128 + SIGKILL);
  CHECK(SpscProducer::Attach(name).ok());  // a dead holder's role is taken over
}

TEST_CASE("reclaim_stale recreates a segment whose endpoints are all dead, never a live one") {
  ScopedName name("stale");
  REQUIRE(CreateChannel(name, {}).ok());
  testing::Pipe ready;
  testing::Child holder([&] {
    auto p = SpscProducer::Attach(name);
    // Signal even on failure (the parent must not wait forever); its checks then fail.
    if (!ready.Signal() || !p.ok()) return 1;
    pause();
    return 0;
  });
  REQUIRE(ready.Await());
  ChannelOptions o;
  o.reclaim_stale = true;
  CHECK(CreateChannel(name, o).code() == StatusCode::kAlreadyExists);  // live producer
  holder.Kill(SIGKILL);
  holder.Wait();
  CHECK(CreateChannel(name, {}).code() == StatusCode::kAlreadyExists);  // no opt-in
  REQUIRE(CreateChannel(name, o).ok());
  CHECK(SpscProducer::Attach(name).ok());

  ScopedName foreign("stale-foreign");
  MakeRawObject(foreign.str(), 8192, 0x5A);
  CHECK(CreateChannel(foreign, o).code() == StatusCode::kAlreadyExists);  // not ours: untouched
}

TEST_CASE("a detached endpoint frees its role even while the process keeps the mapping") {
  // Regression: the per-process shared mapping used to be made through the first endpoint's fd,
  // which kept that description — and its liveness lock — alive after the endpoint detached.
  ScopedName name("detach");
  REQUIRE(CreateChannel(name, {}).ok());
  auto consumer = SpscConsumer::Attach(name);
  REQUIRE(consumer.ok());
  {
    auto producer = SpscProducer::Attach(name);
    REQUIRE(producer.ok());
  }
  auto again = SpscProducer::Attach(name);
  CHECK(again.ok());
  // The other order too: the first endpoint (whose fd made the mapping) detaches first.
  ScopedName other("detach2");
  REQUIRE(CreateChannel(other, {}).ok());
  std::optional<SpscProducer> p1;
  {
    auto p = SpscProducer::Attach(other);
    REQUIRE(p.ok());
    p1.emplace(std::move(*p));
  }
  auto c1 = SpscConsumer::Attach(other);
  REQUIRE(c1.ok());
  p1.reset();
  CHECK(SpscProducer::Attach(other).ok());
}

TEST_CASE("CloseChannel: from outside, with both endpoints attached; ChannelKind; MpmcSlotBytes") {
  ScopedName name("closechannel");
  ChannelOptions options;
  options.capacity = 4096;
  REQUIRE(CreateChannel(name, options).ok());
  auto producer = SpscProducer::Attach(name);
  auto consumer = SpscConsumer::Attach(name);
  REQUIRE((producer.ok() && consumer.ok()));
  std::byte payload[8] = {};
  REQUIRE(producer->try_send(payload) == Result::kOk);
  REQUIRE(CloseChannel(name).ok());
  CHECK(producer->try_send(payload) == Result::kClosed);
  Frame f = consumer->try_read();  // committed before the close: still delivered
  REQUIRE(f.ok());
  consumer->release();
  CHECK(consumer->try_read().result == Result::kClosed);
  CHECK(CloseChannel(name).ok());  // idempotent
  CHECK(*ChannelKind(name) == Kind::kSpsc);

  ScopedName mpmc("closechannel-mpmc");
  options.kind = Kind::kMpmc;
  options.capacity = 4;
  REQUIRE(CreateChannel(mpmc, options).ok());
  CHECK(*ChannelKind(mpmc) == Kind::kMpmc);
  auto mc = MpmcConsumer::Attach(mpmc);
  REQUIRE(mc.ok());
  REQUIRE(CloseChannel(mpmc).ok());
  CHECK(mc->try_read().result == Result::kClosed);
  auto inspected = internal::Segment::Open(mpmc.str(), {});
  REQUIRE(inspected.ok());
  CHECK((*inspected)->geometry().slot_stride == MpmcSlotBytes(kDefaultMpmcMaxFrame));
  CHECK(MpmcSlotBytes(kDefaultMpmcMaxFrame) == 1024);  // the default is one 1 KiB slot
  CHECK((*inspected)->geometry().max_frame == kDefaultMpmcMaxFrame);

  ScopedName missing("closechannel-missing");
  CHECK(CloseChannel(missing).code() == StatusCode::kNotFound);
  CHECK(ChannelKind(missing).status().code() == StatusCode::kNotFound);
  CHECK(CloseChannel("bad/name").code() == StatusCode::kInvalidArgument);
}

TEST_CASE("staleness: gc removes only what dead processes left; reclaim also idle segments") {
  using internal::RemovedByGc;
  using internal::RemovedByReclaim;
  using internal::Staleness;
  for (Staleness s : {Staleness::kCreatorDied, Staleness::kDeadOwner}) {
    CHECK(RemovedByGc(s));
    CHECK(RemovedByReclaim(s));
  }
  for (Staleness s : {Staleness::kForeign, Staleness::kInvalid, Staleness::kLive}) {
    CHECK(!RemovedByGc(s));
    CHECK(!RemovedByReclaim(s));
  }
  for (Staleness s : {Staleness::kEmpty, Staleness::kIdle}) {
    CHECK(!RemovedByGc(s));
    CHECK(RemovedByReclaim(s));
  }
  // An idle segment (never attached) is judged idle, and gc leaves it.
  ScopedName idle("stale-idle");
  REQUIRE(CreateChannel(idle, {}).ok());
  CHECK(!*internal::CollectIfStale(idle.str(), /*dry_run=*/false));
  CHECK(ChannelKind(idle).ok());
}

}  // namespace
}  // namespace shmring
