// shm-inspect — read-only view of live shmring segments: a listing, a one-segment report (human
// or JSON), a live refresh with rates, and a dump of the next unread frames. The command line,
// the JSON keys and the exit codes are a contract (docs/tools.md).
//
//   shm-inspect                         # every shmring segment in /dev/shm
//   shm-inspect /quotes                 # one segment, readable at a glance
//   shm-inspect /quotes --json | jq .counters
//   shm-inspect /quotes --watch --interval 0.5
//   shm-inspect /quotes --frames 8
//
// Everything is read with pread(2) through lib/inspect.h: no writable mapping, no write, no lock
// taken (liveness is F_OFD_GETLK), no wake-up, no attach. Hostile objects give one line on
// stderr and exit 2.
#include <signal.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli.h"
#include "inspect.h"
#include "nlohmann/json.hpp"
#include "shmring/channel.h"

namespace shmring::tools {
namespace {

using internal::CounterValues;
using internal::EndpointSnapshot;
using internal::FrameSnapshot;
using internal::Snapshot;

constexpr char kFooter[] =
    "Exit codes: 0 success, 1 usage error, 2 runtime error (not found, not shmring, corrupted,\n"
    "other ABI version, ...). Read-only: never writes, locks, wakes or attaches. See "
    "docs/tools.md.";

int Usage(std::string_view message) {
  std::fprintf(stderr, "shm-inspect: %.*s (see shm-inspect --help)\n",
               static_cast<int>(message.size()), message.data());
  return kExitUsage;
}

// Fail reports a runtime error (exit 2: shm-inspect has no timeouts, and a bad NAME is caught
// before as a usage error).
int Fail(const absl::Status& status) {
  std::fprintf(stderr, "shm-inspect: %s\n", std::string(internal::SV(status.message())).c_str());
  return kExitRuntime;
}

void Emit(const std::string& text) { (void)WriteAll(STDOUT_FILENO, text.data(), text.size()); }

// ---- JSON ----

// JSON output: nlohmann::ordered_json keeps the keys in the documented order. Dump: compact,
// ASCII only, and bytes that are not UTF-8 (an object name in /dev/shm may be any bytes) become
// U+FFFD instead of an exception, so the output is always valid JSON.
using Json = nlohmann::ordered_json;

std::string Dump(const Json& j) {
  return j.dump(-1, ' ', /*ensure_ascii=*/true, Json::error_handler_t::replace) + "\n";
}

// With `channel`, the channel totals also get the frames/bytes split by role. `broadcast` adds the
// broadcast counters (missed, lapped, evicted).
Json CountersJson(const CounterValues& c, bool broadcast, const Snapshot* channel = nullptr) {
  Json j;
  j["frames"] = c.frames;
  j["bytes"] = c.bytes;
  if (channel != nullptr) {
    j["frames_produced"] = channel->frames_produced;
    j["bytes_produced"] = channel->bytes_produced;
    j["frames_consumed"] = channel->frames_consumed;
    j["bytes_consumed"] = channel->bytes_consumed;
  }
  j["wakeups"] = c.wakeups;
  j["waits"] = c.waits;
  j["abandoned"] = c.abandoned;
  j["takeovers"] = c.takeovers;
  j["redelivered"] = c.redelivered;
  if (broadcast) {
    j["missed"] = c.missed;
    j["lapped"] = c.lapped;
    j["evicted"] = c.evicted;
  }
  return j;
}

std::string Hex(const std::vector<std::byte>& bytes) {
  std::string out;
  for (std::byte b : bytes) absl::StrAppend(&out, absl::StrFormat("%02x", static_cast<int>(b)));
  return out;
}

std::string Printable(const std::vector<std::byte>& bytes) {
  std::string out;
  for (std::byte b : bytes) {
    const int c = static_cast<int>(b);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '.';
  }
  return out;
}

// Rates between two snapshots of the same segment (--watch).
struct Rates {
  double seconds = 0;
  double frames_in = 0;   // frames committed by producers per second
  double frames_out = 0;  // frames consumed per second
  double bytes_in = 0;    // payload bytes committed per second
  double bytes_out = 0;   // payload bytes released per second
  double wakeups = 0;
  double waits = 0;
};

double PerSecond(std::uint64_t now, std::uint64_t before, double seconds) {
  return now >= before && seconds > 0 ? static_cast<double>(now - before) / seconds : 0;
}

Rates ComputeRates(const Snapshot& before, const Snapshot& now, double seconds) {
  Rates r;
  r.seconds = seconds;
  r.frames_in = PerSecond(now.next_write_seq, before.next_write_seq, seconds);
  r.frames_out = PerSecond(now.next_read_seq, before.next_read_seq, seconds);
  r.wakeups = PerSecond(now.counters.wakeups, before.counters.wakeups, seconds);
  r.waits = PerSecond(now.counters.waits, before.counters.waits, seconds);
  // Bytes per role: the retired counters mix both roles, so take each live entry's growth since
  // the previous sample (the whole value if the entry was re-attached meanwhile).
  std::map<std::uint32_t, const EndpointSnapshot*> previous;
  for (const EndpointSnapshot& e : before.endpoints) previous[e.index] = &e;
  std::uint64_t in = 0, out = 0, delivered = 0;
  for (const EndpointSnapshot& e : now.endpoints) {
    CounterValues grown = e.counters;
    if (auto it = previous.find(e.index);
        it != previous.end() && it->second->generation == e.generation) {
      const CounterValues& was = it->second->counters;
      grown.bytes = e.counters.bytes >= was.bytes ? e.counters.bytes - was.bytes : 0;
      grown.frames = e.counters.frames >= was.frames ? e.counters.frames - was.frames : 0;
    }
    if (e.role == static_cast<std::uint32_t>(internal::Role::kProducer)) in += grown.bytes;
    if (e.role == static_cast<std::uint32_t>(internal::Role::kConsumer)) {
      out += grown.bytes;
      delivered += grown.frames;
    }
  }
  // Broadcast: frames out are the frames every subscriber read (the oldest held frame only says
  // how fast the ring is recycled).
  if (now.geometry.kind == Kind::kBroadcast) r.frames_out = PerSecond(delivered, 0, seconds);
  r.bytes_in = seconds > 0 ? static_cast<double>(in) / seconds : 0;
  r.bytes_out = seconds > 0 ? static_cast<double>(out) / seconds : 0;
  return r;
}

bool IsBroadcast(const Snapshot& s) { return s.geometry.kind == Kind::kBroadcast; }

// EndpointHead: the keys every endpoint object starts with (`role` only in `endpoints`).
Json EndpointHead(const EndpointSnapshot& e, bool with_role) {
  Json j;
  j["index"] = e.index;
  if (with_role) j["role"] = internal::RoleName(e.role);
  j["pid"] = e.pid;
  j["alive"] = e.alive;
  j["generation"] = e.generation;
  j["attach_time_ns"] = e.attach_time_ns;
  j["sleeping"] = e.sleeping;
  return j;
}

Json EndpointJson(const EndpointSnapshot& e, bool broadcast) {
  Json j = EndpointHead(e, /*with_role=*/true);
  j["claim_ticket"] = e.claim_ticket ? Json(*e.claim_ticket) : Json(nullptr);
  j["held_ticket"] = e.held_ticket ? Json(*e.held_ticket) : Json(nullptr);
  j["finished"] = e.finished;
  j["counters"] = CountersJson(e.counters, broadcast);
  return j;
}

// SubscriberJson: a broadcast subscriber's entry (docs/tools.md, "subscribers").
Json SubscriberJson(const Snapshot& s, const EndpointSnapshot& e) {
  const Snapshot::Lag lag = s.LagOf(e);
  Json j = EndpointHead(e, /*with_role=*/false);
  j["cursor_position"] = e.cursor_position.value_or(0);
  j["cursor_seq"] = e.cursor_seq.value_or(0);
  j["lag_frames"] = lag.frames;
  j["lag_bytes"] = lag.bytes;
  j["behind"] = s.Behind(e);
  j["frames"] = e.counters.frames;
  j["bytes"] = e.counters.bytes;
  j["missed"] = e.counters.missed;
  j["lapped"] = e.counters.lapped;
  return j;
}

// BroadcastJson: the broadcast keys of the report: the policy, the publisher and every subscriber.
void AddBroadcastJson(const Snapshot& s, Json& j) {
  j["overflow"] = internal::OverflowName(s.overflow);
  j["evict_after_ns"] =
      s.evict_after_ns == internal::kNeverEvict ? Json(nullptr) : Json(s.evict_after_ns);
  j["oldest_position"] = s.read_position;
  j["oldest_seq"] = s.next_read_seq;
  j["publisher_waits_for"] = s.publisher_waits_for ? Json(*s.publisher_waits_for) : Json(nullptr);
  j["publisher"] = nullptr;
  j["subscribers"] = Json::array();
  for (const EndpointSnapshot& e : s.endpoints) {
    if (e.role == static_cast<std::uint32_t>(internal::Role::kProducer)) {
      j["publisher"] = {{"index", e.index},
                        {"pid", e.pid},
                        {"alive", e.alive},
                        {"sleeping", e.sleeping},
                        {"frames", e.counters.frames},
                        {"bytes", e.counters.bytes},
                        {"evicted", e.counters.evicted}};
    } else if (e.role == static_cast<std::uint32_t>(internal::Role::kConsumer)) {
      j["subscribers"].push_back(SubscriberJson(s, e));
    }
  }
}

Json FramesJson(const Snapshot& s) {
  Json frames = Json::array();
  for (const FrameSnapshot& f : s.frames) {
    Json j;
    j["seq"] = f.sequence;
    j["state"] = internal::FrameStateName(f.state);
    j["length"] = f.length;
    j["flags"] = f.flags;
    if (s.geometry.kind != Kind::kSpsc) j["producer"] = f.producer;
    j["preview_hex"] = Hex(f.preview);
    frames.push_back(std::move(j));
  }
  return frames;
}

Json RatesJson(const Rates& r) {
  Json j;
  j["interval_s"] = r.seconds;
  j["frames_in_per_s"] = r.frames_in;
  j["frames_out_per_s"] = r.frames_out;
  j["bytes_in_per_s"] = r.bytes_in;
  j["bytes_out_per_s"] = r.bytes_out;
  j["wakeups_per_s"] = r.wakeups;
  j["waits_per_s"] = r.waits;
  return j;
}

// ClosedByName: ControlBlock::closed as the JSON's `closed_by` (docs/tools.md).
const char* ClosedByName(std::uint32_t closed_by) {
  switch (closed_by) {
    case internal::kOpen:
      return "none";
    case internal::kClosedByClose:
      return "close";
    case internal::kClosedByFinish:
      return "finish";
    default:
      return "unknown";
  }
}

std::string SnapshotJson(const Snapshot& s, bool with_frames, const std::optional<Rates>& rates) {
  const internal::Geometry& g = s.geometry;
  const bool spsc = g.kind != Kind::kMpmc;  // a byte ring (SPSC, broadcast)
  Json j;
  j["name"] = s.name;
  j["kind"] = internal::KindName(g.kind);
  j["abi_version"] = s.abi_version;
  j["state"] = "ready";
  j["object_size"] = s.object_size;
  j["total_size"] = g.total_size;
  j["capacity"] = g.capacity;
  j["capacity_unit"] = spsc ? "bytes" : "slots";
  j["max_frame"] = g.max_frame;
  j["slot_stride"] = g.slot_stride;
  j["max_endpoints"] = g.max_endpoints;
  j["creator_uid"] = g.creator_uid;
  j["creator_pid"] = g.creator_pid;
  j["creation_time_ns"] = g.creation_time_ns;
  j["write_position"] = s.write_position;
  j["read_position"] = s.read_position;
  j["next_write_seq"] = s.next_write_seq;
  j["next_read_seq"] = s.next_read_seq;
  j[spsc ? "fill_bytes" : "fill_slots"] = s.fill;
  j["fill_ratio"] = g.capacity ? static_cast<double>(s.fill) / g.capacity : 0.0;
  j["closed"] = s.closed;
  j["close_time_ns"] = s.close_time_ns;
  j["closed_by"] = ClosedByName(s.closed_by);
  j["finishing"] = s.finishing;
  j["frames_held"] = s.frames_held;
  j["waiters"] = s.waiters;
  j["wake"]["data_ready"] = {{"word", s.data_ready_word}, {"waiting", s.data_ready_waiting}};
  j["wake"]["space_ready"] = {{"word", s.space_ready_word}, {"waiting", s.space_ready_waiting}};
  j["endpoints_alive"] = s.endpoints_alive;
  j["endpoints_dead"] = s.endpoints_dead;
  j["endpoints"] = Json::array();
  for (const EndpointSnapshot& e : s.endpoints) {
    j["endpoints"].push_back(EndpointJson(e, IsBroadcast(s)));
  }
  j["retired"] = CountersJson(s.retired, IsBroadcast(s));
  j["counters"] = CountersJson(s.counters, IsBroadcast(s), &s);
  if (IsBroadcast(s)) AddBroadcastJson(s, j);
  if (with_frames) {
    j["frames"] = FramesJson(s);
    j["frames_note"] = s.frames_note;
  }
  if (rates) j["rates"] = RatesJson(*rates);
  return Dump(j);
}

// ---- human output ----

std::string HumanBytes(double v) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (v >= 1024 && unit < 4) {
    v /= 1024;
    ++unit;
  }
  if (unit == 0) return absl::StrFormat("%.0f B", v);
  return absl::StrFormat("%.1f %s", v, kUnits[unit]);
}

std::string HumanRate(double v) {
  if (v >= 1e6) return absl::StrFormat("%.2fM", v / 1e6);
  if (v >= 1e4) return absl::StrFormat("%.1fk", v / 1e3);
  return absl::StrFormat("%.0f", v);
}

std::string WallTime(std::uint64_t ns) {
  if (ns == 0) return "-";
  const time_t secs = static_cast<time_t>(ns / 1000000000u);
  tm t;
  gmtime_r(&secs, &t);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%SZ", &t);
  return buf;
}

std::string Bar(double ratio, int width) {
  ratio = std::clamp(ratio, 0.0, 1.0);
  int full = static_cast<int>(ratio * width + 0.5);
  if (ratio > 0 && full == 0) full = 1;
  return absl::StrCat("[", std::string(full, '#'), std::string(width - full, '.'), "]");
}

// Table: left-aligned text columns, right-aligned numeric columns, two spaces apart.
class Table {
 public:
  explicit Table(std::vector<std::string> header, std::vector<bool> numeric)
      : numeric_(std::move(numeric)) {
    rows_.push_back(std::move(header));
  }
  void Add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  std::string Render(std::string_view indent) const {
    std::vector<std::size_t> width(numeric_.size(), 0);
    for (const auto& row : rows_) {
      for (std::size_t i = 0; i < row.size() && i < width.size(); ++i) {
        width[i] = std::max(width[i], row[i].size());
      }
    }
    std::string out;
    for (const auto& row : rows_) {
      std::string line(indent);
      for (std::size_t i = 0; i < row.size() && i < width.size(); ++i) {
        const std::string pad(width[i] - row[i].size(), ' ');
        const bool last = i + 1 == row.size();
        if (numeric_[i]) {
          absl::StrAppend(&line, pad, row[i]);
        } else {
          absl::StrAppend(&line, row[i], last ? "" : pad);
        }
        if (!last) line += "  ";
      }
      absl::StrAppend(&out, line, "\n");
    }
    return out;
  }

