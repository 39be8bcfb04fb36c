// shmring_bench.cc — shmring-bench: cross-process latency and throughput of shmring against the
// mechanisms users would otherwise pick, and against the physical floor.
//
//   shmring-bench                      the full comparison: table + PNG plot (--plot FILE)
//   shmring-bench latency    --transport T --size BYTES [--count N] [--wait spin|block|hybrid]
//                            [--rate HZ] [--cpus A,B] [--json]
//   shmring-bench throughput --transport T --size BYTES [--count N] [--wait W] [--cpus A,B]
//   [--json]
//   ... --capacity BYTES               the ring size of shmring-spsc, shmring-mpmc and naive
//   ... --against T2                   T and T2 side by side (alternating blocks), both results
//
// Method. Two processes (the parent, side A, and a fork()ed child, side B), each pinned to its
// own CPU. Latency: A sends a message, B echoes it, A times the round trip with CLOCK_MONOTONIC
// and records RTT/2 as the one-way latency; a warm-up is discarded. With --rate, A sends on a
// fixed schedule and each sample is measured from the *scheduled* send time, so a stall delays
// every later sample instead of hiding (no coordinated omission). Throughput: A streams N
// messages one way; B checks that every message carries the next sequence number (a loss or
// reordering fails the run) and acknowledges the last one; A times from the first send to the
// acknowledgement. Messages carry their sequence number in the first 8 bytes. A paired run
// (--against, and the goal ratios of the full comparison) sets up both transports, forks once, and
// alternates between them in blocks, each block timed on its own, so a shared machine that
// changes speed mid-run slows both sides of the ratio alike.
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "mpmc_fan.h"
#include "nlohmann/json.hpp"
#include "transport.h"

namespace shmring::bench {
namespace {

constexpr std::size_t kFullSizes[] = {64, 4096, 65536};
// shmring-spsc streams publish once per this many frames (commit_deferred + commit), the way a
// producer of bursts uses the library; --batch 1 publishes every frame.
constexpr std::size_t kDefaultBatch = 32;
// The full comparison's small ring: shmring-spsc spin 64 B latency and its goals are reported at
// this capacity as well as at the default (kDefaultRingBytes).
constexpr std::uint64_t kLatencyRingBytes = 4096;

// ---- process state for the signal handler ----
pid_t g_parent_pid = 0;
// The side-B processes of the run in progress (a fan-out run has one per subscriber).
volatile pid_t g_children[kMaxSubscribers] = {};

void OnSignal(int sig) {
  if (getpid() != g_parent_pid) _exit(128 + sig);
  for (const volatile pid_t& child : g_children) {
    if (child > 0) kill(child, SIGKILL);
  }
  RemoveRegisteredNames();
  if (sig == SIGALRM) {
    static const char msg[] = "shmring-bench: a run exceeded its time limit (--timeout); aborted\n";
    (void)!write(STDERR_FILENO, msg, sizeof(msg) - 1);
    _exit(1);
  }
  _exit(128 + sig);
}

void InstallSignalHandlers() {
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGALRM}) sigaction(sig, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a dead peer shows as EPIPE on pipe/tcp writes
}

bool PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;
}

// ---- options ----
struct Options {
  std::string mode;  // "" (full comparison), "latency", "throughput"
  std::string transport;
  std::string against;  // --against: a second transport, measured side by side
  std::size_t size = 64;
  bool size_given = false;
  std::uint64_t count = 0;   // 0: default for the mode and size
  std::uint64_t warmup = 0;  // 0: default
  Wait wait = Wait::kHybrid;
  bool wait_given = false;
  double rate = 0;  // Hz; 0: back-to-back ping-pong
  int cpu_a = -1;
  int cpu_b = -1;
  bool json = false;
  std::string plot = "shmring-bench-latency.png";
  int timeout_s = 60;  // per run
  std::size_t batch = kDefaultBatch;
  std::uint64_t capacity = 0;  // --capacity: each ring's bytes (0: kDefaultRingBytes)
  int producers = 0;  // shmring-mpmc throughput with several processes per side (0: not given)
  int consumers = 0;
  int subscribers = 0;  // --subscribers: fan-out transports' subscriber processes (0: not given)
  std::vector<int> allowed_cpus;
};

// kUsage: the help text before the table of transports.
constexpr char kUsage[] =
    "usage:\n"
    "  shmring-bench [--plot FILE] [--cpus A,B] [--json]\n"
    "      the full comparison: every transport at 64 B, 4 KiB and 64 KiB, kernel ones\n"
    "      blocking, shmring spinning and blocking (spsc spin 64 B also at a 4 KiB\n"
    "      ring); the fan-out transports with 1 and 4 subscribers; a table, the goals\n"
    "      (each at a stated ring) and a PNG plot\n"
    "  shmring-bench latency --transport T --size BYTES [--count N] [--warmup N]\n"
    "      [--wait spin|block|hybrid] [--rate HZ] [--capacity BYTES] [--against T2]\n"
    "      [--cpus A,B] [--json]\n"
    "  shmring-bench throughput --transport T --size BYTES [--count N] [--warmup N]\n"
    "      [--wait spin|block|hybrid] [--batch N] [--capacity BYTES] [--against T2]\n"
    "      [--cpus A,B] [--json]\n"
    "  shmring-bench latency|throughput --transport shmring-broadcast --size BYTES\n"
    "      --subscribers N [--against shmring-spsc-fanout] [...]\n"
    "      one publisher, N subscriber processes\n"
    "  shmring-bench throughput --transport shmring-mpmc --size BYTES\n"
    "      --producers P --consumers C [--count N] [--wait W] [--json]\n"
    "      P producer and C consumer processes on one channel (not pinned)\n"
    "options:\n"
    "  --size       message bytes, >= 8 (suffixes K/KiB, M/MiB)\n"
    "  --capacity BYTES\n"
    "               each direction's ring of shmring-spsc, shmring-mpmc and naive\n"
    "               (fan-out transports: the publisher's rings, not the replies')\n"
    "               (both sides of --against): a power of two, 4 KiB .. 1 GiB\n"
    "               (suffixes K, M; default 1 MiB). shmring-mpmc gets as many\n"
    "               slots (a power of two) as fit in it (without --capacity: at\n"
    "               least 16). The ring must hold the message: spsc, size + 16\n"
    "               <= BYTES / 2; mpmc and naive, 2 slots.\n"
    "               Smaller rings keep fewer cache lines in flight: lower latency,\n"
    "               shorter bursts absorbed\n"
    "  --wait       how shmring-* endpoints wait (default hybrid, the library's);\n"
    "               kernel transports always block, floor and naive always spin\n"
    "  --rate HZ    paced latency: send on a fixed schedule, measure from it\n"
    "  --cpus A,B   CPUs of the two processes (default: the first two allowed)\n"
    "  --against T2 measure T and T2 side by side: the same two processes alternate\n"
    "               between them in blocks (at most 1000 round trips or ~8 MiB of\n"
    "               stream, at most a quarter of the count), so both see the same\n"
    "               machine; prints both results (--json: two objects, each with\n"
    "               paired_with) and, without --json, their ratio; --timeout then\n"
    "               covers the pair\n"
    "  --json       one JSON object per result\n"
    "  --timeout S  abort a run that takes longer (default 60)\n"
    "  --batch N    shmring-spsc and fan-out throughput: publish every N frames\n"
    "               (commit_deferred and release_deferred in between; default 32;\n"
    "               fan-out: every subscriber releases alike); 1: commit() and\n"
    "               release() publish every frame\n"
    "  --producers P, --consumers C\n"
    "               shmring-mpmc throughput: P producer processes each stream N\n"
    "               frames to C competing consumer processes (1..32 each); every\n"
    "               frame checked: exactly once, in order per producer\n"
    "  --subscribers N\n"
    "               fan-out transports (shmring-spsc-fanout, shmring-broadcast): N\n"
    "               subscriber processes (1..16, default 1) each receive every\n"
    "               message and reply on a channel of their own; latency per\n"
    "               subscriber and of the slowest, msgs/s per subscriber and in\n"
    "               total. One subscriber is pinned to the second CPU; more are not\n"
    "               pinned (with more processes than CPUs, use --wait block or\n"
    "               hybrid)\n"
    "transports:\n";

void Usage(FILE* out) {
  std::fputs(kUsage, out);
  for (const TransportInfo& t : Transports()) {
    std::fprintf(out, "  %-19s %s%s%s\n", std::string(t.name).c_str(),
                 std::string(t.description).c_str(),
                 !t.latency ? " (throughput only)" : (!t.throughput ? " (latency only)" : ""),
                 t.fanout ? " (--subscribers N)" : "");
  }
}

bool ParseSize(std::string_view s, std::size_t* out) {
  char* end = nullptr;
  const std::string str(s);
  const unsigned long long v = std::strtoull(str.c_str(), &end, 10);
  if (end == str.c_str()) return false;
  const std::string_view suffix(end);
  std::size_t mult = 1;
  if (suffix.empty() || suffix == "B") {
  } else if (suffix == "K" || suffix == "k" || suffix == "KiB" || suffix == "KB") {
    mult = 1024;
  } else if (suffix == "M" || suffix == "MiB" || suffix == "MB") {
    mult = 1024 * 1024;
  } else {
    return false;
  }
  *out = static_cast<std::size_t>(v) * mult;
  return true;
}

bool ParseWait(std::string_view s, Wait* out) {
  if (s == "spin")
    *out = Wait::kSpin;
  else if (s == "block")
    *out = Wait::kBlock;
  else if (s == "hybrid")
    *out = Wait::kHybrid;
  else
    return false;
  return true;
}

bool Offers(const TransportInfo& info, std::string_view mode) {
  return mode == "latency" ? info.latency : info.throughput;
}

// Returns 0 to go on, or an exit code.
// BadArgument reports a usage error in one line: exit code 2 (bench/bench_test.py checks it).
int BadArgument(const std::string& message) {
  std::fprintf(stderr, "shmring-bench: %s (see shmring-bench --help)\n", message.c_str());
  return 2;
}

// ---- one option's value ----
// Each takes the value of its option into *o; returns the usage error ("" if the value is good).

std::string TakeTransport(const std::string& v, Options* o) {
  o->transport = v;
  return "";
}
std::string TakeAgainst(const std::string& v, Options* o) {
  o->against = v;
  return "";
}
std::string TakePlot(const std::string& v, Options* o) {
  o->plot = v;
  return "";
}

