// fuzz_channel.h — the one channel a consumer fuzz target writes its hostile bytes into.
//
// Created on first use under a per-process name ("/shmring-fuzz-<tag>-<pid>", the prefix that
// scripts/fuzz cleans up), removed at exit, and mapped through the library's own Segment so the
// target can overwrite cursors and ring bytes directly. Any failure aborts: a fuzz target cannot
// run without its channel.
#ifndef SHMRING_TESTS_FUZZ_FUZZ_CHANNEL_H_
#define SHMRING_TESTS_FUZZ_FUZZ_CHANNEL_H_

#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "segment.h"
#include "shmring/channel.h"

namespace shmring::fuzz {

// ChannelName is the name FuzzChannel created (for Attach calls in the target).
inline std::string& ChannelName() {
  static std::string name;
  return name;
}

// FuzzChannel creates the channel with `options` on the first call and returns its segment; later
// calls return the same segment (their arguments are ignored).
inline internal::Segment& FuzzChannel(std::string_view tag, const ChannelOptions& options) {
  static std::unique_ptr<internal::Segment> segment = [&] {
    ChannelName() = "/shmring-fuzz-" + std::string(tag) + "-" + std::to_string(getpid());
    if (!CreateChannel(ChannelName(), options).ok()) std::abort();
    std::atexit([] { (void)RemoveChannel(ChannelName()); });
    auto seg = internal::Segment::Open(ChannelName(), {});
    if (!seg.ok()) std::abort();
    return std::move(*seg);
  }();
  return *segment;
}

}  // namespace shmring::fuzz

#endif  // SHMRING_TESTS_FUZZ_FUZZ_CHANNEL_H_
