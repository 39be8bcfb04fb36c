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
#include <dirent.h>
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

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli.h"
#include "inspect.h"
#include "segment.h"
#include "shmring/channel.h"

namespace shmring::tools {
namespace {

using internal::CounterValues;
using internal::EndpointSnapshot;
using internal::FrameSnapshot;
using internal::Snapshot;

constexpr char kUsage[] =
    "usage:\n"
    "  shm-inspect [--all] [--json]          list shmring segments (--all: every object)\n"
    "  shm-inspect NAME                      everything about one segment, as a report\n"
    "  shm-inspect NAME --json               the same as one JSON object\n"
    "  shm-inspect NAME --watch [--interval SECONDS] [--samples N]\n"
    "                                        live refresh with rates\n"
    "  shm-inspect NAME --frames N           the next N unread frames\n"
    "Exit codes: 0 success, 1 usage error, 2 runtime error (not found, not shmring, corrupted,\n"
    "other ABI version, ...). Read-only: never writes, locks, wakes or attaches. See "
    "docs/tools.md.\n";

int Usage(std::string_view message) {
  std::fprintf(stderr, "shm-inspect: %.*s\n%s", static_cast<int>(message.size()), message.data(),
               kUsage);
  return kExitUsage;
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "shm-inspect: %s\n", std::string(internal::SV(status.message())).c_str());
  return kExitRuntime;
}

void Emit(const std::string& text) { (void)WriteAll(STDOUT_FILENO, text.data(), text.size()); }

// ---- JSON ----

// JsonWriter: a minimal writer for one compact JSON value (objects, arrays, strings, unsigned
// integers, doubles, booleans, null). Commas are inserted automatically.
class JsonWriter {
 public:
  JsonWriter& BeginObject() { return Open('{'); }
  JsonWriter& EndObject() { return Close('}'); }
  JsonWriter& BeginArray() { return Open('['); }
  JsonWriter& EndArray() { return Close(']'); }
  JsonWriter& Key(std::string_view key) {
    Separate();
    Quote(key);
    out_ += ':';
    after_key_ = true;
    return *this;
  }
  JsonWriter& Uint(std::uint64_t v) {
    Separate();
    absl::StrAppend(&out_, v);
    return *this;
  }
  JsonWriter& Double(double v) {
    Separate();
    absl::StrAppend(&out_, absl::StrFormat("%.6g", v));
    return *this;
  }
  JsonWriter& Bool(bool v) {
    Separate();
    out_ += v ? "true" : "false";
    return *this;
  }
  JsonWriter& Null() {
    Separate();
    out_ += "null";
    return *this;
  }
  JsonWriter& String(std::string_view s) {
    Separate();
    Quote(s);
    return *this;
  }
  const std::string& str() const { return out_; }

 private:
  JsonWriter& Open(char c) {
    Separate();
    out_ += c;
    first_.push_back(true);
    return *this;
  }
  JsonWriter& Close(char c) {
    out_ += c;
    first_.pop_back();
    return *this;
  }
  void Separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_.empty()) {
      if (!first_.back()) out_ += ',';
      first_.back() = false;
    }
  }
  void Quote(std::string_view s) {
    out_ += '"';
    for (unsigned char c : s) {
      switch (c) {
        case '"':
          out_ += "\\\"";
          break;
        case '\\':
          out_ += "\\\\";
          break;
        case '\n':
          out_ += "\\n";
          break;
        case '\t':
          out_ += "\\t";
          break;
        default:
          if (c < 0x20 || c >= 0x7f) {
            absl::StrAppend(&out_, absl::StrFormat("\\u%04x", c));  // bytes as Latin-1
          } else {
            out_ += static_cast<char>(c);
          }
      }
    }
    out_ += '"';
  }

  std::string out_;
  std::vector<bool> first_;
  bool after_key_ = false;
};