std::string TakeSize(const std::string& v, Options* o) {
  if (!ParseSize(v, &o->size) || o->size < 8 || o->size > (std::size_t{64} << 20)) {
    return "bad --size '" + v + "' (8 bytes .. 64 MiB)";
  }
  o->size_given = true;
  return "";
}

std::string TakeCapacity(const std::string& v, Options* o) {
  if (!ParseSize(v, &o->capacity) || o->capacity < 4096 || o->capacity > (std::uint64_t{1} << 30) ||
      (o->capacity & (o->capacity - 1)) != 0) {
    return "bad --capacity '" + v + "' (a power of two, 4 KiB .. 1 GiB)";
  }
  return "";
}

// TakeCounter: --count (at least 1) or --warmup (0 allowed: the default).
std::string TakeCounter(const std::string& v, const char* name, std::uint64_t min,
                        std::uint64_t* out) {
  char* end = nullptr;
  const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || n < min) return std::string("bad --") + name + " '" + v + "'";
  *out = n;
  return "";
}
std::string TakeCount(const std::string& v, Options* o) {
  return TakeCounter(v, "count", 1, &o->count);
}
std::string TakeWarmup(const std::string& v, Options* o) {
  return TakeCounter(v, "warmup", 0, &o->warmup);
}

std::string TakeWait(const std::string& v, Options* o) {
  if (!ParseWait(v, &o->wait)) return "bad --wait '" + v + "' (spin, block or hybrid)";
  o->wait_given = true;
  return "";
}

std::string TakeRate(const std::string& v, Options* o) {
  o->rate = std::strtod(v.c_str(), nullptr);
  return o->rate > 0 && o->rate <= 1e8 ? "" : "bad --rate '" + v + "' (Hz, > 0)";
}

std::string TakeCpus(const std::string& v, Options* o) {
  if (std::sscanf(v.c_str(), "%d,%d", &o->cpu_a, &o->cpu_b) != 2 || o->cpu_a < 0 || o->cpu_b < 0) {
    return "bad --cpus '" + v + "' (A,B)";
  }
  return "";
}

std::string TakeBatch(const std::string& v, Options* o) {
  o->batch = std::max<std::size_t>(1, std::strtoull(v.c_str(), nullptr, 10));
  return "";
}

// TakeProcesses: --producers / --consumers, 1..32.
std::string TakeProcesses(const std::string& v, const char* name, int* out) {
  const int n = std::atoi(v.c_str());
  if (n < 1 || n > 32) return std::string("bad --") + name + " '" + v + "' (1..32)";
  *out = n;
  return "";
}
std::string TakeProducers(const std::string& v, Options* o) {
  return TakeProcesses(v, "producers", &o->producers);
}
std::string TakeConsumers(const std::string& v, Options* o) {
  return TakeProcesses(v, "consumers", &o->consumers);
}

std::string TakeSubscribers(const std::string& v, Options* o) {
  const int n = std::atoi(v.c_str());
  if (n < 1 || n > kMaxSubscribers) {
    return "bad --subscribers '" + v + "' (1.." + std::to_string(kMaxSubscribers) + ")";
  }
  o->subscribers = n;
  return "";
}

std::string TakeTimeout(const std::string& v, Options* o) {
  o->timeout_s = std::atoi(v.c_str());
  if (o->timeout_s <= 0) o->timeout_s = 60;
  return "";
}

// kValueOptions: the options that take a value, in the order their values are checked.
struct ValueOption {
  const char* name;
  std::string (*take)(const std::string& value, Options* o);
};
constexpr ValueOption kValueOptions[] = {
    {"transport", TakeTransport}, {"against", TakeAgainst},   {"plot", TakePlot},
    {"size", TakeSize},           {"capacity", TakeCapacity}, {"count", TakeCount},
    {"warmup", TakeWarmup},       {"wait", TakeWait},         {"rate", TakeRate},
    {"cpus", TakeCpus},           {"batch", TakeBatch},       {"producers", TakeProducers},
    {"consumers", TakeConsumers}, {"timeout", TakeTimeout},   {"subscribers", TakeSubscribers},
};

// ParseOptions parses the command line with CLI11 and checks each option's value. Returns 0, -1
// after --help, or 2 (a usage error, reported in one line).
int ParseOptions(int argc, char** argv, Options* o) {
  CLI::App app("shmring-bench", "shmring-bench");
  app.set_help_flag();  // our own usage text (Usage), not CLI11's
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  bool help = false;
  std::vector<std::string> mode;
  std::string values[std::size(kValueOptions)];
  CLI::Option* given[std::size(kValueOptions)];
  app.add_flag("-h,--help", help);
  app.add_flag("--json", o->json);
  app.add_option("MODE", mode);
  for (std::size_t i = 0; i < std::size(kValueOptions); ++i) {
    given[i] = app.add_option(std::string("--") + kValueOptions[i].name, values[i]);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return BadArgument(e.what());
  }
  if (help) {
    Usage(stdout);
    return -1;
  }
  if (mode.size() > 1) return BadArgument("expected at most one command");
  if (!mode.empty()) o->mode = mode[0];
  if (!o->mode.empty() && o->mode != "latency" && o->mode != "throughput") {
    return BadArgument("unknown command '" + o->mode + "'");
  }
  for (std::size_t i = 0; i < std::size(kValueOptions); ++i) {
    if (given[i]->count() == 0) continue;
    if (const std::string bad = kValueOptions[i].take(values[i], o); !bad.empty()) {
      return BadArgument(bad);
    }
  }
  return 0;
}

// ---- rules between options ----
// Each rule returns the message of a usage error (exit 2), or "" when the options satisfy it.
// CheckCombination applies them in order; the first broken one is reported.

std::string NotForFullComparison(const Options& o) {
  if (!o.mode.empty()) return "";
  if (!o.against.empty()) return "--against applies to latency and throughput runs";
  if (o.capacity != 0) {
    return "--capacity applies to latency and throughput runs (the full comparison measures 4 KiB "
           "and the default 1 MiB)";
  }
  if (o.subscribers != 0) {
    return "--subscribers applies to latency and throughput runs (the full comparison measures 1 "
           "and 4)";
  }
  return "";
}

// A mode needs a transport that offers it (and --against one that offers it too).
std::string TransportOffersMode(const Options& o) {
  if (FindTransport(o.transport) == nullptr) {
    std::string message = (o.transport.empty() ? o.mode : std::string("unknown transport; it")) +
                          " needs --transport (one of:";
    for (const TransportInfo& t : Transports()) message += " " + std::string(t.name);
    return message + ")";
  }
  for (const std::string& name : {o.transport, o.against}) {
    const TransportInfo* t = name.empty() ? nullptr : FindTransport(name);
    if (t != nullptr && !Offers(*t, o.mode)) {
      return "transport " + name + " does not offer " + o.mode;
    }
  }
  return "";
}

std::string SizeGiven(const Options& o) {
  return o.size_given ? "" : o.mode + " needs --size BYTES";
}

bool ManyProcesses(const Options& o) { return o.producers != 0 || o.consumers != 0; }

std::string ManyProcessesApply(const Options& o) {
  if (ManyProcesses(o) && (o.mode != "throughput" || o.transport != "shmring-mpmc")) {
    return "--producers/--consumers apply to throughput of shmring-mpmc";
  }
  return "";
}

std::string AgainstApplies(const Options& o) {
  if (o.against.empty()) return "";
  if (FindTransport(o.against) == nullptr) return "unknown --against transport '" + o.against + "'";
  if (o.rate > 0 || ManyProcesses(o)) {
    return "--against does not combine with --rate or --producers/--consumers";
  }
  return "";
}

std::string CapacityApplies(const Options& o) {
  if (o.capacity == 0) return "";
  if (!TakesCapacity(o.transport) && !TakesCapacity(o.against)) {
    return "--capacity applies to shmring-spsc, shmring-mpmc, naive and the fan-out transports";
  }
  if (ManyProcesses(o)) return "--capacity does not combine with --producers/--consumers";
  for (const std::string& name : {o.transport, o.against}) {
    if (const absl::Status s = CheckCapacity(name, o.size, o.capacity); !s.ok()) {
      return "--capacity too small for --size " + std::to_string(o.size) + ": " +
             std::string(s.message());
    }
  }
  return "";
}

bool IsFanout(const std::string& name) {
  const TransportInfo* t = FindTransport(name);
  return t != nullptr && t->fanout;
}

// --subscribers needs a fan-out transport; more than one subscriber, both sides of a pair.
std::string SubscribersApply(const Options& o) {
  if (o.subscribers == 0) return "";
  if (!IsFanout(o.transport) && !IsFanout(o.against)) {
    return "--subscribers applies to the fan-out transports (shmring-spsc-fanout, "
           "shmring-broadcast)";
  }
  if (o.subscribers > 1 &&
      (!IsFanout(o.transport) || (!o.against.empty() && !IsFanout(o.against)))) {
    return "--subscribers above 1: both transports of a pair must be fan-out transports";
  }
  return "";
}

std::string RateApplies(const Options& o) {
  return o.rate > 0 && o.mode != "latency" ? "--rate applies to latency only" : "";
}

using Rule = std::string (*)(const Options&);
// The rules of a latency or throughput run, in the order they are checked.
constexpr Rule kModeRules[] = {TransportOffersMode, SizeGiven,   ManyProcessesApply, AgainstApplies,
                               CapacityApplies,     RateApplies, SubscribersApply};

// NoteFixedWaits: a --wait that a transport cannot honour is a note on stderr, not an error.
void NoteFixedWaits(const Options& o) {
  for (const std::string& name : {o.transport, o.against}) {
    const TransportInfo* t = name.empty() ? nullptr : FindTransport(name);
    if (t != nullptr && o.wait_given && !t->has_wait_choice && o.wait != t->fixed_wait) {
      std::fprintf(stderr, "shmring-bench: note: %s always waits by %s; --wait ignored for it\n",
                   name.c_str(), std::string(WaitName(t->fixed_wait)).c_str());
    }
  }
}

