// shm-cat — netcat for shmring channels: create, send stdin, receive to stdout, close, remove,
// and garbage-collect segments left behind by dead processes. The command line, the output and
// the exit codes are a contract (docs/tools.md).
//
//   shm-cat create /logs --capacity 64K
//   shm-cat recv /logs --lines > out.txt &
//   printf 'a\nb\n' | shm-cat send /logs --lines --close
//
// recv releases a frame only after write(2) of its bytes to stdout returned (no stdio buffer), so
// a receiver killed at any instruction loses nothing: the next receiver starts at the first
// frame not released, and at most that one frame is written twice.
#include <signal.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli.h"
#include "inspect.h"  // the tools' inspection interface (gc, rm, naming helpers)
#include "shmring/broadcast.h"
#include "shmring/channel.h"
#include "shmring/mpmc.h"
#include "shmring/spsc.h"

namespace shmring::tools {
namespace {

constexpr char kFooter[] =
    "Sizes take K/M/G suffixes (powers of two). NAME with or without the leading '/'.\n"
    "Exit codes: 0 success, 1 usage error, 2 runtime error, 3 timeout, 4 frames missed\n"
    "(recv of a broadcast channel: lapped or evicted). See docs/tools.md.";

// Usage reports a usage error in one line (docs/tools.md: exit 1).
int Usage(std::string_view message) {
  std::fprintf(stderr, "shm-cat: %.*s (see shm-cat --help)\n", static_cast<int>(message.size()),
               message.data());
  return kExitUsage;
}

int Fail(std::string_view message, int code = kExitRuntime) {
  std::fprintf(stderr, "shm-cat: %.*s\n", static_cast<int>(message.size()), message.data());
  return code;
}

// Fail(status) decides the exit code from the status code (never from the message text).
int Fail(const absl::Status& status) {
  return Fail(internal::SV(status.message()), ExitCodeOf(status));
}

// Args: what CLI11 parsed for one command: the positional words (NAME) and the options given.
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string, std::less<>> values;  // option -> value ("" for switches)
  std::map<std::string, CLI::Option*, std::less<>> options;
};

// Flag: the value of option `name` if it was given (the last one wins), else nullptr.
const std::string* Flag(const Args& a, std::string_view name) {
  const auto it = a.options.find(name);
  if (it == a.options.end() || it->second->count() == 0) return nullptr;
  return &a.values.find(name)->second;
}

// OneName checks that exactly one NAME was given and that it is a valid channel name.
bool OneName(const Args& a, std::string* name, std::string* error) {
  if (a.positional.size() != 1) {
    *error = a.positional.empty() ? "missing NAME" : "expected exactly one NAME";
    return false;
  }
  if (a.positional[0] == "-") {
    *error = "unexpected '-'";
    return false;
  }
  if (absl::Status s = ValidateName(a.positional[0]); !s.ok()) {
    *error = std::string(internal::SV(s.message()));
    return false;
  }
  *name = CanonicalName(a.positional[0]);
  return true;
}

EndpointOptions Endpoint(bool shared) {
  EndpointOptions o;
  o.allow_shared_mode = shared;
  o.wait = WaitMode::kHybrid;
  o.spin_iterations = 2000;  // a shell tool: sleep soon rather than burn a core
  return o;
}

// DetectKind: the channel's kind (waiting for a creator still initialising it).
absl::StatusOr<Kind> DetectKind(const std::string& name, bool shared) {
  EndpointOptions options;
  options.allow_shared_mode = shared;
  return ChannelKind(name, options);
}

// ---- create ----

// BroadcastOptions takes create's broadcast options (--overflow, --evict-after,
// --max-subscribers) into `options`; returns the usage error, or "" (also when none was given).
std::string BroadcastOptions(const Args& a, ChannelOptions* options) {
  const bool broadcast = options->kind == Kind::kBroadcast;
  for (const char* flag : {"overflow", "evict-after", "max-subscribers"}) {
    if (Flag(a, flag) != nullptr && !broadcast) {
      return absl::StrCat("--", flag, " applies to --kind broadcast only");
    }
  }
  if (const std::string* v = Flag(a, "overflow")) {
    if (*v == "block") {
      options->overflow = OverflowPolicy::kBlock;
    } else if (*v == "overwrite") {
      options->overflow = OverflowPolicy::kOverwrite;
    } else {
      return absl::StrCat("--overflow must be block or overwrite, not '", *v, "'");
    }
  }
  if (const std::string* v = Flag(a, "evict-after")) {
    if (options->overflow != OverflowPolicy::kBlock) {
      return "--evict-after applies to --overflow block only";
    }
    const std::optional<double> seconds =
        *v == "never" ? std::optional<double>() : ParseSeconds(*v);
    if (*v != "never" && !seconds) {
      return absl::StrCat("bad --evict-after '", *v, "' (SECONDS or never)");
    }
    options->evict_after = seconds ? absl::Seconds(*seconds) : absl::InfiniteDuration();
  }
  if (const std::string* v = Flag(a, "max-subscribers")) {
    const std::optional<std::uint64_t> n = ParseCount(*v);
    if (!n || *n == 0 || *n > UINT32_MAX) return absl::StrCat("bad --max-subscribers '", *v, "'");
    options->max_endpoints = static_cast<std::uint32_t>(*n);
  }
  return "";
}

// MpmcSlots sets an MPMC channel's slot count: --slots, or as many power-of-two slots of
// max_frame (default kDefaultMpmcMaxFrame) payload bytes as fit in --capacity bytes. Returns the
// usage error, or "".
std::string MpmcSlots(const Args& a, std::uint64_t capacity_bytes, ChannelOptions* options) {
  const std::uint64_t stride =
      MpmcSlotBytes(options->max_frame != 0 ? options->max_frame : kDefaultMpmcMaxFrame);
  std::uint64_t slots = std::bit_floor(capacity_bytes / stride);
  if (const std::string* v = Flag(a, "slots")) {
    auto n = ParseSize(*v);
    if (!n) return absl::StrCat("bad --slots '", *v, "'");
    slots = *n;
  } else if (slots < 2) {
    return absl::StrCat("--capacity ", capacity_bytes, " bytes holds fewer than 2 slots of ",
                        stride, " bytes");
  }
  options->capacity = slots;
  return "";
}

int Create(const Args& a) {
  std::string name, error;
  if (!OneName(a, &name, &error)) return Usage(error);
  ChannelOptions options;
  options.kind = Kind::kSpsc;
  if (const std::string* v = Flag(a, "kind")) {
    if (*v == "spsc") {
      options.kind = Kind::kSpsc;
    } else if (*v == "mpmc") {
      options.kind = Kind::kMpmc;
    } else if (*v == "broadcast") {
      options.kind = Kind::kBroadcast;
    } else {
      return Usage(absl::StrCat("--kind must be spsc, mpmc or broadcast, not '", *v, "'"));
    }
  }
  if (const std::string error = BroadcastOptions(a, &options); !error.empty()) {
    return Usage(error);
  }
  std::uint64_t capacity_bytes = std::uint64_t{1} << 20;
  if (const std::string* v = Flag(a, "capacity")) {
    auto size = ParseSize(*v);
    if (!size || *size == 0) return Usage(absl::StrCat("bad --capacity '", *v, "'"));
    capacity_bytes = *size;
  }
  if (const std::string* v = Flag(a, "max-frame")) {
    auto size = ParseSize(*v);
    if (!size || *size == 0 || *size > UINT32_MAX) {
      return Usage(absl::StrCat("bad --max-frame '", *v, "'"));
    }
    options.max_frame = static_cast<std::uint32_t>(*size);
  }
  if (const std::string* v = Flag(a, "mode")) {
    char* end = nullptr;
    const unsigned long mode = std::strtoul(v->c_str(), &end, 8);
    if (v->empty() || *end != '\0' || mode > 0777) {
      return Usage(absl::StrCat("bad --mode '", *v, "' (want octal permission bits, e.g. 0600)"));
    }
    options.mode = static_cast<mode_t>(mode);
  }
  if (options.kind != Kind::kMpmc) {
    if (Flag(a, "slots") != nullptr) return Usage("--slots applies to --kind mpmc only");
    options.capacity = capacity_bytes;
  } else if (const std::string error = MpmcSlots(a, capacity_bytes, &options); !error.empty()) {
    return Usage(error);
  }
  if (absl::Status s = CreateChannel(name, options); !s.ok()) return Fail(s);
  return kExitOk;
}

// ---- send ----

int SendError(const std::string& name, Result r, std::size_t size, std::size_t max_frame) {
  switch (r) {
    case Result::kClosed:
      return Fail(absl::StrCat(internal::Prefix(name), "channel is closed"));
    case Result::kTooLarge:
      return Fail(absl::StrCat(internal::Prefix(name), "frame too large: ", size,
                               " bytes, max_frame is ", max_frame));
    case Result::kAbandoned:
      return Fail(absl::StrCat(internal::Prefix(name),
                               "this producer was taken for dead; frame not published"));
    default:
      return Fail(absl::StrCat(internal::Prefix(name), "send failed: ", internal::AV(ToString(r))));
  }
}

template <typename Producer>
int SendWith(Producer& producer, const std::string& name, bool lines, std::uint64_t frame_size,
             bool close_at_eof) {
  const std::size_t max_frame = producer.max_frame();
  if (frame_size > max_frame) {
    return Fail(absl::StrCat(internal::Prefix(name), "frame too large: --frame-size ", frame_size,
                             " exceeds max_frame ", max_frame));
  }
  const std::size_t limit = frame_size != 0 ? frame_size : max_frame;
  auto send = [&](const void* data, std::size_t size) -> int {
    const Result r =
        producer.send(std::span<const std::byte>(static_cast<const std::byte*>(data), size),
                      absl::InfiniteFuture());
    return r == Result::kOk ? kExitOk : SendError(name, r, size, max_frame);
  };
  if (!lines) {
    if (limit == 0) return Fail(absl::StrCat(internal::Prefix(name), "max_frame is 0"));
    // Not value-initialised: a large max_frame costs address space, and only the pages that
    // reads fill are touched.
    const std::unique_ptr<char[]> buffer = std::make_unique_for_overwrite<char[]>(limit);
    for (;;) {
      const ssize_t n = read(STDIN_FILENO, buffer.get(), limit);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Fail(absl::StrCat("cannot read stdin: ", std::strerror(errno)));
      if (n == 0) break;
      if (int rc = send(buffer.get(), static_cast<std::size_t>(n)); rc != kExitOk) return rc;
    }
  } else {
    std::string line;
    std::vector<char> buffer(64 * 1024);
    bool pending = false;  // bytes after the last newline (a last line without '\n')
    for (;;) {
      const ssize_t n = read(STDIN_FILENO, buffer.data(), buffer.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return Fail(absl::StrCat("cannot read stdin: ", std::strerror(errno)));
      if (n == 0) break;
      std::string_view chunk(buffer.data(), static_cast<std::size_t>(n));
      while (!chunk.empty()) {
        const std::size_t nl = chunk.find('\n');
        const std::string_view part = chunk.substr(0, nl);
        if (line.size() + part.size() > limit) {
          return Fail(absl::StrCat(internal::Prefix(name), "frame too large: a line of more than ",
                                   limit, " bytes (max_frame ", max_frame, ")"));
        }
        line.append(part);
        pending = true;
        if (nl == std::string_view::npos) break;
        if (int rc = send(line.data(), line.size()); rc != kExitOk) return rc;
        line.clear();
        pending = false;
        chunk.remove_prefix(nl + 1);
      }
    }
    if (pending && !line.empty()) {
      if (int rc = send(line.data(), line.size()); rc != kExitOk) return rc;
    }
  }
  if (close_at_eof) producer.close();
  return kExitOk;
}

int Send(const Args& a) {
  std::string name, error;
  if (!OneName(a, &name, &error)) return Usage(error);
  std::uint64_t frame_size = 0;
  if (const std::string* v = Flag(a, "frame-size")) {
    auto size = ParseSize(*v);
    if (!size || *size == 0) return Usage(absl::StrCat("bad --frame-size '", *v, "'"));
    frame_size = *size;
  }
  const bool lines = Flag(a, "lines") != nullptr;
  const bool close_at_eof = Flag(a, "close") != nullptr;
  const bool shared = Flag(a, "shared") != nullptr;
  absl::StatusOr<Kind> kind = DetectKind(name, shared);
  if (!kind.ok()) return Fail(kind.status());
  if (*kind == Kind::kSpsc) {
    auto producer = SpscProducer::Attach(name, Endpoint(shared));
    if (!producer.ok()) return Fail(producer.status());
    return SendWith(*producer, name, lines, frame_size, close_at_eof);
  }
  if (*kind == Kind::kBroadcast) {
    auto publisher = BroadcastPublisher::Attach(name, Endpoint(shared));
    if (!publisher.ok()) return Fail(publisher.status());
    return SendWith(*publisher, name, lines, frame_size, close_at_eof);
  }
  auto producer = MpmcProducer::Attach(name, Endpoint(shared));
  if (!producer.ok()) return Fail(producer.status());
  return SendWith(*producer, name, lines, frame_size, close_at_eof);
}

// ---- recv ----

// WriteFrame writes the payload (and a newline) with writev(2), all or nothing as far as this
// process can tell: it returns only after the kernel took every byte.
bool WriteFrame(std::span<const std::byte> data, bool newline) {
  static const char kNewline = '\n';
  iovec iov[2];
  int count = 0;
  if (!data.empty()) {
    iov[count++] = {const_cast<std::byte*>(data.data()), data.size()};
  }
  if (newline) iov[count++] = {const_cast<char*>(&kNewline), 1};
  int first = 0;
  while (first < count) {
    const ssize_t n = writev(STDOUT_FILENO, iov + first, count - first);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    std::size_t done = static_cast<std::size_t>(n);
    while (first < count && done >= iov[first].iov_len) {
      done -= iov[first].iov_len;
      ++first;
    }
    if (first < count) {
      iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + done;
      iov[first].iov_len -= done;
    }
  }
  return true;
}

template <typename Consumer>
int RecvWith(Consumer& consumer, const std::string& name, bool lines,
             std::optional<std::uint64_t> count, std::optional<double> timeout) {
  for (std::uint64_t received = 0; !count || received < *count; ++received) {
    const absl::Time deadline =
        timeout ? absl::Now() + absl::Seconds(*timeout) : absl::InfiniteFuture();
    const Frame f = consumer.read(deadline);
    switch (f.result) {
      case Result::kOk:
        break;
      case Result::kClosed:
        return kExitOk;
      case Result::kTimeout:
        return Fail(absl::StrCat(internal::Prefix(name), "timed out after ", *timeout,
                                 " s waiting for a frame"),
                    kExitTimeout);
      case Result::kCorrupted:
        return Fail(absl::StrCat(internal::Prefix(name),
                                 "corrupted: the segment holds an impossible frame"));
      default:
        return Fail(absl::StrCat(internal::Prefix(name),
                                 "read failed: ", internal::AV(ToString(f.result))));
    }
    // The frame is released only after write(2) returned: a receiver killed before this point
    // leaves it unreleased for the next one.
    if (!WriteFrame(f.data, lines)) {
      return Fail(absl::StrCat(internal::Prefix(name), "cannot write to stdout: ",
                               std::strerror(errno), " (frame ", f.sequence, " left unreleased)"));
    }
    consumer.release();
  }
  return kExitOk;
}

// RecvBroadcast: a subscriber copies each frame out and validates it (receive) before writing it:
// a frame the publisher overwrote meanwhile is never written. Each lap or eviction is one line on
// stderr with the exact count; the exit code is then kExitMissed (the stream went on).
int RecvBroadcast(BroadcastSubscriber& subscriber, const std::string& name, bool lines,
                  std::optional<std::uint64_t> count, std::optional<double> timeout) {
  const std::unique_ptr<std::byte[]> buffer =
      std::make_unique_for_overwrite<std::byte[]>(std::max<std::size_t>(1, subscriber.max_frame()));
  const std::span<std::byte> space(buffer.get(), std::max<std::size_t>(1, subscriber.max_frame()));
  std::uint64_t missed = 0;
  for (std::uint64_t received = 0; !count || received < *count;) {
    const absl::Time deadline =
        timeout ? absl::Now() + absl::Seconds(*timeout) : absl::InfiniteFuture();
    const Received r = subscriber.receive(space, deadline);
    if (r.result == Result::kLapped) {
      missed += r.missed;
      std::fprintf(stderr, "shm-cat: %s: missed %llu frames (sequence %llu to %llu): %s\n",
                   name.c_str(), static_cast<unsigned long long>(r.missed),
                   static_cast<unsigned long long>(r.sequence),
                   static_cast<unsigned long long>(r.sequence + r.missed - 1),
                   subscriber.overflow() == OverflowPolicy::kOverwrite
                       ? "lapped by the publisher"
                       : "evicted for blocking the publisher");
      continue;
    }
    if (r.result == Result::kClosed) break;
    if (r.result == Result::kTimeout) {
      return Fail(absl::StrCat(internal::Prefix(name), "timed out after ", *timeout,
                               " s waiting for a frame"),
                  kExitTimeout);
    }
    if (!r.ok()) {
      return Fail(
          absl::StrCat(internal::Prefix(name), "read failed: ", internal::AV(ToString(r.result))));
    }
    if (!WriteFrame(space.first(r.size), lines)) {
      return Fail(absl::StrCat(internal::Prefix(name), "cannot write to stdout: ",
                               std::strerror(errno), " (frame ", r.sequence, ")"));
    }
    ++received;
  }
  return missed == 0 ? kExitOk : kExitMissed;
}

int Recv(const Args& a) {
  std::string name, error;
  if (!OneName(a, &name, &error)) return Usage(error);
  std::optional<std::uint64_t> count;
  std::optional<double> timeout;
  if (const std::string* v = Flag(a, "count")) {
    count = ParseCount(*v);
    if (!count) return Usage(absl::StrCat("bad --count '", *v, "'"));
  }
  if (const std::string* v = Flag(a, "timeout")) {
    timeout = ParseSeconds(*v);
    if (!timeout) return Usage(absl::StrCat("bad --timeout '", *v, "'"));
  }
  std::optional<StartAt> from;
  if (const std::string* v = Flag(a, "from")) {
    if (*v == "latest") {
      from = StartAt::kLatest;
    } else if (*v == "oldest") {
      from = StartAt::kOldest;
    } else {
      return Usage(absl::StrCat("--from must be latest or oldest, not '", *v, "'"));
    }
  }
  const bool lines = Flag(a, "lines") != nullptr;
  const bool shared = Flag(a, "shared") != nullptr;
  absl::StatusOr<Kind> kind = DetectKind(name, shared);
  if (!kind.ok()) return Fail(kind.status());
  if (from && *kind != Kind::kBroadcast) return Usage("--from applies to broadcast channels only");
  if (*kind == Kind::kBroadcast) {
    auto subscriber =
        BroadcastSubscriber::Attach(name, from.value_or(StartAt::kLatest), Endpoint(shared));
    if (!subscriber.ok()) return Fail(subscriber.status());
    return RecvBroadcast(*subscriber, name, lines, count, timeout);
  }
  if (*kind == Kind::kSpsc) {
    auto consumer = SpscConsumer::Attach(name, Endpoint(shared));
    if (!consumer.ok()) return Fail(consumer.status());
    return RecvWith(*consumer, name, lines, count, timeout);
  }
  auto consumer = MpmcConsumer::Attach(name, Endpoint(shared));
  if (!consumer.ok()) return Fail(consumer.status());
  return RecvWith(*consumer, name, lines, count, timeout);
}

// ---- close ----

int Close(const Args& a) {
  std::string name, error;
  if (!OneName(a, &name, &error)) return Usage(error);
  EndpointOptions options;
  options.allow_shared_mode = Flag(a, "shared") != nullptr;
  if (absl::Status s = CloseChannel(name, options); !s.ok()) return Fail(s);
  return kExitOk;
}

// ---- rm ----

int Remove(const Args& a) {
  std::string name, error;
  if (!OneName(a, &name, &error)) return Usage(error);
  // Refuse an object that is clearly something else (docs/tools.md, rm).
  if (absl::Status s = internal::CheckRemovable(name); !s.ok()) return Fail(s);
  if (absl::Status s = RemoveChannel(name); !s.ok()) return Fail(s);
  return kExitOk;
}

// ---- gc ----

int Gc(const Args& a) {
  if (!a.positional.empty()) return Usage("gc takes no NAME");
  const bool dry_run = Flag(a, "dry-run") != nullptr;
  // --prefix (an extension of the contract): only names starting with it, e.g. "/myapp-".
  std::string prefix = "/";
  if (const std::string* v = Flag(a, "prefix")) prefix = CanonicalName(*v);
  absl::StatusOr<std::vector<std::string>> entries = internal::ListShmObjects();
  if (!entries.ok()) return Fail(internal::SV(entries.status().message()));
  int rc = kExitOk;
  for (const std::string& entry : *entries) {
    if (!ValidateName(entry).ok()) continue;
    const std::string name = CanonicalName(entry);
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    absl::StatusOr<bool> collected = internal::CollectIfStale(name, dry_run);
    if (!collected.ok()) {
      std::fprintf(stderr, "shm-cat: %.*s\n", static_cast<int>(collected.status().message().size()),
                   collected.status().message().data());
      rc = kExitRuntime;
      continue;
    }
    if (!*collected) continue;
    const std::string line = name + "\n";
    (void)WriteAll(STDOUT_FILENO, line.data(), line.size());
  }
  return rc;
}

// Command: one subcommand of shm-cat, its options (name, help) and its handler.
struct Command {
  using Options = std::vector<std::pair<const char*, const char*>>;
  const char* name;
  const char* help;
  Options with_value;  // --option VALUE
  Options switches;    // --switch
  int (*run)(const Args&);
};

const Command kCommands[] = {
    {"create",
     "create a channel",
     {{"kind", "spsc (default), mpmc or broadcast"},
      {"capacity", "BYTES: SPSC/broadcast ring size / MPMC slot array size (default 1M)"},
      {"max-frame", "BYTES: largest frame"},
      {"mode", "OCTAL: permission bits (default 0600)"},
      {"slots", "N: MPMC slot count (instead of --capacity)"},
      {"overflow", "broadcast: block (default, lossless) or overwrite (lossy)"},
      {"evict-after",
       "SECONDS|never: broadcast block: evict a subscriber that blocks the "
       "publisher this long (default 1)"},
      {"max-subscribers", "N: broadcast: subscribers attached at once (default 64)"}},
     {},
     Create},
    {"send",
     "send stdin as frames",
     {{"frame-size", "BYTES: frame size without --lines (default max_frame)"}},
     {{"lines", "one frame per line"},
      {"close", "close the channel at end of input"},
      {"shared", "accept a shared-mode channel"}},
     Send},
    {"recv",
     "receive frames to stdout",
     {{"count", "N: stop after N frames"},
      {"timeout", "SECONDS: give up waiting (exit 3)"},
      {"from",
       "broadcast: latest (default: frames published from now on) or oldest (replay the "
       "frames the ring still holds)"}},
     {{"lines", "a newline after each frame"}, {"shared", "accept a shared-mode channel"}},
     Recv},
    {"close", "mark end-of-stream", {}, {{"shared", "accept a shared-mode channel"}}, Close},
    {"rm", "remove a channel", {}, {}, Remove},
    {"gc",
     "remove segments dead processes left behind, print their names",
     {{"prefix", "NAME_PREFIX: only names starting with it"}},
     {{"dry-run", "print, remove nothing"}},
     Gc},
};

int Main(int argc, char** argv) {
  CLI::App app("shm-cat: netcat for shmring channels", "shm-cat");
  app.footer(kFooter);
  app.require_subcommand(0, 1);
  // A repeated option: the last one wins, as for most Unix tools.
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::vector<Args> args(std::size(kCommands));
  for (std::size_t i = 0; i < std::size(kCommands); ++i) {
    const Command& c = kCommands[i];
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    sub->add_option("NAME", args[i].positional, "channel name");
    for (const auto& [o, help] : c.with_value) {
      args[i].options[o] = sub->add_option(absl::StrCat("--", o), args[i].values[o], help);
    }
    for (const auto& [o, help] : c.switches) {
      args[i].values[o] = "";
      args[i].options[o] = sub->add_flag(absl::StrCat("--", o), help);
    }
  }
  app.add_subcommand("help", "print this help");
  if (argc == 2 && std::string_view(argv[1]) == "help") {
    std::fputs(app.help().c_str(), stdout);
    return kExitOk;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::fputs(app.help().c_str(), stdout);
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    return Usage(OneLine(e.what()));
  }
  if (app.got_subcommand("help")) return Usage("help takes no arguments");
  for (std::size_t i = 0; i < std::size(kCommands); ++i) {
    if (app.got_subcommand(kCommands[i].name)) return kCommands[i].run(args[i]);
  }
  return Usage("missing command");
}

}  // namespace
}  // namespace shmring::tools

int main(int argc, char** argv) {
  // A closed stdout must be an error we report (and a frame we do not release), not a silent
  // death by SIGPIPE.
  signal(SIGPIPE, SIG_IGN);
  return shmring::tools::Main(argc, argv);
}
