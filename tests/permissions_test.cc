// Permissions across users: what a process of another user can and cannot do with a channel.
// (tests/segment_test.cc covers the single-user cases: 0600 whatever the umask, group-writable
// and foreign-owned objects refused, symlinks refused, O_EXCL.) The children switch to another
// uid with setuid(2), so these tests need root; they are skipped otherwise.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <functional>
#include <span>
#include <string>

#include "segment.h"
#include "shmring/channel.h"
#include "shmring/spsc.h"
#include "test_util.h"

namespace shmring {
namespace {

using absl::StatusCode;
using testing::Child;
using testing::ScopedName;

constexpr uid_t kOtherUser = 4242;

bool Root() {
  if (geteuid() == 0) return true;
  WARN("needs root to switch users; skipped");
  return false;
}

// AsOtherUser runs `body` in a child under uid kOtherUser (group `gid`); returns its exit code.
int AsOtherUser(gid_t gid, std::function<int()> body) {
  Child child([&] {
    if (setgid(gid) != 0 || setuid(kOtherUser) != 0) return 90;
    return body();
  });
  return child.Wait(absl::Seconds(60));
}

bool Exists(const std::string& name) {
  struct stat st;
  return stat(("/dev/shm" + name).c_str(), &st) == 0;
}

TEST_CASE("another user can neither open a 0600 channel nor reclaim or remove it") {
  if (!Root()) return;
  ScopedName name("perm-private");
  REQUIRE(CreateChannel(name, {}).ok());  // 0600, nobody attached: stale-looking
  const std::string n = name.str();
  const int code = AsOtherUser(kOtherUser, [&] {
    auto p = SpscProducer::Attach(n);
    if (p.status().code() != StatusCode::kPermissionDenied) return 10;
    if (p.status().message().find(n) == absl::string_view::npos) return 11;  // names the channel
    internal::OpenOptions read_only;
    read_only.access = internal::Access::kReadOnly;
    if (internal::Segment::Open(n, read_only).status().code() != StatusCode::kPermissionDenied) {
      return 12;
    }
    ChannelOptions reclaim;
    reclaim.reclaim_stale = true;
    if (CreateChannel(n, reclaim).code() != StatusCode::kPermissionDenied) return 13;
    if (RemoveChannel(n).code() != StatusCode::kPermissionDenied) return 14;  // sticky /dev/shm
    return 0;
  });
  CHECK(code == 0);
  CHECK(Exists(n));
  CHECK(SpscProducer::Attach(n).ok());  // untouched for its owner
}

TEST_CASE("a group-readable channel: the group may inspect it read-only, only when it opts in") {
  if (!Root()) return;
  ScopedName name("perm-group-read");
  ChannelOptions options;
  options.mode = 0640;
  REQUIRE(CreateChannel(name, options).ok());
  const std::string n = name.str();
  const int code = AsOtherUser(getegid(), [&] {
    // Read-write needs the write bit: refused by the kernel.
    if (SpscConsumer::Attach(n).status().code() != StatusCode::kPermissionDenied) return 10;
    EndpointOptions shared;
    shared.allow_shared_mode = true;
    if (SpscConsumer::Attach(n, shared).status().code() != StatusCode::kPermissionDenied) {
      return 11;
    }
    internal::OpenOptions read_only;
    read_only.access = internal::Access::kReadOnly;
    // Owned by another user: refused unless the caller opts in.
    auto refused = internal::Segment::Open(n, read_only);
    if (refused.status().code() != StatusCode::kPermissionDenied) return 12;
    if (refused.status().message().find("owned by uid") == absl::string_view::npos) return 13;
    read_only.allow_shared_mode = true;
    auto seg = internal::Segment::Open(n, read_only);
    if (!seg.ok()) return 14;
    return (*seg)->geometry().kind == Kind::kSpsc ? 0 : 15;
  });
  CHECK(code == 0);
}

TEST_CASE("a shared channel (--mode 0666): another user attaches only when it opts in") {
  if (!Root()) return;
  ScopedName name("perm-shared");
  ChannelOptions options;
  options.mode = 0666;
  REQUIRE(CreateChannel(name, options).ok());
  const std::string n = name.str();
  const int code = AsOtherUser(kOtherUser, [&] {
    auto refused = SpscProducer::Attach(n);
    if (refused.status().code() != StatusCode::kPermissionDenied) return 10;
    EndpointOptions shared;
    shared.allow_shared_mode = true;
    auto p = SpscProducer::Attach(n, shared);
    if (!p.ok()) return 11;
    const char hello[] = "hello";
    if (p->send(std::as_bytes(std::span(hello)), absl::Now() + absl::Seconds(60)) != Result::kOk) {
      return 12;
    }
    p->close();
    return 0;
  });
  CHECK(code == 0);
  // The owner too must opt in: the object is writable by others.
  CHECK(SpscConsumer::Attach(n).status().code() == StatusCode::kPermissionDenied);
  EndpointOptions shared;
  shared.allow_shared_mode = true;
  auto c = SpscConsumer::Attach(n, shared);
  REQUIRE(c.ok());
  Frame f = c->read(absl::Now() + absl::Seconds(60));
  REQUIRE(f.ok());
  CHECK(std::string(reinterpret_cast<const char*>(f.data.data())) == "hello");
  c->release();
  CHECK(c->read(absl::Now() + absl::Seconds(60)).result == Result::kClosed);
}

}  // namespace
}  // namespace shmring