// CheckCombination checks what the options mean together (the rules above): 0, or 2 after
// reporting the first broken rule in one line.
int CheckCombination(const Options& o) {
  std::string broken = NotForFullComparison(o);
  for (std::size_t i = 0; broken.empty() && !o.mode.empty() && i < std::size(kModeRules); ++i) {
    broken = kModeRules[i](o);
  }
  if (!broken.empty()) {
    std::fprintf(stderr, "shmring-bench: %s\n", broken.c_str());
    return 2;
  }
  if (!o.mode.empty()) NoteFixedWaits(o);
  return 0;
}

// ParseArgs: ParseOptions, then the rules between options (CheckCombination).
int ParseArgs(int argc, char** argv, Options* o) {
  if (const int rc = ParseOptions(argc, argv, o); rc != 0) return rc;
  return CheckCombination(*o);
}

// ---- one run ----
struct RunSpec {
  const TransportInfo* info;
  std::size_t size;
  Wait wait;  // effective
  bool latency;
  std::uint64_t count;
  std::uint64_t warmup;
  double rate;
  double budget_s;  // stop measuring after this long (0: never); count is then what was measured
  std::size_t batch = 1;       // shmring-spsc throughput only
  std::uint64_t capacity = 0;  // ring transports (TakesCapacity): each ring's bytes; 0: default
  int subscribers = 1;         // fan-out transports: subscriber processes (others: 1 side B)
};

// Batches: transports whose streams publish every --batch frames (the others publish every
// message).
bool Batches(std::string_view name) {
  return name == "shmring-spsc" || name == "shmring-spsc-fanout" || name == "shmring-broadcast";
}

// RingBytes: the ring of a run's transport as reported (0: it has none).
std::uint64_t RingBytes(const RunSpec& s) {
  if (!TakesCapacity(s.info->name)) return 0;
  return s.capacity != 0 ? s.capacity : kDefaultRingBytes;
}

// SpecFor: a run of transport `name`, with `wait` if it offers a choice (else its fixed wait) and
// `batch` only for streams of transports that batch, `subscribers` only for fan-out transports.
RunSpec SpecFor(std::string_view name, std::size_t size, Wait wait, bool latency,
                std::uint64_t count, std::uint64_t warmup, double rate, double budget_s,
                std::size_t batch, std::uint64_t capacity = 0, int subscribers = 1) {
  const TransportInfo* info = FindTransport(name);
  return RunSpec{info,
                 size,
                 info->has_wait_choice ? wait : info->fixed_wait,
                 latency,
                 count,
                 warmup,
                 rate,
                 budget_s,
                 !latency && Batches(name) ? batch : 1,
                 TakesCapacity(name) ? capacity : 0,
                 info->fanout ? std::max(subscribers, 1) : 1};
}

// LatencyStats: one-way latency percentiles, ns.
struct LatencyStats {
  double p50 = 0, p90 = 0, p99 = 0, p999 = 0, max = 0, mean = 0;
};

// RunResult: the outcome of one run; the latency fields (LatencyStats) of a latency run.
struct RunResult : LatencyStats {
  RunSpec spec;
  bool ok = false;
  std::string error;
  // Why it failed: kUnavailable means the transport cannot run on this machine (e.g. a POSIX mq
  // message size above the system's limit) — reported, but it does not fail the comparison.
  absl::StatusCode code = absl::StatusCode::kOk;
  // Throughput. Fan-out: per subscriber, the slowest subscriber's rate.
  double msgs_per_s = 0, bytes_per_s = 0;
  // Fan-out transports only: each subscriber's results; latency also the slowest subscriber of
  // each round trip, throughput the sum of every subscriber's rate.
  struct Subscriber : LatencyStats {
    double msgs_per_s = 0;
  };
  std::vector<Subscriber> subscribers;
  Subscriber slowest;
  double total_msgs_per_s = 0;
};

void Stamp(std::byte* message, std::uint64_t sequence) {
  std::memcpy(message, &sequence, sizeof(sequence));
}
std::uint64_t SequenceOf(const std::byte* message) {
  std::uint64_t sequence;
  std::memcpy(&sequence, message, sizeof(sequence));
  return sequence;
}

// The last message of every run carries this sequence number: B stops (and, in a stream,
// acknowledges). kBlockEnd ends a block of a stream: B acknowledges it, and A stops its clock.
constexpr std::uint64_t kStop = ~std::uint64_t{0};
constexpr std::uint64_t kBlockEnd = ~std::uint64_t{1};

// Paired runs (--against) alternate between their transports in blocks, so both sides of a ratio
// see the same machine; a shared VM changes speed from one second to the next. A block is at most
// 1000 round trips or ~8 MiB of stream, and at most a quarter of the count, so even a short run
// alternates.
std::uint64_t LatencyBlock(std::uint64_t count, std::size_t transports) {
  if (transports == 1) return UINT64_MAX;
  return std::clamp<std::uint64_t>(count / 4, 1, 1000);
}
std::uint64_t StreamBlock(std::size_t size, std::uint64_t count, std::size_t transports) {
  if (transports == 1) return count;  // one block: the whole stream
  const std::uint64_t bytes = std::max<std::uint64_t>(1, (std::uint64_t{8} << 20) / size);
  return std::clamp<std::uint64_t>(count / 4, 1, bytes);
}

// Which of n transports carries round trip i of a latency run: first each one's warm-up in turn,
// then blocks in turn. Both sides follow it.
std::size_t LatencyTurn(std::uint64_t i, std::uint64_t warmup, std::uint64_t block, std::size_t n) {
  if (n == 1) return 0;
  if (i < warmup * n) return static_cast<std::size_t>(i / warmup);
  return static_cast<std::size_t>((i - warmup * n) / block % n);
}

// Side B of a latency run: echo every message on the transport whose turn it is, checking its
// sequence number.
int EchoLoop(const std::vector<Transport*>& ts, std::size_t size, std::uint64_t warmup,
             std::uint64_t block) {
  std::vector<std::byte> message(size);
  for (std::uint64_t i = 0;; ++i) {
    Transport& t = *ts[LatencyTurn(i, warmup, block, ts.size())];
    if (!t.Receive(message.data())) return 10;
    if (SequenceOf(message.data()) == kStop) return 0;
    if (SequenceOf(message.data()) != i) {
      std::fprintf(stderr, "shmring-bench: echo: message %" PRIu64 " arrived as %" PRIu64 "\n", i,
                   SequenceOf(message.data()));
      return 11;
    }
    if (!t.Send(message.data())) return 12;
  }
}

// Side B of a throughput run: receive blocks from the transports in turn (the warm-up is a block
// of its own), checking every message's sequence number per transport; acknowledge the end of
// each block and of the stream.
int SinkLoop(const std::vector<Transport*>& ts, std::size_t size) {
  std::vector<std::byte> message(size);
  std::vector<std::uint64_t> next(ts.size(), 0);
  for (std::uint64_t block = 0;; ++block) {
    const std::size_t k = block % ts.size();
    for (;;) {
      if (!ts[k]->Receive(message.data())) return 10;
      const std::uint64_t seq = SequenceOf(message.data());
      if (seq == kStop || seq == kBlockEnd) {
        if (!ts[k]->Send(message.data())) return 12;
        if (seq == kStop) return 0;
        break;
      }
      if (seq != next[k]) {
        std::fprintf(stderr,
                     "shmring-bench: sink: message %" PRIu64 " arrived as %" PRIu64
                     " (lost or reordered)\n",
                     next[k], seq);
        return 11;
      }
      ++next[k];
    }
  }
}

void WaitUntil(std::int64_t when_ns) {
  std::int64_t now = NowNs();
  // Sleep through most of a long gap, spin the last millisecond: a sleeping sender would otherwise
  // add its own wake-up delay to the transport's latency.
  if (when_ns - now > 2000000) {
    const std::int64_t until = when_ns - 1000000;
    timespec ts{static_cast<time_t>(until / 1000000000), static_cast<long>(until % 1000000000)};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr);
  }
  while (NowNs() < when_ns) {
  }
}

// Percentiles: one-way latencies (RTT/2) of round-trip times `rtt` (sorted in place; not empty).
LatencyStats Percentiles(std::vector<std::int64_t>& rtt) {
  std::sort(rtt.begin(), rtt.end());
  const auto pct = [&](double q) {
    std::size_t rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(rtt.size())));
    if (rank == 0) rank = 1;
    return static_cast<double>(rtt[std::min(rank, rtt.size()) - 1]) / 2;
  };
  LatencyStats p;
  p.p50 = pct(0.50);
  p.p90 = pct(0.90);
  p.p99 = pct(0.99);
  p.p999 = pct(0.999);
  p.max = static_cast<double>(rtt.back()) / 2;
  double sum = 0;
  for (std::int64_t r : rtt) sum += static_cast<double>(r);
  p.mean = sum / static_cast<double>(rtt.size()) / 2;
  return p;
}

void SetPercentiles(std::vector<std::int64_t>& rtt, RunResult* result) {
  static_cast<LatencyStats&>(*result) = Percentiles(rtt);
}

// Measurement: the parent's side of one run (A), shared by the two measuring algorithms.
struct Measurement {
  const std::vector<RunSpec>& specs;
  const RunSpec& spec;  // the first transport's spec; all have the same size, count and warm-up
  std::vector<Transport*>& ts;
  std::vector<RunResult>& results;
  std::vector<std::byte>& message;
  std::vector<std::byte>& reply;
  std::uint64_t block;
  std::size_t n;
  bool ok;
  std::string error;
  std::vector<std::uint64_t> measured;
  std::int64_t stop_at;  // INT64_MAX until the warm-up ends

  bool AllMeasured() const {
    return std::all_of(measured.begin(), measured.end(),
                       [&](std::uint64_t m) { return m >= spec.count; });
  }
  bool OverBudget() const { return spec.budget_s > 0 && NowNs() > stop_at; }
  void StartBudget() { stop_at = NowNs() + static_cast<std::int64_t>(spec.budget_s * 1e9); }
  // Subscribers: the side-B processes transport k replies from.
  std::size_t Subscribers(std::size_t k) const {
    return static_cast<std::size_t>(specs[k].subscribers);
  }
};

// Replies receives transport k's reply carrying `sequence` (a fan-out transport: every
// subscriber's); arrival_ns[s]: when subscriber s's came. Returns "" or what went wrong.
std::string Replies(Measurement& m, std::size_t k, std::uint64_t sequence,
                    std::int64_t* arrival_ns) {
  if (m.specs[k].info->fanout) {
    return m.ts[k]->ReceiveEach(sequence, m.reply.data(), arrival_ns)
               ? ""
               : "send/receive failed or a reply out of sequence";
  }
  if (!m.ts[k]->Receive(m.reply.data())) return "send/receive failed";
  arrival_ns[0] = NowNs();
  return SequenceOf(m.reply.data()) == sequence ? "" : "reply out of sequence";
}