// With `channel`, the channel totals also get the frames/bytes split by role.
void CountersJson(JsonWriter& j, const CounterValues& c, const Snapshot* channel = nullptr) {
  j.BeginObject();
  j.Key("frames").Uint(c.frames);
  j.Key("bytes").Uint(c.bytes);
  if (channel != nullptr) {
    j.Key("frames_produced").Uint(channel->frames_produced);
    j.Key("bytes_produced").Uint(channel->bytes_produced);
    j.Key("frames_consumed").Uint(channel->frames_consumed);
    j.Key("bytes_consumed").Uint(channel->bytes_consumed);
  }
  j.Key("wakeups").Uint(c.wakeups);
  j.Key("waits").Uint(c.waits);
  j.Key("abandoned").Uint(c.abandoned);
  j.Key("takeovers").Uint(c.takeovers);
  j.Key("redelivered").Uint(c.redelivered);
  j.EndObject();
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
  std::uint64_t in = 0, out = 0;
  for (const EndpointSnapshot& e : now.endpoints) {
    std::uint64_t grown = e.counters.bytes;
    if (auto it = previous.find(e.index);
        it != previous.end() && it->second->generation == e.generation) {
      grown = e.counters.bytes >= it->second->counters.bytes
                  ? e.counters.bytes - it->second->counters.bytes
                  : 0;
    }
    if (e.role == static_cast<std::uint32_t>(internal::Role::kProducer)) in += grown;
    if (e.role == static_cast<std::uint32_t>(internal::Role::kConsumer)) out += grown;
  }
  r.bytes_in = seconds > 0 ? static_cast<double>(in) / seconds : 0;
  r.bytes_out = seconds > 0 ? static_cast<double>(out) / seconds : 0;
  return r;
}