 private:
  std::vector<bool> numeric_;
  std::vector<std::vector<std::string>> rows_;
};

// Drained: nothing left to dequeue and (MPMC) no frame held, live or dead; broadcast: every live
// subscriber read everything.
bool Drained(const Snapshot& s) {
  if (s.geometry.kind != Kind::kBroadcast) return s.fill == 0 && s.frames_held == 0;
  return std::all_of(s.endpoints.begin(), s.endpoints.end(), [&](const EndpointSnapshot& e) {
    return !e.alive || !e.cursor_position || s.LagOf(e).frames == 0;
  });
}

std::string StateOf(const Snapshot& s) {
  if (s.closed) return Drained(s) ? "closed, drained" : "closed";
  if (s.endpoints_alive == 0 && s.endpoints_dead > 0) return "stale";
  if (s.endpoints_alive == 0) return "idle";
  return "open";
}

std::string CountersLine(const CounterValues& c) {
  return absl::StrCat("frames ", c.frames, "  bytes ", c.bytes, "  wakeups ", c.wakeups, "  waits ",
                      c.waits, "  abandoned ", c.abandoned, "  takeovers ", c.takeovers,
                      "  redelivered ", c.redelivered);
}

// EndpointsTable: the report's endpoint rows ("" without endpoints).
std::string EndpointsTable(const Snapshot& s) {
  std::string out;
  if (!s.endpoints.empty()) {
    Table t(
        {"#", "ROLE", "PID", "STATE", "GEN", "SLEEP", "FRAMES", "BYTES", "WAKEUPS", "WAITS",
         "ABANDONED", "TAKEOVERS", "REDELIVERED", "TICKET"},
        {true, false, true, false, true, false, true, true, true, true, true, true, true, false});
    for (const EndpointSnapshot& e : s.endpoints) {
      std::string ticket = "-";
      if (e.claim_ticket) ticket = absl::StrCat("claim ", *e.claim_ticket);
      if (e.held_ticket) ticket = absl::StrCat("held ", *e.held_ticket);
      if (e.finished) ticket = ticket == "-" ? "finished" : absl::StrCat(ticket, ", finished");
      t.Add({absl::StrCat(e.index), internal::RoleName(e.role), absl::StrCat(e.pid),
             e.alive ? "alive" : "DEAD", absl::StrCat(e.generation), e.sleeping ? "yes" : "-",
             absl::StrCat(e.counters.frames), absl::StrCat(e.counters.bytes),
             absl::StrCat(e.counters.wakeups), absl::StrCat(e.counters.waits),
             absl::StrCat(e.counters.abandoned), absl::StrCat(e.counters.takeovers),
             absl::StrCat(e.counters.redelivered), ticket});
    }
    absl::StrAppend(&out, t.Render("    "));
  }
  return out;
}

// PolicyLine: a broadcast channel's overflow policy and eviction bound.
std::string PolicyLine(const Snapshot& s) {
  std::string evict;
  if (s.overflow == internal::kOverflowBlock) {
    evict = s.evict_after_ns == internal::kNeverEvict
                ? ", never evicts"
                : absl::StrCat(", evicts a subscriber that blocks it for ",
                               absl::FormatDuration(absl::Nanoseconds(s.evict_after_ns)));
  }
  return absl::StrCat("  policy    ", internal::OverflowName(s.overflow), evict, "\n");
}

// SubscribersTable: a broadcast channel's publisher and subscribers, with each subscriber's
// cursor, lag and losses.
std::string SubscribersTable(const Snapshot& s) {
  std::string out = "  publisher ";
  bool publisher = false;
  for (const EndpointSnapshot& e : s.endpoints) {
    if (e.role != static_cast<std::uint32_t>(internal::Role::kProducer)) continue;
    publisher = true;
    absl::StrAppend(&out, "pid ", e.pid, " ", e.alive ? "alive" : "DEAD", ", evicted ",
                    e.counters.evicted, " subscribers");
  }
  if (!publisher) out += "none";
  if (s.publisher_waits_for) {
    absl::StrAppend(&out, ", blocked on subscriber #", *s.publisher_waits_for);
  }
  out += "\n";
  Table t({"#", "PID", "STATE", "CURSOR", "LAG", "LAG BYTES", "BEHIND", "FRAMES", "MISSED",
           "LAPPED", "SLEEP"},
          {true, true, false, true, true, true, false, true, true, true, false});
  int subscribers = 0;
  for (const EndpointSnapshot& e : s.endpoints) {
    if (e.role != static_cast<std::uint32_t>(internal::Role::kConsumer)) continue;
    ++subscribers;
    const Snapshot::Lag lag = s.LagOf(e);
    const char* behind = !s.Behind(e)                             ? "-"
                         : s.overflow == internal::kOverflowBlock ? "evicted"
                                                                  : "lapped";
    t.Add({absl::StrCat(e.index), absl::StrCat(e.pid), e.alive ? "alive" : "DEAD",
           absl::StrCat(e.cursor_seq.value_or(0)), absl::StrCat(lag.frames),
           absl::StrCat(lag.bytes), behind, absl::StrCat(e.counters.frames),
           absl::StrCat(e.counters.missed), absl::StrCat(e.counters.lapped),
           e.sleeping ? "yes" : "-"});
  }
  absl::StrAppend(&out, "  subscribers ", subscribers,
                  " (cursor = next sequence to read; lag in frames)\n");
  if (subscribers > 0) absl::StrAppend(&out, t.Render("    "));
  return out;
}

// FramesTable: the report's "frames" section (shm-inspect NAME --frames N).
std::string FramesTable(const Snapshot& s) {
  std::string out;
  absl::StrAppend(&out, "  frames    next ", s.frames.size(), " unread\n");
  if (!s.frames.empty()) {
    Table t({"SEQ", "STATE", "LENGTH", "FLAGS", "HEX", "TEXT"},
            {true, false, true, true, false, false});
    for (const FrameSnapshot& f : s.frames) {
      std::string hex = Hex(f.preview);
      if (f.preview.size() < f.length) hex += "...";
      t.Add({absl::StrCat(f.sequence), std::string(internal::FrameStateName(f.state)),
             absl::StrCat(f.length), absl::StrFormat("0x%x", f.flags), hex, Printable(f.preview)});
    }
    absl::StrAppend(&out, t.Render("    "));
  }
  if (!s.frames_note.empty()) absl::StrAppend(&out, "    note: ", s.frames_note, "\n");
  return out;
}

// CloseLine: how the stream ended (closed_by, when) or is ending (MPMC finishing); "" while
// open.
std::string CloseLine(const Snapshot& s) {
  if (s.closed) {
    const std::string how = s.closed_by == internal::kClosedByClose ? "by close()"
                            : s.closed_by == internal::kClosedByFinish
                                ? "by finish (every producer finished or died)"
                                : absl::StrCat("by an unknown value ", s.closed_by);
    return absl::StrCat("  closed    at ", WallTime(s.close_time_ns), " ", how, "\n");
  }
  if (s.finishing) {
    return "  closed    not yet: finishing (a producer called finish(); the stream ends when the "
           "others have finished or died)\n";
  }
  return "";
}

std::string Report(const Snapshot& s, bool with_frames, const std::optional<Rates>& rates) {
  const internal::Geometry& g = s.geometry;
  const bool spsc = g.kind != Kind::kMpmc;  // a byte ring (SPSC, broadcast)
  std::string out;
  absl::StrAppend(&out, s.name, "  ", internal::KindName(g.kind), "  abi ", s.abi_version, "  ",
                  StateOf(s), "  created ", WallTime(g.creation_time_ns), " by pid ", g.creator_pid,
                  " uid ", g.creator_uid, "\n");
  if (g.kind == Kind::kBroadcast) {
    absl::StrAppend(&out, "  ring      ", HumanBytes(static_cast<double>(g.capacity)),
                    " byte ring, max frame ", g.max_frame, " B, ", g.max_endpoints - 1,
                    " subscriber entries, object ", g.total_size, " B\n");
    absl::StrAppend(&out, PolicyLine(s));
  } else if (spsc) {
    absl::StrAppend(&out, "  ring      ", HumanBytes(static_cast<double>(g.capacity)),
                    " byte ring, max frame ", g.max_frame, " B, object ", g.total_size, " B\n");
  } else {
    absl::StrAppend(&out, "  ring      ", g.capacity, " slots of ", g.slot_stride, " B, max frame ",
                    g.max_frame, " B, ", g.max_endpoints, " endpoint entries, object ",
                    g.total_size, " B\n");
  }
  absl::StrAppend(&out, "  cursors   write seq ", s.next_write_seq, " (pos ", s.write_position,
                  IsBroadcast(s) ? ")  oldest held seq " : ")  read seq ", s.next_read_seq,
                  " (pos ", s.read_position, IsBroadcast(s) ? ")  held " : ")  unread ",
                  s.next_write_seq - s.next_read_seq, " frames\n");
  const double ratio = g.capacity ? static_cast<double>(s.fill) / g.capacity : 0.0;
  absl::StrAppend(&out, "  fill      ",
                  spsc ? absl::StrCat(HumanBytes(static_cast<double>(s.fill)), " / ",
                                      HumanBytes(static_cast<double>(g.capacity)))
                       : absl::StrCat(s.fill, " / ", g.capacity, " slots"),
                  absl::StrFormat("  %5.1f%%  ", ratio * 100), Bar(ratio, 30), "\n");
  absl::StrAppend(&out, "  wake      data_ready ", s.data_ready_waiting ? "WAITING" : "-",
                  " (word ", s.data_ready_word, ")  space_ready ",
                  s.space_ready_waiting ? "WAITING" : "-", " (word ", s.space_ready_word,
                  ")  sleepers ", s.waiters, "\n");
  absl::StrAppend(&out, CloseLine(s));
  absl::StrAppend(&out, "  frames    produced ", s.frames_produced, " (", s.bytes_produced,
                  " B)  consumed ", s.frames_consumed, " (", s.bytes_consumed, " B)\n");
  absl::StrAppend(&out, "  counters  ", CountersLine(s.counters), "\n");
  if (rates) {
    absl::StrAppend(&out, "  rates     in ", HumanRate(rates->frames_in), " frames/s ",
                    HumanBytes(rates->bytes_in), "/s  out ", HumanRate(rates->frames_out),
                    " frames/s ", HumanBytes(rates->bytes_out), "/s  wakeups ",
                    HumanRate(rates->wakeups), "/s  waits ", HumanRate(rates->waits), "/s\n");
  }
  absl::StrAppend(&out, "  endpoints ", s.endpoints_alive, " alive, ", s.endpoints_dead, " dead\n");
  absl::StrAppend(&out, EndpointsTable(s));
  if (IsBroadcast(s)) absl::StrAppend(&out, SubscribersTable(s));
  if (with_frames) absl::StrAppend(&out, FramesTable(s));
  return out;
}

// ---- commands ----

int List(bool all, bool json) {
  absl::StatusOr<std::vector<std::string>> entries = internal::ListShmObjects();
  if (!entries.ok()) {
    std::fprintf(stderr, "shm-inspect: %s\n",
                 std::string(internal::SV(entries.status().message())).c_str());
    return kExitRuntime;
  }
  Table t({"NAME", "KIND", "SIZE", "FILL", "ALIVE", "DEAD", "STATE"},
          {false, false, true, true, true, true, false});
  Json j = Json::array();
  for (const std::string& entry : *entries) {
    const std::string name = absl::StrCat("/", entry);
    absl::StatusOr<Snapshot> s = absl::InvalidArgumentError("name not valid for shmring");
    if (ValidateName(entry).ok()) s = internal::InspectChannel(name);
    if (s.ok()) {
      const bool spsc = s->geometry.kind != Kind::kMpmc;  // a byte ring
      const double ratio =
          s->geometry.capacity ? static_cast<double>(s->fill) / s->geometry.capacity : 0.0;
      t.Add({name, std::string(internal::KindName(s->geometry.kind)),
             HumanBytes(static_cast<double>(s->geometry.total_size)),
             absl::StrFormat("%.1f%%", ratio * 100), absl::StrCat(s->endpoints_alive),
             absl::StrCat(s->endpoints_dead), StateOf(*s)});
      j.push_back({{"name", name},
                   {"shmring", true},
                   {"kind", internal::KindName(s->geometry.kind)},
                   {"size", s->geometry.total_size},
                   {spsc ? "fill_bytes" : "fill_slots", s->fill},
                   {"fill_ratio", ratio},
                   {"endpoints_alive", s->endpoints_alive},
                   {"endpoints_dead", s->endpoints_dead},
                   {"closed", s->closed},
                   {"state", StateOf(*s)}});
    } else if (all) {
      // Message without the "shmring channel '/x': " prefix: the name is in its own column.
      std::string why(internal::SV(s.status().message()));
      const std::string prefix = internal::Prefix(name);
      if (why.compare(0, prefix.size(), prefix) == 0) why = why.substr(prefix.size());
      struct stat st;
      const std::string path = absl::StrCat(internal::kShmDirectory, "/", entry);
      const std::uint64_t size =
          stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
      t.Add({name, "-", HumanBytes(static_cast<double>(size)), "-", "-", "-",
             absl::StrCat("NOT SHMRING/UNREADABLE: ", why)});
      j.push_back({{"name", name}, {"shmring", false}, {"size", size}, {"error", why}});
    }
  }
  Emit(json ? Dump(j) : t.Render(""));
  return kExitOk;
}

// Watch prints a snapshot every `period` (`samples` times, or until killed), with rates from the
// second sample on.
int Watch(const std::string& name, const internal::DecodeOptions& options, bool with_frames,
          bool json, absl::Duration period, std::optional<std::uint64_t> samples) {
  const bool tty = isatty(STDOUT_FILENO) == 1;
  std::optional<Snapshot> previous;
  absl::Time previous_time;
  for (std::uint64_t n = 0; !samples || n < *samples; ++n) {
    if (n > 0) absl::SleepFor(period);
    absl::StatusOr<Snapshot> s = internal::InspectChannel(name, options);
    const absl::Time now = absl::Now();
    if (!s.ok()) return Fail(s.status());
    std::optional<Rates> rates;
    if (previous) {
      rates = ComputeRates(*previous, *s, absl::ToDoubleSeconds(now - previous_time));
    }
    if (json) {
      Emit(SnapshotJson(*s, with_frames, rates));
    } else {
      std::string text = Report(*s, with_frames, rates);
      if (!rates) text += "  rates     (after the next sample)\n";
      Emit(tty ? absl::StrCat("\x1b[H\x1b[2J", WallTime(internal::NowRealtimeNs()), "  every ",
                              absl::FormatDuration(period), "\n", text)
               : absl::StrCat(text, "\n"));
    }
    previous = std::move(*s);
    previous_time = now;
  }
  return kExitOk;
}

int Main(int argc, char** argv) {
  CLI::App app("shm-inspect: read-only live state of shmring segments", "shm-inspect");
  app.footer(kFooter);
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::vector<std::string> names;
  std::string interval_text, frames_text, samples_text;
  app.add_option("NAME", names, "a segment (without it: list the segments)");
  bool json = false, all = false, watch = false;
  app.add_flag("--json", json, "JSON instead of text");
  app.add_flag("--all", all, "list every object in /dev/shm, shmring or not");
  app.add_flag("--watch", watch, "refresh periodically, with rates");
  CLI::Option* interval =
      app.add_option("--interval", interval_text, "SECONDS between --watch samples (default 1)");
  CLI::Option* samples = app.add_option("--samples", samples_text, "N: --watch samples, then exit");
  CLI::Option* frames = app.add_option("--frames", frames_text, "N: the next N unread frames");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    Emit(app.help());
    return kExitOk;
  } catch (const CLI::ParseError& e) {
    return Usage(OneLine(e.what()));
  }
  std::optional<double> interval_s;
  std::optional<std::uint64_t> frame_count, sample_count;
  if (*interval && (!(interval_s = ParseSeconds(interval_text)) || *interval_s <= 0)) {
    return Usage("--interval needs a positive number of seconds");
  }
  if (*frames && !(frame_count = ParseCount(frames_text))) return Usage("--frames needs a count");
  if (*samples && (!(sample_count = ParseCount(samples_text)) || *sample_count == 0)) {
    return Usage("--samples needs a positive count");
  }
  if (names.size() > 1) return Usage("expected at most one NAME");
  if (names.empty()) {
    if (watch || *interval || *frames || *samples) return Usage("this option needs a NAME");
    return List(all, json);
  }
  if (absl::Status s = ValidateName(names[0]); !s.ok()) return Usage(internal::SV(s.message()));
  const std::string name = CanonicalName(names[0]);
  if (all) return Usage("--all applies to the listing (without NAME)");
  if ((*interval || *samples) && !watch) return Usage("--interval/--samples need --watch");
  internal::DecodeOptions options;
  options.max_frames = frame_count.value_or(0);
  options.preview_bytes = 16;
  if (watch) {
    return Watch(name, options, frame_count.has_value(), json,
                 absl::Seconds(interval_s.value_or(1.0)), sample_count);
  }
  absl::StatusOr<Snapshot> s = internal::InspectChannel(name, options);
  if (!s.ok()) return Fail(s.status());
  Emit(json ? SnapshotJson(*s, frame_count.has_value(), std::nullopt)
            : Report(*s, frame_count.has_value(), std::nullopt));
  return kExitOk;
}

}  // namespace
}  // namespace shmring::tools

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  return shmring::tools::Main(argc, argv);
}