// LatencyResults: the percentiles of the round trips in rtt[k][subscriber] into m.results; a
// fan-out transport's headline percentiles pool every subscriber's samples.
void LatencyResults(Measurement& m, std::vector<std::vector<std::vector<std::int64_t>>>& rtt) {
  for (std::size_t k = 0; k < m.n && m.ok; ++k) {
    if (m.measured[k] == 0) {
      m.ok = false;
      m.error = "no sample within the time budget";
      break;
    }
    for (std::vector<std::int64_t>& samples : rtt[k]) samples.resize(m.measured[k]);
    if (!m.specs[k].info->fanout) {
      SetPercentiles(rtt[k][0], &m.results[k]);
      continue;
    }
    std::vector<std::int64_t> pooled, slowest(m.measured[k], 0);
    for (const std::vector<std::int64_t>& samples : rtt[k]) {
      pooled.insert(pooled.end(), samples.begin(), samples.end());
      for (std::size_t i = 0; i < samples.size(); ++i)
        slowest[i] = std::max(slowest[i], samples[i]);
    }
    SetPercentiles(pooled, &m.results[k]);
    static_cast<LatencyStats&>(m.results[k].slowest) = Percentiles(slowest);
    for (std::vector<std::int64_t>& samples : rtt[k]) {
      m.results[k].subscribers.emplace_back();
      static_cast<LatencyStats&>(m.results[k].subscribers.back()) = Percentiles(samples);
    }
  }
}

// MeasureLatency: round trips (Stamp, Send, Receive), one transport's turn after another in
// blocks; the one-way latency percentiles into m.results. Returns the transport whose turn is
// next (it carries the stop message).
std::size_t MeasureLatency(Measurement& m) {
  std::vector<std::vector<std::vector<std::int64_t>>> rtt(m.n);
  for (std::size_t k = 0; k < m.n; ++k) {
    rtt[k].assign(m.Subscribers(k), std::vector<std::int64_t>(m.spec.count));
  }
  const std::uint64_t warmup = m.spec.warmup * m.n;
  const std::int64_t period =
      m.spec.rate > 0 ? static_cast<std::int64_t>(std::llround(1e9 / m.spec.rate)) : 0;
  std::int64_t start = 0;
  std::int64_t arrival_ns[kMaxSubscribers];
  std::uint64_t i = 0;
  for (;; ++i) {
    if (i == warmup) m.StartBudget();
    // The budget ends a run only where a round of blocks starts, so both sides get as many.
    const bool round_start = m.n == 1 ? (i & 63) == 0 : (i - warmup) % (m.block * m.n) == 0;
    if (i >= warmup && round_start && m.OverBudget()) break;
    const std::size_t k = LatencyTurn(i, m.spec.warmup, m.block, m.n);
    if (i >= warmup && m.AllMeasured()) break;
    Stamp(m.message.data(), i);
    std::int64_t t0;
    if (period > 0 && i >= warmup) {
      if (i == warmup) start = NowNs() + period;
      t0 = start + static_cast<std::int64_t>(i - warmup) * period;  // scheduled
      WaitUntil(t0);
    } else {
      t0 = NowNs();
    }
    const std::string failed =
        m.ts[k]->Send(m.message.data()) ? Replies(m, k, i, arrival_ns) : "send/receive failed";
    if (!failed.empty()) {
      m.ok = false;
      m.error = failed + " at message " + std::to_string(i);
      break;
    }
    if (i >= warmup && m.measured[k] < m.spec.count) {
      for (std::size_t s = 0; s < m.Subscribers(k); ++s) {
        rtt[k][s][m.measured[k]] = arrival_ns[s] - t0;
      }
      ++m.measured[k];
    }
  }
  LatencyResults(m, rtt);
  return LatencyTurn(i, m.spec.warmup, m.block, m.n);
}

// ThroughputResults: the rates of `elapsed[k][subscriber]` (ns, each subscriber's blocks from
// the first send to its acknowledgement) into m.results. A fan-out transport's msgs_per_s is its
// slowest subscriber's; total_msgs_per_s the sum over its subscribers.
void ThroughputResults(Measurement& m, const std::vector<std::vector<std::int64_t>>& elapsed) {
  for (std::size_t k = 0; k < m.n && m.ok; ++k) {
    if (m.measured[k] == 0) {
      m.ok = false;
      m.error = "no message within the time budget";
      break;
    }
    RunResult& r = m.results[k];
    for (std::size_t s = 0; s < elapsed[k].size(); ++s) {
      const double seconds = static_cast<double>(elapsed[k][s]) / 1e9;
      const double rate = static_cast<double>(m.measured[k]) / seconds;
      r.msgs_per_s = s == 0 ? rate : std::min(r.msgs_per_s, rate);
      r.total_msgs_per_s += rate;
      if (m.specs[k].info->fanout) r.subscribers.emplace_back().msgs_per_s = rate;
    }
    r.bytes_per_s = r.msgs_per_s * static_cast<double>(m.spec.size);
  }
}

// MeasureThroughput: streams of messages in blocks, each ended by kBlockEnd and B's
// acknowledgement; the rates into m.results. Returns the transport whose turn is next.
std::size_t MeasureThroughput(Measurement& m) {
  // Blocks: the warm-up of each transport, then m.measured blocks in turn until each transport
  // sent `count` messages or the budget is spent. Each block ends with kBlockEnd and B's
  // acknowledgement (every subscriber's), which stops the block's clock. A single transport's
  // one block also ends early when the budget is spent (checked every 64 messages).
  std::vector<std::uint64_t> next(m.n, 0);
  std::vector<std::vector<std::int64_t>> elapsed(m.n);
  for (std::size_t k = 0; k < m.n; ++k) elapsed[k].assign(m.Subscribers(k), 0);
  std::int64_t arrival_ns[kMaxSubscribers];
  // Small messages are stamped kStampAhead sends before they are sent, in a ring of buffers: a
  // transport's copy of a message stamped just before reloaded the 8 stamped bytes 16-32 bytes at
  // a time, a store-forwarding stall on every send that was the harness's, not the transport's
  // (a few ns a frame, which weighed on the transports bound by their own instructions).
  constexpr std::uint64_t kStampAhead = 8, kStampRing = 2 * kStampAhead;
  const std::size_t size = m.message.size();
  const bool ahead = size <= 4096;
  std::vector<std::byte> ring(ahead ? kStampRing * size : 0);
  for (std::size_t b = 0; ahead && b < kStampRing; ++b) {
    std::memcpy(ring.data() + b * size, m.message.data(), size);
  }
  const auto buffer = [&](std::uint64_t sequence) {
    return ahead ? ring.data() + (sequence % kStampRing) * size : m.message.data();
  };
  // Sends up to `frames` messages and the block's end; returns how many it sent (-1: failed).
  const auto send_block = [&](std::size_t k, std::uint64_t frames) -> std::int64_t {
    if (ahead) {
      for (std::uint64_t j = 0; j < kStampAhead && j < frames; ++j) {
        Stamp(buffer(next[k] + j), next[k] + j);
      }
    }
    std::uint64_t f = 0;
    for (; f < frames; ++f) {
      if (m.n == 1 && (f & 63) == 0 && f > 0 && m.OverBudget()) break;
      const std::uint64_t sequence = next[k]++;
      if (!ahead) {
        Stamp(m.message.data(), sequence);
      } else if (f + kStampAhead < frames) {
        // (The buffer was sent kStampAhead sends ago; only its stamp changes.)
        Stamp(buffer(sequence + kStampAhead), sequence + kStampAhead);
      }
      if (!m.ts[k]->Send(buffer(sequence))) return -1;
    }
    Stamp(m.message.data(), kBlockEnd);
    if (!m.ts[k]->Send(m.message.data()) || !Replies(m, k, kBlockEnd, arrival_ns).empty()) {
      return -1;
    }
    return static_cast<std::int64_t>(f);
  };
  std::uint64_t blocks = 0;
  for (std::size_t k = 0; k < m.n && m.ok; ++k, ++blocks) m.ok = send_block(k, m.spec.warmup) >= 0;
  m.StartBudget();
  for (; m.ok; ++blocks) {
    // All transports have the same count and block size, so they run out in turn order; the
    // budget ends a run only where a round of blocks starts, so both sides get as many.
    if (m.AllMeasured() || (blocks % m.n == 0 && m.OverBudget())) break;
    const std::size_t k = blocks % m.n;
    const std::int64_t t0 = NowNs();
    const std::int64_t sent = send_block(k, std::min(m.block, m.spec.count - m.measured[k]));
    m.ok = sent >= 0;
    if (!m.ok) break;
    for (std::size_t s = 0; s < m.Subscribers(k); ++s) elapsed[k][s] += arrival_ns[s] - t0;
    m.measured[k] += static_cast<std::uint64_t>(sent);
  }
  if (!m.ok) m.error = "send failed or no acknowledgement";
  ThroughputResults(m, elapsed);
  return blocks % m.n;
}

// RunTransports: the transports of one run, set up by the parent before fork().
struct RunTransports {
  std::vector<std::unique_ptr<Transport>> owned;
  std::vector<Transport*> ts;
  // Cleanup removes every named object the transports created (the parent, after side B).
  void Cleanup() {
    for (auto& t : owned) t->Cleanup();
  }
};

// Named: a paired run's errors name the transport.
std::string Named(const std::vector<RunSpec>& specs, std::size_t k, const absl::Status& s) {
  const std::string message(s.message());
  return specs.size() == 1 ? message : std::string(specs[k].info->name) + ": " + message;
}

// SetupTransports: one transport per spec, set up (the status's message is Named).
absl::Status SetupTransports(const std::vector<RunSpec>& specs, int timeout_s, RunTransports& rt) {
  for (const RunSpec& s : specs) {
    rt.owned.push_back(MakeTransport(s.info->name));
    rt.ts.push_back(rt.owned.back().get());
    Config config;
    config.size = s.size;
    config.wait = s.wait;
    config.stream = !s.latency;
    config.deadline = absl::Now() + absl::Seconds(timeout_s);
    config.batch = s.batch;
    config.capacity = s.capacity;
    config.subscribers = s.subscribers;
    if (absl::Status st = rt.ts.back()->Setup(config); !st.ok()) {
      return absl::Status(st.code(), Named(specs, rt.ts.size() - 1, st));
    }
  }
  return absl::OkStatus();
}