std::string SnapshotJson(const Snapshot& s, bool with_frames, const std::optional<Rates>& rates) {
  const internal::Geometry& g = s.geometry;
  const bool spsc = g.kind == Kind::kSpsc;
  JsonWriter j;
  j.BeginObject();
  j.Key("name").String(s.name);
  j.Key("kind").String(internal::KindName(g.kind));
  j.Key("abi_version").Uint(s.abi_version);
  j.Key("state").String("ready");
  j.Key("object_size").Uint(s.object_size);
  j.Key("total_size").Uint(g.total_size);
  j.Key("capacity").Uint(g.capacity);
  j.Key("capacity_unit").String(spsc ? "bytes" : "slots");
  j.Key("max_frame").Uint(g.max_frame);
  j.Key("slot_stride").Uint(g.slot_stride);
  j.Key("max_endpoints").Uint(g.max_endpoints);
  j.Key("creator_uid").Uint(g.creator_uid);
  j.Key("creator_pid").Uint(g.creator_pid);
  j.Key("creation_time_ns").Uint(g.creation_time_ns);
  j.Key("write_position").Uint(s.write_position);
  j.Key("read_position").Uint(s.read_position);
  j.Key("next_write_seq").Uint(s.next_write_seq);
  j.Key("next_read_seq").Uint(s.next_read_seq);
  j.Key(spsc ? "fill_bytes" : "fill_slots").Uint(s.fill);
  j.Key("fill_ratio").Double(g.capacity ? static_cast<double>(s.fill) / g.capacity : 0.0);
  j.Key("closed").Bool(s.closed);
  j.Key("close_time_ns").Uint(s.close_time_ns);
  j.Key("closed_by")
      .String(s.closed_by == internal::kClosedByClose    ? "close"
              : s.closed_by == internal::kClosedByFinish ? "finish"
              : s.closed_by == internal::kOpen           ? "none"
                                                         : "unknown");
  j.Key("finishing").Bool(s.finishing);
  j.Key("frames_held").Uint(s.frames_held);
  j.Key("waiters").Uint(s.waiters);
  j.Key("wake").BeginObject();
  j.Key("data_ready").BeginObject();
  j.Key("word").Uint(s.data_ready_word).Key("waiting").Bool(s.data_ready_waiting);
  j.EndObject();
  j.Key("space_ready").BeginObject();
  j.Key("word").Uint(s.space_ready_word).Key("waiting").Bool(s.space_ready_waiting);
  j.EndObject();
  j.EndObject();
  j.Key("endpoints_alive").Uint(s.endpoints_alive);
  j.Key("endpoints_dead").Uint(s.endpoints_dead);
  j.Key("endpoints").BeginArray();
  for (const EndpointSnapshot& e : s.endpoints) {
    j.BeginObject();
    j.Key("index").Uint(e.index);
    j.Key("role").String(internal::RoleName(e.role));
    j.Key("pid").Uint(e.pid);
    j.Key("alive").Bool(e.alive);
    j.Key("generation").Uint(e.generation);
    j.Key("attach_time_ns").Uint(e.attach_time_ns);
    j.Key("sleeping").Bool(e.sleeping);
    j.Key("claim_ticket");
    if (e.claim_ticket) {
      j.Uint(*e.claim_ticket);
    } else {
      j.Null();
    }
    j.Key("held_ticket");
    if (e.held_ticket) {
      j.Uint(*e.held_ticket);
    } else {
      j.Null();
    }
    j.Key("finished").Bool(e.finished);
    j.Key("counters");
    CountersJson(j, e.counters);
    j.EndObject();
  }
  j.EndArray();
  j.Key("retired");
  CountersJson(j, s.retired);
  j.Key("counters");
  CountersJson(j, s.counters, &s);
  if (with_frames) {
    j.Key("frames").BeginArray();
    for (const FrameSnapshot& f : s.frames) {
      j.BeginObject();
      j.Key("seq").Uint(f.sequence);
      j.Key("state").String(internal::FrameStateName(f.state));
      j.Key("length").Uint(f.length);
      j.Key("flags").Uint(f.flags);
      if (!spsc) j.Key("producer").Uint(f.producer);
      j.Key("preview_hex").String(Hex(f.preview));
      j.EndObject();
    }
    j.EndArray();
    j.Key("frames_note").String(s.frames_note);
  }
  if (rates) {
    j.Key("rates").BeginObject();
    j.Key("interval_s").Double(rates->seconds);
    j.Key("frames_in_per_s").Double(rates->frames_in);
    j.Key("frames_out_per_s").Double(rates->frames_out);
    j.Key("bytes_in_per_s").Double(rates->bytes_in);
    j.Key("bytes_out_per_s").Double(rates->bytes_out);
    j.Key("wakeups_per_s").Double(rates->wakeups);
    j.Key("waits_per_s").Double(rates->waits);
    j.EndObject();
  }
  j.EndObject();
  return j.str() + "\n";
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

std::string StateOf(const Snapshot& s) {
  // Drained: nothing left to dequeue and (MPMC) no frame held, live or dead.
  if (s.closed) return s.fill == 0 && s.frames_held == 0 ? "closed, drained" : "closed";
  if (s.endpoints_alive == 0 && s.endpoints_dead > 0) return "stale";
  if (s.endpoints_alive == 0) return "idle";
  return "open";
}

std::string CountersLine(const CounterValues& c) {
  return absl::StrCat("frames ", c.frames, "  bytes ", c.bytes, "  wakeups ", c.wakeups, "  waits ",
                      c.waits, "  abandoned ", c.abandoned, "  takeovers ", c.takeovers,
                      "  redelivered ", c.redelivered);
}

std::string Report(const Snapshot& s, bool with_frames, const std::optional<Rates>& rates) {
  const internal::Geometry& g = s.geometry;
  const bool spsc = g.kind == Kind::kSpsc;
  std::string out;
  absl::StrAppend(&out, s.name, "  ", internal::KindName(g.kind), "  abi ", s.abi_version, "  ",
                  StateOf(s), "  created ", WallTime(g.creation_time_ns), " by pid ", g.creator_pid,
                  " uid ", g.creator_uid, "\n");
  if (spsc) {
    absl::StrAppend(&out, "  ring      ", HumanBytes(static_cast<double>(g.capacity)),
                    " byte ring, max frame ", g.max_frame, " B, object ", g.total_size, " B\n");
  } else {
    absl::StrAppend(&out, "  ring      ", g.capacity, " slots of ", g.slot_stride, " B, max frame ",
                    g.max_frame, " B, ", g.max_endpoints, " endpoint entries, object ",
                    g.total_size, " B\n");
  }
  absl::StrAppend(&out, "  cursors   write seq ", s.next_write_seq, " (pos ", s.write_position,
                  ")  read seq ", s.next_read_seq, " (pos ", s.read_position, ")  unread ",
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
  if (s.closed) absl::StrAppend(&out, "  closed    at ", WallTime(s.close_time_ns), "\n");
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
  if (!s.endpoints.empty()) {
    Table t(
        {"#", "ROLE", "PID", "STATE", "GEN", "SLEEP", "FRAMES", "BYTES", "WAKEUPS", "WAITS",
         "ABANDONED", "TAKEOVERS", "REDELIVERED", "TICKET"},
        {true, false, true, false, true, false, true, true, true, true, true, true, true, false});
    for (const EndpointSnapshot& e : s.endpoints) {
      std::string ticket = "-";
      if (e.claim_ticket) ticket = absl::StrCat("claim ", *e.claim_ticket);
      if (e.held_ticket) ticket = absl::StrCat("held ", *e.held_ticket);
      t.Add({absl::StrCat(e.index), internal::RoleName(e.role), absl::StrCat(e.pid),
             e.alive ? "alive" : "DEAD", absl::StrCat(e.generation), e.sleeping ? "yes" : "-",
             absl::StrCat(e.counters.frames), absl::StrCat(e.counters.bytes),
             absl::StrCat(e.counters.wakeups), absl::StrCat(e.counters.waits),
             absl::StrCat(e.counters.abandoned), absl::StrCat(e.counters.takeovers),
             absl::StrCat(e.counters.redelivered), ticket});
    }
    absl::StrAppend(&out, t.Render("    "));
  }
  if (with_frames) {
    absl::StrAppend(&out, "  frames    next ", s.frames.size(), " unread\n");
    if (!s.frames.empty()) {
      Table t({"SEQ", "STATE", "LENGTH", "FLAGS", "HEX", "TEXT"},
              {true, false, true, true, false, false});
      for (const FrameSnapshot& f : s.frames) {
        std::string hex = Hex(f.preview);
        if (f.preview.size() < f.length) hex += "...";
        t.Add({absl::StrCat(f.sequence), std::string(internal::FrameStateName(f.state)),
               absl::StrCat(f.length), absl::StrFormat("0x%x", f.flags), hex,
               Printable(f.preview)});
      }
      absl::StrAppend(&out, t.Render("    "));
    }
    if (!s.frames_note.empty()) absl::StrAppend(&out, "    note: ", s.frames_note, "\n");
  }
  return out;
}

// ---- commands ----

int List(bool all, bool json) {
  DIR* dir = opendir("/dev/shm");
  if (dir == nullptr) {
    std::fprintf(stderr, "shm-inspect: cannot list /dev/shm: %s\n", std::strerror(errno));
    return kExitRuntime;
  }
  std::vector<std::string> entries;
  while (dirent* e = readdir(dir)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") entries.push_back(n);
  }
  closedir(dir);
  std::sort(entries.begin(), entries.end());
  Table t({"NAME", "KIND", "SIZE", "FILL", "ALIVE", "DEAD", "STATE"},
          {false, false, true, true, true, true, false});
  JsonWriter j;
  j.BeginArray();
  for (const std::string& entry : entries) {
    const std::string name = absl::StrCat("/", entry);
    absl::StatusOr<Snapshot> s = absl::InvalidArgumentError("name not valid for shmring");
    if (ValidateName(entry).ok()) s = internal::InspectChannel(name);
    if (s.ok()) {
      const bool spsc = s->geometry.kind == Kind::kSpsc;
      const double ratio =
          s->geometry.capacity ? static_cast<double>(s->fill) / s->geometry.capacity : 0.0;
      t.Add({name, std::string(internal::KindName(s->geometry.kind)),
             HumanBytes(static_cast<double>(s->geometry.total_size)),
             absl::StrFormat("%.1f%%", ratio * 100), absl::StrCat(s->endpoints_alive),
             absl::StrCat(s->endpoints_dead), StateOf(*s)});
      j.BeginObject();
      j.Key("name").String(name);
      j.Key("shmring").Bool(true);
      j.Key("kind").String(internal::KindName(s->geometry.kind));
      j.Key("size").Uint(s->geometry.total_size);
      j.Key(spsc ? "fill_bytes" : "fill_slots").Uint(s->fill);
      j.Key("fill_ratio").Double(ratio);
      j.Key("endpoints_alive").Uint(s->endpoints_alive);
      j.Key("endpoints_dead").Uint(s->endpoints_dead);
      j.Key("closed").Bool(s->closed);
      j.Key("state").String(StateOf(*s));
      j.EndObject();
    } else if (all) {
      // Message without the "shmring channel '/x': " prefix: the name is in its own column.
      std::string why(internal::SV(s.status().message()));
      const std::string prefix = internal::Prefix(name);
      if (why.compare(0, prefix.size(), prefix) == 0) why = why.substr(prefix.size());
      struct stat st;
      const std::string path = absl::StrCat("/dev/shm/", entry);
      const std::uint64_t size =
          stat(path.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
      t.Add({name, "-", HumanBytes(static_cast<double>(size)), "-", "-", "-",
             absl::StrCat("NOT SHMRING/UNREADABLE: ", why)});
      j.BeginObject();
      j.Key("name").String(name);
      j.Key("shmring").Bool(false);
      j.Key("size").Uint(size);
      j.Key("error").String(why);
      j.EndObject();
    }
  }
  j.EndArray();
  Emit(json ? j.str() + "\n" : t.Render(""));
  return kExitOk;
}

int Main(int argc, char** argv) {
  std::optional<std::string> name;
  bool json = false, watch = false, all = false;
  std::optional<double> interval;
  std::optional<std::uint64_t> frames, samples;
  for (int i = 1; i < argc; ++i) {
    std::string word = argv[i];
    std::string value;
    bool has_value = false;
    if (word.size() > 2 && word.substr(0, 2) == "--") {
      if (const auto eq = word.find('='); eq != std::string::npos) {
        value = word.substr(eq + 1);
        word = word.substr(0, eq);
        has_value = true;
      }
    }
    auto take = [&]() -> std::optional<std::string> {
      if (has_value) return value;
      if (i + 1 >= argc) return std::nullopt;
      return std::string(argv[++i]);
    };
    if (word == "-h" || word == "--help") {
      Emit(kUsage);
      return kExitOk;
    } else if (word == "--json" && !has_value) {
      json = true;
    } else if (word == "--watch" && !has_value) {
      watch = true;
    } else if (word == "--all" && !has_value) {
      all = true;
    } else if (word == "--interval") {
      auto v = take();
      if (!v || !(interval = ParseSeconds(*v)) || *interval <= 0) {
        return Usage("--interval needs a positive number of seconds");
      }
    } else if (word == "--frames") {
      auto v = take();
      if (!v || !(frames = ParseCount(*v))) return Usage("--frames needs a count");
    } else if (word == "--samples") {
      auto v = take();
      if (!v || !(samples = ParseCount(*v)) || *samples == 0) {
        return Usage("--samples needs a positive count");
      }
    } else if (!word.empty() && word[0] == '-') {
      return Usage(absl::StrCat("unknown option '", word, "'"));
    } else if (name) {
      return Usage("expected at most one NAME");
    } else {
      if (absl::Status s = ValidateName(word); !s.ok()) return Usage(internal::SV(s.message()));
      name = CanonicalName(word);
    }
  }
  if (!name) {
    if (watch || interval || frames || samples) return Usage("this option needs a NAME");
    return List(all, json);
  }
  if (all) return Usage("--all applies to the listing (without NAME)");
  if ((interval || samples) && !watch) return Usage("--interval/--samples need --watch");
  internal::DecodeOptions options;
  options.max_frames = frames.value_or(0);
  options.preview_bytes = 16;
  if (!watch) {
    absl::StatusOr<Snapshot> s = internal::InspectChannel(*name, options);
    if (!s.ok()) return Fail(s.status());
    Emit(json ? SnapshotJson(*s, frames.has_value(), std::nullopt)
              : Report(*s, frames.has_value(), std::nullopt));
    return kExitOk;
  }
  const absl::Duration period = absl::Seconds(interval.value_or(1.0));
  const bool tty = isatty(STDOUT_FILENO) == 1;
  std::optional<Snapshot> previous;
  absl::Time previous_time;
  for (std::uint64_t n = 0; !samples || n < *samples; ++n) {
    if (n > 0) absl::SleepFor(period);
    absl::StatusOr<Snapshot> s = internal::InspectChannel(*name, options);
    const absl::Time now = absl::Now();
    if (!s.ok()) return Fail(s.status());
    std::optional<Rates> rates;
    if (previous) {
      rates = ComputeRates(*previous, *s, absl::ToDoubleSeconds(now - previous_time));
    }
    if (json) {
      Emit(SnapshotJson(*s, frames.has_value(), rates));
    } else {
      std::string text = Report(*s, frames.has_value(), rates);
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

}  // namespace
}  // namespace shmring::tools

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  return shmring::tools::Main(argc, argv);
}