// Placement: where side B runs. One side B is pinned to cpu_b; the subscribers of a fan-out run
// with more than one may run on any allowed CPU (side A keeps its own).
struct Placement {
  int cpu_b;
  const std::vector<int>& allowed;
};

bool Place(const Placement& where, int subscribers) {
  if (subscribers == 1) return PinTo(where.cpu_b);
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int cpu : where.allowed) CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0;
}

// SideB: a fork()ed child (subscriber `subscriber` of a fan-out run, else the one side B):
// placed, attached to every transport, echoing (latency) or sinking (throughput) until the stop
// message. Exits with EchoLoop's / SinkLoop's code.
[[noreturn]] void SideB(const std::vector<RunSpec>& specs, const std::vector<Transport*>& ts,
                        const Placement& where, std::uint64_t block, int subscriber) {
  const RunSpec& spec = specs.front();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != g_parent_pid) _exit(1);
  if (!Place(where, spec.subscribers)) _exit(2);
  for (std::size_t k = 0; k < ts.size(); ++k) {
    if (absl::Status s = ts[k]->AttachSubscriber(subscriber); !s.ok()) {
      std::fprintf(stderr, "shmring-bench: %s: %s\n", std::string(specs[k].info->name).c_str(),
                   std::string(s.message()).c_str());
      _exit(3);
    }
  }
  _exit(spec.latency ? EchoLoop(ts, spec.size, spec.warmup, block) : SinkLoop(ts, spec.size));
}

// SideA: the parent's part after fork(): attach, measure, send the stop message on the
// transport whose turn is next (a stream also waits for its acknowledgement). m.ok and m.error
// say how it went.
void SideA(Measurement& m) {
  for (std::size_t k = 0; k < m.n && m.ok; ++k) {
    if (absl::Status s = m.ts[k]->Attach(Side::kA); !s.ok()) {
      m.ok = false;
      m.error = Named(m.specs, k, s);
    }
  }
  std::size_t stop_index = 0;
  if (m.ok) stop_index = m.spec.latency ? MeasureLatency(m) : MeasureThroughput(m);
  Stamp(m.message.data(), kStop);
  if (m.ok && !m.ts[stop_index]->Send(m.message.data())) m.ok = false;
  std::int64_t arrival_ns[kMaxSubscribers];
  if (m.ok && !m.spec.latency && !Replies(m, stop_index, kStop, arrival_ns).empty()) m.ok = false;
}

// ReapSideB waits for every side-B process (killing them first when side A failed); returns why
// one failed, or "" if all exited 0.
std::string ReapSideB(const std::vector<pid_t>& pids, bool ok) {
  if (!ok) {
    for (pid_t pid : pids) kill(pid, SIGKILL);
  }
  std::string failed;
  for (std::size_t k = 0; k < pids.size(); ++k) {
    int status = 0;
    while (waitpid(pids[k], &status, 0) < 0 && errno == EINTR) {
    }
    g_children[k] = 0;
    if (!failed.empty() || (WIFEXITED(status) && WEXITSTATUS(status) == 0)) continue;
    failed = WIFEXITED(status)
                 ? "receiving process failed (exit " + std::to_string(WEXITSTATUS(status)) +
                       "; 11 = a message lost or out of sequence)"
                 : "receiving process killed by signal " + std::to_string(WTERMSIG(status));
  }
  alarm(0);
  return failed;
}

// ForkSideB forks one side-B process per subscriber (1 for point-to-point transports); returns
// their pids (fewer than asked if fork failed: errno says why).
std::vector<pid_t> ForkSideB(const std::vector<RunSpec>& specs, const std::vector<Transport*>& ts,
                             const Placement& where, std::uint64_t block) {
  std::fflush(stdout);
  std::fflush(stderr);
  std::vector<pid_t> pids;
  for (int s = 0; s < specs.front().subscribers; ++s) {
    const pid_t pid = fork();
    if (pid < 0) break;
    if (pid == 0) SideB(specs, ts, where, block, s);
    g_children[s] = pid;
    pids.push_back(pid);
  }
  return pids;
}

// Run measures one transport (specs.size() == 1), or two side by side (--against): the same
// processes alternate between them in blocks. All specs share the mode, size, count, warm-up,
// budget and subscribers. Returns one result per spec.
std::vector<RunResult> Run(const std::vector<RunSpec>& specs, const Options& o) {
  const RunSpec& spec = specs.front();
  const std::size_t n = specs.size();
  std::vector<RunResult> results(n);
  for (std::size_t k = 0; k < n; ++k) results[k].spec = specs[k];
  const auto fail = [&](const std::string& error,
                        absl::StatusCode code = absl::StatusCode::kInternal) {
    for (RunResult& r : results) {
      r.error = error;
      r.code = code;
    }
    return results;
  };
  RunTransports rt;
  if (absl::Status st = SetupTransports(specs, o.timeout_s, rt); !st.ok()) {
    rt.Cleanup();
    return fail(std::string(st.message()), st.code());
  }
  const std::uint64_t block =
      spec.latency ? LatencyBlock(spec.count, n) : StreamBlock(spec.size, spec.count, n);
  const std::vector<pid_t> pids = ForkSideB(specs, rt.ts, {o.cpu_b, o.allowed_cpus}, block);
  if (pids.size() != static_cast<std::size_t>(spec.subscribers)) {
    const std::string error = std::string("fork: ") + std::strerror(errno);
    ReapSideB(pids, false);
    rt.Cleanup();
    return fail(error);
  }
  alarm(static_cast<unsigned>(o.timeout_s + 10));

  std::vector<std::byte> message(spec.size), reply(spec.size);
  for (std::size_t i = 0; i < spec.size; ++i) message[i] = static_cast<std::byte>(i * 7 + 1);
  Measurement m{specs,
                spec,
                rt.ts,
                results,
                message,
                reply,
                block,
                n,
                true,
                {},
                std::vector<std::uint64_t>(n, 0),
                INT64_MAX};
  SideA(m);
  const std::string reaped = ReapSideB(pids, m.ok);
  rt.Cleanup();
  if (m.ok && !reaped.empty()) {
    m.ok = false;
    m.error = reaped;
  }
  for (std::size_t k = 0; k < n; ++k) {
    results[k].ok = m.ok;
    results[k].spec.count = m.measured[k];
    if (!m.ok) results[k].error = m.error.empty() ? "failed" : m.error;
  }
  return results;
}

// ---- output ----

// LatencyJson: one-way percentiles, ns to 0.1 ns (what the printf JSON wrote).
nlohmann::ordered_json LatencyJson(const LatencyStats& p) {
  const auto tenth = [](double v) { return std::round(v * 10) / 10; };
  return {{"p50_ns", tenth(p.p50)},   {"p90_ns", tenth(p.p90)}, {"p99_ns", tenth(p.p99)},
          {"p999_ns", tenth(p.p999)}, {"max_ns", tenth(p.max)}, {"mean_ns", tenth(p.mean)}};
}

// AddFanoutJson: a fan-out run's keys (docs/tools.md): subscribers, per_subscriber, and the
// slowest subscriber's latency or the total rate.
void AddFanoutJson(const RunResult& r, nlohmann::ordered_json& j) {
  j["subscribers"] = r.spec.subscribers;
  nlohmann::ordered_json each = nlohmann::ordered_json::array();
  for (const RunResult::Subscriber& s : r.subscribers) {
    if (r.spec.latency) {
      each.push_back(LatencyJson(s));
    } else {
      each.push_back(
          {{"msgs_per_s", std::llround(s.msgs_per_s)},
           {"bytes_per_s", std::llround(s.msgs_per_s * static_cast<double>(r.spec.size))}});
    }
  }
  j["per_subscriber"] = each;
  if (r.spec.latency) {
    j["slowest"] = LatencyJson(r.slowest);
  } else {
    j["total_msgs_per_s"] = std::llround(r.total_msgs_per_s);
    j["total_bytes_per_s"] = std::llround(r.total_msgs_per_s * static_cast<double>(r.spec.size));
  }
}
// paired_with: the other transport of a --against run (added as the key "paired_with").
void PrintJson(const RunResult& r, std::string_view paired_with = {}) {
  nlohmann::ordered_json j;
  j["transport"] = std::string(r.spec.info->name);
  j["size"] = r.spec.size;
  j["wait"] = std::string(WaitName(r.spec.wait));
  j["count"] = r.spec.count;
  // Nanoseconds to 0.1 ns, rates to whole units: what the printf JSON wrote.
  const auto tenth = [](double v) { return std::round(v * 10) / 10; };
  if (r.spec.latency) {
    j["p50_ns"] = tenth(r.p50);
    j["p90_ns"] = tenth(r.p90);
    j["p99_ns"] = tenth(r.p99);
    j["p999_ns"] = tenth(r.p999);
    j["max_ns"] = tenth(r.max);
    j["mean_ns"] = tenth(r.mean);
  } else {
    j["msgs_per_s"] = std::llround(r.msgs_per_s);  // whole numbers, as before
    j["bytes_per_s"] = std::llround(r.bytes_per_s);
  }
  if (RingBytes(r.spec) != 0) {
    j["capacity"] = RingBytes(r.spec);  // each direction's ring, bytes
    if (r.spec.info->name == "shmring-mpmc") j["slots"] = MpmcSlots(r.spec.size, r.spec.capacity);
  }
  if (r.spec.info->fanout) AddFanoutJson(r, j);
  if (!paired_with.empty()) j["paired_with"] = std::string(paired_with);
  const std::string line =
      j.dump(-1, ' ', /*ensure_ascii=*/true, nlohmann::ordered_json::error_handler_t::replace);
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
}

std::string SizeName(std::size_t size) {
  if (size >= 1024 * 1024 && size % (1024 * 1024) == 0) {
    return std::to_string(size / (1024 * 1024)) + " MiB";
  }
  if (size >= 1024 && size % 1024 == 0) return std::to_string(size / 1024) + " KiB";
  return std::to_string(size) + " B";
}

std::string Label(const RunSpec& s) {
  std::string label = std::string(s.info->name) + "/" + std::string(WaitName(s.wait));
  if (s.batch > 1) label += " b" + std::to_string(s.batch);
  if (s.capacity != 0 && s.capacity != kDefaultRingBytes) {  // the full comparison's small ring
    label += " @" + SizeName(s.capacity);
  }
  if (s.info->fanout) label += " x" + std::to_string(s.subscribers);
  return label;
}

void PrintLatencyHeader() {
  std::printf("%-24s %7s %7s %8s %8s %9s %9s %10s %9s %8s %8s\n", "transport/wait", "size", "n",
              "p50", "p90", "p99", "p99.9", "max", "mean", "p50/flr", "p50/evfd");
}

// PrintFanoutDetail: the line under a fan-out run's row: the slowest subscriber's latency and
// each subscriber's p50, or each subscriber's rate and the total.
void PrintFanoutDetail(const RunResult& r) {
  if (!r.ok || !r.spec.info->fanout) return;
  std::string each;
  for (const RunResult::Subscriber& s : r.subscribers) {
    each += " " + std::to_string(std::llround(r.spec.latency ? s.p50 : s.msgs_per_s));
  }
  if (r.spec.latency) {
    std::printf("%-24s slowest subscriber p50 %.0f p99 %.0f p99.9 %.0f max %.0f; p50 each:%s\n", "",
                r.slowest.p50, r.slowest.p99, r.slowest.p999, r.slowest.max, each.c_str());
  } else {
    std::printf("%-24s msgs/s each:%s; total %.0f msgs/s\n", "", each.c_str(), r.total_msgs_per_s);
  }
}

void PrintLatencyRow(const RunResult& r, const RunResult* floor, const RunResult* eventfd) {
  if (!r.ok) {
    std::printf("%-24s %7s  n/a: %s\n", Label(r.spec).c_str(), SizeName(r.spec.size).c_str(),
                r.error.c_str());
    return;
  }
  char vs_floor[16] = "", vs_eventfd[16] = "";
  if (floor != nullptr && floor->ok) {
    std::snprintf(vs_floor, sizeof(vs_floor), "%.2fx", r.p50 / floor->p50);
  }
  if (eventfd != nullptr && eventfd->ok) {
    std::snprintf(vs_eventfd, sizeof(vs_eventfd), "%.2fx", r.p50 / eventfd->p50);
  }
  std::printf("%-24s %7s %7" PRIu64 " %8.0f %8.0f %9.0f %9.0f %10.0f %9.0f %8s %8s\n",
              Label(r.spec).c_str(), SizeName(r.spec.size).c_str(), r.spec.count, r.p50, r.p90,
              r.p99, r.p999, r.max, r.mean, vs_floor, vs_eventfd);
  PrintFanoutDetail(r);
}

void PrintThroughputHeader() {
  std::printf("%-24s %7s %8s %14s %12s %9s\n", "transport/wait", "size", "n", "msgs/s", "MiB/s",
              "vs naive");
}

void PrintThroughputRow(const RunResult& r, const RunResult* naive) {
  if (!r.ok) {
    std::printf("%-24s %7s  n/a: %s\n", Label(r.spec).c_str(), SizeName(r.spec.size).c_str(),
                r.error.c_str());
    return;
  }
  char vs[16] = "";
  if (naive != nullptr && naive->ok) {
    std::snprintf(vs, sizeof(vs), "%.2fx", r.msgs_per_s / naive->msgs_per_s);
  }
  std::printf("%-24s %7s %8" PRIu64 " %14.0f %12.1f %9s\n", Label(r.spec).c_str(),
              SizeName(r.spec.size).c_str(), r.spec.count, r.msgs_per_s,
              r.bytes_per_s / (1024.0 * 1024.0), vs);
  PrintFanoutDetail(r);
}

// PrintPairRatio: the ratio line of a paired run (--against), text only.
void PrintPairRatio(const RunResult& a, const RunResult& b) {
  if (a.spec.latency) {
    std::printf("%s / %s: p50 %.2fx, p99 %.2fx, p99.9 %.2fx (measured side by side)\n",
                Label(a.spec).c_str(), Label(b.spec).c_str(), a.p50 / b.p50, a.p99 / b.p99,
                a.p999 / b.p999);
  } else {
    std::printf("%s / %s: %.2fx messages/s (measured side by side)\n", Label(a.spec).c_str(),
                Label(b.spec).c_str(), a.msgs_per_s / b.msgs_per_s);
  }
}

// ---- shmring-mpmc with several producer and consumer processes ----
FanSpec MakeFan(const Options& o, std::size_t size, int producers, int consumers,
                std::uint64_t count, Wait wait) {
  FanSpec f;
  f.producers = producers;
  f.consumers = consumers;
  f.size = size;
  f.count = count != 0 ? count
                       : std::max<std::uint64_t>(
                             1000, std::min<std::uint64_t>(
                                       1000000, (std::uint64_t{256} << 20) / f.size / producers));
  f.wait = wait;
  f.timeout_s = o.timeout_s;
  f.cpus = o.allowed_cpus;
  return f;
}

std::string FanLabel(const FanSpec& f) {
  return "mpmc " + std::to_string(f.producers) + "P" + std::to_string(f.consumers) + "C/" +
         std::string(WaitName(f.wait));
}

void PrintFan(const FanSpec& f, const FanResult& r, bool json) {
  if (json) {
    std::printf(
        "{\"transport\": \"shmring-mpmc\", \"size\": %zu, \"wait\": \"%s\", "
        "\"count\": %" PRIu64
        ", \"producers\": %d, \"consumers\": %d, "
        "\"msgs_per_s\": %.0f, \"bytes_per_s\": %.0f, \"max_consumer_share\": %.3f}\n",
        f.size, std::string(WaitName(f.wait)).c_str(), r.frames, f.producers, f.consumers,
        r.msgs_per_s, r.bytes_per_s, r.max_consumer_share);
  } else if (!r.ok) {
    std::printf("%-24s %7s  n/a: %s\n", FanLabel(f).c_str(), SizeName(f.size).c_str(),
                r.error.c_str());
  } else {
    std::printf("%-24s %7s %8" PRIu64 " %14.0f %12.1f %9s  (busiest consumer %.0f%%)\n",
                FanLabel(f).c_str(), SizeName(f.size).c_str(), r.frames, r.msgs_per_s,
                r.bytes_per_s / (1024.0 * 1024.0), "", 100 * r.max_consumer_share);
  }
  std::fflush(stdout);
}

// Writes the latency percentiles of the full comparison as a PNG with gnuplot: one panel per size,
// p50/p90/p99/p99.9 bars per transport on a log scale. Returns false (with a message) on failure.
bool Plot(const std::vector<RunResult>& results, const std::string& path, int cpu_a, int cpu_b) {
  char data_path[] = "/tmp/shmring-bench-plot-XXXXXX";
  const int fd = mkstemp(data_path);
  if (fd < 0) return false;
  FILE* data = fdopen(fd, "w");
  std::vector<std::size_t> sizes;
  for (std::size_t size : kFullSizes) {
    bool any = false;
    for (const RunResult& r : results) {
      if (!r.ok || !r.spec.latency || r.spec.size != size) continue;
      if (!any) std::fprintf(data, "transport p50 p90 p99 p99.9\n");
      any = true;
      std::fprintf(data, "\"%s\" %.1f %.1f %.1f %.1f\n", Label(r.spec).c_str(), r.p50, r.p90, r.p99,
                   r.p999);
    }
    if (any) {
      sizes.push_back(size);
      std::fprintf(data, "\n\n");
    }
  }
  std::fclose(data);
  if (sizes.empty()) {
    unlink(data_path);
    return false;
  }
  FILE* gp = popen("gnuplot", "w");
  if (gp == nullptr) {
    unlink(data_path);
    return false;
  }
  std::fprintf(gp,
               "set terminal pngcairo size 1400,%zu font 'sans,10'\n"
               "set output '%s'\n"
               "set multiplot layout %zu,1 title 'shmring-bench: one-way latency (RTT/2 of "
               "ping-pong), CPUs %d and %d, log scale'\n"
               "set style data histograms\n"
               "set style histogram clustered gap 1\n"
               "set style fill solid 0.85 border -1\n"
               "set logscale y\n"
               "set ylabel 'ns'\n"
               "set grid ytics\n"
               "set xtics rotate by -25 scale 0\n"
               "set key top left\n",
               420 * sizes.size() + 60, path.c_str(), sizes.size(), cpu_a, cpu_b);
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    std::fprintf(gp,
                 "set title '%s messages'\n"
                 "plot for [c=2:5] '%s' index %zu using c:xtic(1) title columnheader(c)\n",
                 SizeName(sizes[i]).c_str(), data_path, i);
  }
  std::fprintf(gp, "unset multiplot\n");
  const int rc = pclose(gp);
  unlink(data_path);
  return rc == 0;
}

const RunResult* Find(const std::vector<RunResult>& results, std::string_view transport,
                      std::size_t size, bool latency, Wait wait, std::size_t batch = 0) {
  for (const RunResult& r : results) {
    if (r.spec.info->name == transport && r.spec.size == size && r.spec.latency == latency &&
        r.spec.wait == wait && (batch == 0 || r.spec.batch == batch)) {
      return &r;
    }
  }
  return nullptr;
}

std::uint64_t DefaultCount(bool latency, std::size_t size, bool full) {
  if (latency) return full ? 20000 : 100000;
  const std::uint64_t bytes = full ? (std::uint64_t{64} << 20) : (std::uint64_t{512} << 20);
  const std::uint64_t cap = full ? 400000 : 2000000;
  return std::max<std::uint64_t>(1000, std::min(cap, bytes / size));
}
std::uint64_t DefaultWarmup(bool latency, std::uint64_t count) {
  return latency ? std::min<std::uint64_t>(10000, std::max<std::uint64_t>(1000, count / 10))
                 : std::min<std::uint64_t>(5000, std::max<std::uint64_t>(100, count / 20));
}

// ---- the full comparison ----

// kFanouts: the fan-out transports of the full comparison (those this build has).
constexpr std::string_view kFanouts[] = {"shmring-broadcast", "shmring-spsc-fanout"};

// FullSpecs: the runs of the full comparison's table, in table order: for each mode and size the
// floor (latency) or naive (throughput), shmring spinning and blocking, then the kernel transports.
std::vector<RunSpec> FullSpecs(const Options& o) {
  std::vector<RunSpec> specs;
  const auto add = [&](std::string_view name, Wait wait, bool latency, std::size_t size,
                       std::size_t batch = 1, std::uint64_t capacity = 0, int subscribers = 1) {
    const std::uint64_t count = o.count != 0 ? o.count : DefaultCount(latency, size, true);
    const std::uint64_t warmup = o.warmup != 0 ? o.warmup : DefaultWarmup(latency, count);
    // Budgets keep the whole comparison under 2 minutes even when the kernel transports are slow.
    specs.push_back(SpecFor(name, size, wait, latency, count, warmup, 0, latency ? 1.0 : 0.6, batch,
                            capacity, subscribers));
  };
  const std::string_view kernel[] = {"eventfd", "pipe", "unix", "posix-mq", "tcp", "boost-mq"};
  for (bool latency : {true, false}) {
    for (std::size_t size : kFullSizes) {
      add(latency ? "floor" : "naive", Wait::kSpin, latency, size);
      if (!latency) {
        // The streaming idiom (batched publication), and, in the table, every frame published.
        add("shmring-spsc", Wait::kSpin, latency, size, o.batch);
        if (!o.json && o.batch > 1) add("shmring-spsc", Wait::kSpin, latency, size, 1);
        add("shmring-spsc", Wait::kBlock, latency, size, o.batch);
      } else {
        add("shmring-spsc", Wait::kSpin, latency, size);
        // The same at a ring sized for latency: fewer cache lines cycle between the cores.
        if (size == 64) add("shmring-spsc", Wait::kSpin, latency, size, 1, kLatencyRingBytes);
        add("shmring-spsc", Wait::kBlock, latency, size);
      }
      add("shmring-mpmc", Wait::kSpin, latency, size);
      add("shmring-mpmc", Wait::kBlock, latency, size);
      for (std::string_view k : kernel) add(k, Wait::kBlock, latency, size);
      // One publisher, 1 and 4 subscribers: latency at 64 B (one subscriber spinning, four on
      // two CPUs waiting hybrid), streams at 64 B and 64 KiB (hybrid).
      for (std::string_view f : kFanouts) {
        if (FindTransport(f) == nullptr || (latency && size != 64) || (!latency && size == 4096)) {
          continue;
        }
        add(f, latency ? Wait::kSpin : Wait::kHybrid, latency, size, o.batch, 0, 1);
        add(f, Wait::kHybrid, latency, size, o.batch, 0, 4);
      }
    }
  }
  return specs;
}

// PrintTableRow prints one result of the table (text), with the section's header before its
// first row; --json prints the result's object (or its error on stderr).
void PrintTableRow(const Options& o, const std::vector<RunResult>& results, bool* header_latency,
                   bool* header_throughput) {
  const RunResult& r = results.back();
  const RunSpec& spec = r.spec;
  if (o.json) {
    if (r.ok) {
      PrintJson(r);
    } else {
      std::fprintf(stderr, "shmring-bench: %s %s: %s\n", Label(spec).c_str(),
                   SizeName(spec.size).c_str(), r.error.c_str());
    }
    return;
  }
  if (spec.latency && !*header_latency) {
    std::printf(
        "One-way latency, ns (RTT/2 of ping-pong; n = round trips measured after a "
        "warm-up, at most %" PRIu64 " or %.1f s per run)\n",
        spec.count, spec.budget_s);
    PrintLatencyHeader();
    *header_latency = true;
  }
  if (!spec.latency && !*header_throughput) {
    std::printf(
        "\nThroughput (one-way stream, every sequence number checked; n = messages "
        "timed, at most 64 MiB, 400k or %.1f s per run)\n",
        spec.budget_s);
    PrintThroughputHeader();
    *header_throughput = true;
  }
  if (spec.latency) {
    PrintLatencyRow(r, Find(results, "floor", spec.size, true, Wait::kSpin),
                    Find(results, "eventfd", spec.size, true, Wait::kBlock));
  } else {
    PrintThroughputRow(r, Find(results, "naive", spec.size, false, Wait::kSpin));
  }
  std::fflush(stdout);
}

// RunTable runs the table's specs one after the other, printing each row as it comes.
std::vector<RunResult> RunTable(const Options& o, const std::vector<RunSpec>& specs) {
  std::vector<RunResult> results;
  results.reserve(specs.size());
  bool header_latency = false, header_throughput = false;
  for (const RunSpec& spec : specs) {
    results.push_back(Run({spec}, o).front());
    PrintTableRow(o, results, &header_latency, &header_throughput);
  }
  return results;
}

// RunFans: MPMC with several processes per side, the master-and-workers shape (not pinned).
// Returns false if one failed.
bool RunFans(const Options& o) {
  bool ok = true;
  for (const auto& [producers, consumers] : {std::pair{2, 2}, std::pair{4, 4}}) {
    const FanSpec f =
        MakeFan(o, 64, producers, consumers, o.count != 0 ? o.count : 500000, Wait::kHybrid);
    const FanResult r = RunFan(f);
    ok = ok && r.ok;
    if (o.json && !r.ok) {
      std::fprintf(stderr, "shmring-bench: %s 64 B: %s\n", FanLabel(f).c_str(), r.error.c_str());
    } else {
      PrintFan(f, r, o.json);
    }
  }
  return ok;
}

// Goal: a ratio of two transports' results (a / b) measured as a paired run, judged against a
// limit at a stated ring capacity.
struct Goal {
  std::string what;
  std::string_view a, b;
  Wait wait;
  std::size_t size;
  bool latency;
  std::size_t batch;
  double RunResult::*field;
  double limit;
  bool at_most;
  std::uint64_t capacity;
  int subscribers = 1;  // fan-out transports of the pair
  bool info = false;    // printed for information: no limit, never "NOT met"
};

// FullGoals: the goals of issue 5, with those of issues 12 (MPMC) and 13 (broadcast). Each is
// judged at a stated ring capacity: spin latency at a ring sized for latency (4 KiB, the honest
// comparison with the single-slot floor) and at the 1 MiB default, with the limits of issue 12; the
// rest at the default.
std::vector<Goal> FullGoals(const Options& o) {
  const std::string batch = " b" + std::to_string(o.batch);
  constexpr std::uint64_t kSmall = kLatencyRingBytes, kDefault = kDefaultRingBytes;
  return {
      {"spin 64 B p50 / floor p50", "shmring-spsc", "floor", Wait::kSpin, 64, true, 1,
       &RunResult::p50, 1.10, true, kSmall},
      {"spin 64 B p99.9 / floor p99.9", "shmring-spsc", "floor", Wait::kSpin, 64, true, 1,
       &RunResult::p999, 2.0, true, kSmall},
      {"spin 64 B p50 / floor p50", "shmring-spsc", "floor", Wait::kSpin, 64, true, 1,
       &RunResult::p50, 1.25, true, kDefault},
      {"spin 64 B p99.9 / floor p99.9", "shmring-spsc", "floor", Wait::kSpin, 64, true, 1,
       &RunResult::p999, 2.0, true, kDefault},
      {"MPMC 1P1C spin 64 B p50 / spsc p50", "shmring-mpmc", "shmring-spsc", Wait::kSpin, 64, true,
       1, &RunResult::p50, 1.2, true, kDefault},
      {"block 64 B p50 / eventfd p50", "shmring-spsc", "eventfd", Wait::kBlock, 64, true, 1,
       &RunResult::p50, 1.05, true, kDefault},
      {"stream 64 B" + batch + " / naive", "shmring-spsc", "naive", Wait::kSpin, 64, false, o.batch,
       &RunResult::msgs_per_s, 2.0, false, kDefault},
      {"stream 64 KiB" + batch + " / naive", "shmring-spsc", "naive", Wait::kSpin, 65536, false,
       o.batch, &RunResult::msgs_per_s, 0.9, false, kDefault},
      // For information: every frame published by its own commit().
      {"stream 64 B b1 / naive", "shmring-spsc", "naive", Wait::kSpin, 64, false, 1,
       &RunResult::msgs_per_s, 0, false, kDefault, 1, /*info=*/true},
      // Issue 13: one publisher, several subscribers.
      {"broadcast x1 spin 64 B p50 / spsc p50", "shmring-broadcast", "shmring-spsc", Wait::kSpin,
       64, true, 1, &RunResult::p50, 1.2, true, kDefault, 1},
      {"broadcast x4 64 B" + batch + " per sub / spsc-fanout x4", "shmring-broadcast",
       "shmring-spsc-fanout", Wait::kHybrid, 64, false, o.batch, &RunResult::msgs_per_s, 2.0, false,
       kDefault, 4},
      // The same with block waits, which the issue allows on a 2-CPU machine: caught-up
      // subscribers sleep instead of taking CPU from the publisher and each other.
      {"broadcast x4 block 64 B" + batch + " per sub / spsc-fanout x4", "shmring-broadcast",
       "shmring-spsc-fanout", Wait::kBlock, 64, false, o.batch, &RunResult::msgs_per_s, 2.0, false,
       kDefault, 4},
  };
}

// RunGoals measures and prints the goals. Each ratio comes from a paired run (as --against
// does): the same two processes alternate between the two transports in blocks, so both sides
// see the same machine; the table's rows, run one after the other, can straddle a change of speed
// of a shared VM. Returns false if a paired run failed.
bool RunGoals(const Options& o, FILE* out) {
  std::fprintf(out,
               "\nGoals (shmring-spsc; each pair measured side by side, alternating; ring: each "
               "direction's capacity, the same for naive):\n");
  std::vector<RunResult> pair;  // the last paired run; p50 and p99.9 share one
  bool ok = true;
  for (const Goal& g : FullGoals(o)) {
    if (FindTransport(g.a) == nullptr || FindTransport(g.b) == nullptr) continue;  // not built
    const bool reuse = !pair.empty() && pair[0].spec.latency == g.latency &&
                       pair[0].spec.size == g.size && pair[0].spec.wait == g.wait &&
                       pair[0].spec.batch == g.batch && pair[0].spec.capacity == g.capacity &&
                       pair[0].spec.info->name == g.a && pair[1].spec.info->name == g.b &&
                       pair[0].spec.subscribers == g.subscribers;
    if (!reuse) {
      const std::uint64_t count = o.count != 0 ? o.count
                                  : g.latency  ? (g.wait == Wait::kSpin ? 20000 : 5000)
                                               : DefaultCount(false, g.size, true);
      std::vector<RunSpec> specs;
      for (std::string_view name : {g.a, g.b}) {
        specs.push_back(SpecFor(name, g.size, g.wait, g.latency, count,
                                DefaultWarmup(g.latency, count), 0, 2.0, g.batch, g.capacity,
                                g.subscribers));
      }
      pair = Run(specs, o);
    }
    const std::string what = g.what + ", ring " + SizeName(g.capacity);
    if (!pair[0].ok) {
      ok = false;
      std::fprintf(out, "  %-44s   n/a: %s\n", what.c_str(), pair[0].error.c_str());
      continue;
    }
    const double value = pair[0].*g.field / (pair[1].*g.field);
    if (g.info) {
      std::fprintf(out, "  %-44s %6.2fx  (for information)\n", what.c_str(), value);
      continue;
    }
    const bool met = g.at_most ? value <= g.limit : value >= g.limit;
    std::fprintf(out, "  %-44s %6.2fx  (goal %s %.2fx)  %s\n", what.c_str(), value,
                 g.at_most ? "<=" : ">=", g.limit, met ? "met" : "NOT met");
  }
  return ok;
}

// ReportFanoutScaling: from the table, each fan-out transport's 64 B stream with 4 subscribers
// against 1, both waiting hybrid: with more processes than CPUs (1 + 4 on a 2-CPU machine) the
// frames delivered in total must not collapse (x4 / x1 >= 1). Two runs one after the other, not a
// paired run: a shared machine's noise shows in it.
void ReportFanoutScaling(const std::vector<RunResult>& results, FILE* out) {
  const auto find = [&](std::string_view name, int subscribers) -> const RunResult* {
    for (const RunResult& r : results) {
      if (r.spec.info->name == name && !r.spec.latency && r.spec.size == 64 &&
          r.spec.wait == Wait::kHybrid && r.spec.subscribers == subscribers && r.ok) {
        return &r;
      }
    }
    return nullptr;
  };
  for (std::string_view f : kFanouts) {
    const RunResult* one = find(f, 1);
    const RunResult* four = find(f, 4);
    if (one == nullptr || four == nullptr) continue;
    const double value = four->total_msgs_per_s / one->total_msgs_per_s;
    const bool met = value >= 1.0;
    const std::string what = std::string(f) + " x4 / x1 total 64 B, hybrid";
    std::fprintf(out, "  %-44s %6.2fx  (no collapse: >= 1.00x)  %s\n", what.c_str(), value,
                 met ? "met" : "NOT met");
  }
}

// ReportPlot writes the latency plot (--plot) and says where, or why not.
void ReportPlot(const Options& o, const std::vector<RunResult>& results, FILE* out) {
  if (o.plot.empty()) return;
  char resolved[4096];
  const bool plotted = Plot(results, o.plot, o.cpu_a, o.cpu_b);
  const char* shown = realpath(o.plot.c_str(), resolved) != nullptr ? resolved : o.plot.c_str();
  if (plotted) {
    std::fprintf(out, "\nplot: %s\n", shown);
  } else {
    std::fprintf(out, "\nplot: not written (is gnuplot installed? apt-get install gnuplot-nox)\n");
  }
}

// RunAll: the full comparison (no command). Exit 1 if a run failed, other than a transport this
// machine cannot run (kUnavailable).
int RunAll(const Options& o) {
  const std::vector<RunSpec> specs = FullSpecs(o);
  const std::int64_t started = NowNs();
  if (!o.json) {
    std::printf("shmring-bench: %zu runs, processes pinned to CPUs %d and %d\n\n", specs.size(),
                o.cpu_a, o.cpu_b);
  } else {
    std::fprintf(stderr, "shmring-bench: processes pinned to CPUs %d and %d\n", o.cpu_a, o.cpu_b);
  }
  const std::vector<RunResult> results = RunTable(o, specs);
  const bool fans_ok = RunFans(o);
  FILE* out = o.json ? stderr : stdout;
  const bool goals_ok = RunGoals(o, out);
  ReportFanoutScaling(results, out);  // informational: two unpaired runs
  ReportPlot(o, results, out);
  std::fprintf(out, "total time: %.1f s\n", static_cast<double>(NowNs() - started) / 1e9);
  if (!fans_ok || !goals_ok) return 1;
  for (const RunResult& r : results) {
    if (!r.ok && r.code != absl::StatusCode::kUnavailable) return 1;
  }
  return 0;
}

// ---- the command ----

// ChooseCpus: --cpus, or the first two CPUs this process may use; pins side A. Returns 0 or the
// exit code (2) after a message.
int ChooseCpus(Options& o) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  sched_getaffinity(0, sizeof(allowed), &allowed);
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &allowed)) o.allowed_cpus.push_back(c);
  }
  if (o.cpu_a < 0) {
    o.cpu_a = o.allowed_cpus.front();
    if (o.allowed_cpus.size() > 1) {
      o.cpu_b = o.allowed_cpus[1];
    } else {
      o.cpu_b = o.cpu_a;
      std::fprintf(stderr, "shmring-bench: warning: only CPU %d allowed; both processes share it\n",
                   o.cpu_a);
    }
  }
  for (int cpu : {o.cpu_a, o.cpu_b}) {
    if (cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &allowed)) {
      std::fprintf(stderr, "shmring-bench: CPU %d is not in this process's affinity mask\n", cpu);
      return 2;
    }
  }
  if (!PinTo(o.cpu_a)) {
    std::fprintf(stderr, "shmring-bench: cannot pin to CPU %d: %s\n", o.cpu_a,
                 std::strerror(errno));
    return 2;
  }
  return 0;
}

// RunManyProcesses: throughput --transport shmring-mpmc --producers P --consumers C.
int RunManyProcesses(const Options& o) {
  const FanSpec f =
      MakeFan(o, o.size, std::max(o.producers, 1), std::max(o.consumers, 1), o.count, o.wait);
  const FanResult r = RunFan(f);
  if (!r.ok) {
    std::fprintf(stderr, "shmring-bench: throughput %s %s: %s\n", FanLabel(f).c_str(),
                 SizeName(f.size).c_str(), r.error.c_str());
    return 1;
  }
  if (!o.json) {
    std::printf("%d producer and %d consumer processes (not pinned, CPUs allowed: %zu); %" PRIu64
                " frames, each checked: exactly once, in order per producer\n",
                f.producers, f.consumers, o.allowed_cpus.size(), r.frames);
    PrintThroughputHeader();
  }
  PrintFan(f, r, o.json);
  return 0;
}

// PrintRunText: the text report of a latency or throughput run (one transport, or a pair).
void PrintRunText(const Options& o, const std::vector<RunSpec>& specs,
                  const std::vector<RunResult>& results) {
  const RunSpec& spec = specs.front();
  const bool paired = results.size() > 1;
  for (const RunSpec& s : specs) {
    if (RingBytes(s) == 0) continue;
    std::printf("%s: ring of %s each direction", std::string(s.info->name).c_str(),
                SizeName(RingBytes(s)).c_str());
    if (s.info->name == "shmring-mpmc") {
      std::printf(" (%" PRIu64 " slots)", MpmcSlots(s.size, s.capacity));
    }
    std::printf("\n");
  }
  if (spec.latency) {
    std::printf(
        "CPUs %d,%d; %" PRIu64 " round trips after %" PRIu64 " warm-up%s%s\n", o.cpu_a, o.cpu_b,
        spec.count, spec.warmup,
        o.rate > 0 ? (", paced at " + std::to_string(static_cast<long long>(o.rate)) +
                      " Hz, measured from the scheduled send time")
                         .c_str()
                   : "",
        paired ? (" each, alternating in blocks of " + std::to_string(LatencyBlock(spec.count, 2)))
                     .c_str()
               : "");
    PrintLatencyHeader();
    for (const RunResult& r : results) PrintLatencyRow(r, nullptr, nullptr);
  } else {
    std::printf("CPUs %d,%d; %" PRIu64 " messages after %" PRIu64 " warm-up%s, all in sequence\n",
                o.cpu_a, o.cpu_b, spec.count, spec.warmup,
                paired ? (" each, alternating in blocks of " +
                          std::to_string(StreamBlock(spec.size, spec.count, 2)))
                             .c_str()
                       : "");
    PrintThroughputHeader();
    for (const RunResult& r : results) PrintThroughputRow(r, nullptr);
  }
  if (paired) PrintPairRatio(results[0], results[1]);
}

// RunMode: a latency or throughput run of --transport (and --against side by side).
int RunMode(const Options& o) {
  const bool latency = o.mode == "latency";
  const std::uint64_t count = o.count != 0 ? o.count : DefaultCount(latency, o.size, false);
  const std::uint64_t warmup = o.warmup != 0 ? o.warmup : DefaultWarmup(latency, count);
  std::vector<RunSpec> specs;
  for (const std::string& name : {o.transport, o.against}) {
    if (!name.empty()) {
      specs.push_back(SpecFor(name, o.size, o.wait, latency, count, warmup, o.rate, 0, o.batch,
                              o.capacity, o.subscribers));
    }
  }
  const std::vector<RunResult> results = Run(specs, o);
  if (!results.front().ok) {
    std::string what = Label(specs.front());
    if (specs.size() > 1) what += " against " + Label(specs.back());
    std::fprintf(stderr, "shmring-bench: %s %s %s: %s\n", o.mode.c_str(), what.c_str(),
                 SizeName(specs.front().size).c_str(), results.front().error.c_str());
    return 1;
  }
  if (o.json) {
    const bool paired = results.size() > 1;
    for (std::size_t k = 0; k < results.size(); ++k) {
      PrintJson(results[k], paired ? results[1 - k].spec.info->name : std::string_view());
    }
    return 0;
  }
  PrintRunText(o, specs, results);
  return 0;
}

int Main(int argc, char** argv) {
  Options o;
  if (const int rc = ParseArgs(argc, argv, &o); rc != 0) return rc < 0 ? 0 : rc;
  g_parent_pid = getpid();
  InstallSignalHandlers();
  if (const int rc = ChooseCpus(o); rc != 0) return rc;
  if (o.mode.empty()) return RunAll(o);
  if (ManyProcesses(o)) return RunManyProcesses(o);
  return RunMode(o);
}

}  // namespace
}  // namespace shmring::bench

int main(int argc, char** argv) { return shmring::bench::Main(argc, argv); }
