// shm-bridge — carry a shmring channel across hosts through an AMQP 0-9-1 broker (RabbitMQ).
//
//   host A: shm-bridge out /quotes --amqp amqp://u:p@broker/%2f --exchange quotes --persistent
//   host B: shm-bridge in quotes /quotes --amqp amqp://u:p@broker/%2f --declare --exchange quotes
//
// The command line and exit codes are a contract (docs/tools.md); the guarantees are in
// docs/bridge.md. The work is done by tools/bridge (RunOut/RunIn); this file parses, reports and
// maps errors to exit codes: 0 done (channel closed and drained, or SIGTERM/SIGINT), 1 usage,
// 2 runtime error (one line on stderr).
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <string>

#include "absl/strings/str_format.h"
#include "bridge/bridge.h"
#include "cli.h"

namespace {

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free, "set from a signal handler");

void OnSignal(int) {
  // Relaxed: the main loop only needs to see the flag eventually (it polls every 100 ms).
  g_stop.store(true, std::memory_order_relaxed);
}

void InstallSignals() {
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, nullptr);
  sigaction(SIGINT, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a dropped broker connection is an error return, not a signal
}

// ProgressPrinter: one line per period on stderr.
class ProgressPrinter {
 public:
  ProgressPrinter(std::string what) : what_(std::move(what)) {}
  void operator()(const shmring::bridge::Stats& s) {
    const absl::Time now = absl::Now();
    const double seconds = absl::ToDoubleSeconds(now - last_time_);
    const double rate = seconds > 0 ? static_cast<double>(s.frames - last_frames_) / seconds : 0;
    last_time_ = now;
    last_frames_ = s.frames;
    std::fprintf(stderr,
                 "shm-bridge %s: %.0f frames/s, %llu frames, %llu bytes, %llu unconfirmed, "
                 "%llu reconnects, %llu duplicates dropped, %llu republished, %llu unroutable\n",
                 what_.c_str(), rate, static_cast<unsigned long long>(s.frames),
                 static_cast<unsigned long long>(s.bytes),
                 static_cast<unsigned long long>(s.unconfirmed),
                 static_cast<unsigned long long>(s.reconnects),
                 static_cast<unsigned long long>(s.duplicates),
                 static_cast<unsigned long long>(s.republished),
                 static_cast<unsigned long long>(s.unroutable));
  }

 private:
  std::string what_;
  absl::Time last_time_ = absl::Now();
  std::uint64_t last_frames_ = 0;
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "shm-bridge: %s\n", message.c_str());
  return shmring::tools::kExitRuntime;
}

// CommonFlags: the options both subcommands share (broker, TLS, --declare, --progress).
struct CommonFlags {
  std::string url_text;
  shmring::bridge::TlsOptions tls;
  bool declare = false;
  bool progress = false;
  double progress_interval = 1.0;

  void AddTo(CLI::App* cmd) {
    cmd->add_option("--amqp", url_text,
                    "broker URL amqp://user:password@host:port/vhost (amqps:// for TLS); "
                    "default $SHMRING_AMQP_URL")
        ->envname("SHMRING_AMQP_URL")
        ->required();
    cmd->add_option("--tls-ca", tls.ca_file, "amqps: CA bundle (PEM)");
    cmd->add_option("--tls-cert", tls.cert_file, "amqps: client certificate (PEM)");
    cmd->add_option("--tls-key", tls.key_file, "amqps: client key (PEM)");
    cmd->add_flag("--declare", declare, "declare what is missing (durable) instead of failing");
    cmd->add_flag("--progress", progress, "print a status line every second on stderr");
    cmd->add_option("--progress-interval", progress_interval,
                    "seconds between --progress lines (default 1)")
        ->check(CLI::Range(0.01, 3600.0));
  }
};

// AddOutCommand: `shm-bridge out`, its options into `out` and `drop_unroutable`.
CLI::App* AddOutCommand(CLI::App& app, CommonFlags& common, shmring::bridge::OutOptions& out,
                        bool& drop_unroutable) {
  CLI::App* cmd = app.add_subcommand(
      "out", "consume CHANNEL and publish every frame to an exchange, with publisher confirms");
  cmd->add_option("CHANNEL", out.channel, "shmring channel to consume")->required();
  common.AddTo(cmd);
  cmd->add_option("--exchange", out.exchange, "exchange to publish to")->required();
  cmd->add_option("--routing-key", out.routing_key, "routing key (default empty)");
  cmd->add_option("--exchange-type", out.exchange_type, "with --declare (default direct)");
  cmd->add_flag("--persistent", out.persistent, "persistent messages (delivery mode 2)");
  cmd->add_option("--window", out.window, "most unconfirmed messages (default 256)")
      ->check(CLI::Range(1u, 1u << 20));
  cmd->add_option("--mpmc-holders", out.mpmc_holders,
                  "MPMC channels: consumer endpoints holding the window (default 32)")
      ->check(CLI::Range(1u, 4096u));
  cmd->add_flag("--drop-unroutable", drop_unroutable,
                "let the broker drop messages no queue is bound for (default: keep them "
                "and publish again every second until a queue takes them)");
  cmd->add_option("--origin-host", out.origin_host, "x-shmring-host (default the host name)");
  return cmd;
}

// AddInCommand: `shm-bridge in`, its options into `in` and `keep_duplicates`.
CLI::App* AddInCommand(CLI::App& app, CommonFlags& common, shmring::bridge::InOptions& in,
                       bool& keep_duplicates) {
  CLI::App* cmd = app.add_subcommand(
      "in", "consume QUEUE and commit every message as a frame into CHANNEL, acking after commit");
  cmd->add_option("QUEUE", in.queue, "queue to consume")->required();
  cmd->add_option("CHANNEL", in.channel, "shmring channel to produce into")->required();
  common.AddTo(cmd);
  cmd->add_option("--prefetch", in.prefetch, "most unacked messages (default 256)")
      ->check(CLI::Range(1, 65535));
  cmd->add_option("--exchange", in.exchange, "bind the queue to this exchange");
  cmd->add_option("--routing-key", in.routing_key, "binding key (default empty)");
  cmd->add_option("--exchange-type", in.exchange_type, "with --declare (default direct)");
  cmd->add_flag("--keep-duplicates", keep_duplicates,
                "commit every message, also those the duplicate rule drops");
  return cmd;
}

// Progress: the --progress callback printing through `printer`, or none.
shmring::bridge::ProgressFn Progress(const CommonFlags& common, ProgressPrinter& printer) {
  return common.progress ? shmring::bridge::ProgressFn(std::ref(printer))
                         : shmring::bridge::ProgressFn();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"shm-bridge: carry a shmring channel across hosts through RabbitMQ (AMQP 0-9-1)"};
  app.require_subcommand(1);
  CommonFlags common;
  shmring::bridge::OutOptions out;
  bool drop_unroutable = false;
  CLI::App* out_cmd = AddOutCommand(app, common, out, drop_unroutable);
  shmring::bridge::InOptions in;
  bool keep_duplicates = false;
  AddInCommand(app, common, in, keep_duplicates);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "shm-bridge: %s (see shm-bridge --help)\n", e.what());
    return shmring::tools::kExitUsage;
  }

  auto url = shmring::bridge::ParseAmqpUrl(common.url_text);
  if (!url.ok()) {
    return Fail(std::string(url.status().message()));
  }
  InstallSignals();
  shmring::bridge::ConnectionOptions connection;
  connection.url = *url;
  connection.tls = common.tls;
  connection.declare = common.declare;
  connection.progress_period = absl::Seconds(common.progress_interval);

  absl::Status status;
  if (out_cmd->parsed()) {
    out.connection = connection;
    out.mandatory = !drop_unroutable;
    ProgressPrinter printer(absl::StrFormat("out %s", out.channel));
    status = shmring::bridge::RunOut(out, g_stop, Progress(common, printer));
  } else {
    in.connection = connection;
    in.drop_duplicates = !keep_duplicates;
    ProgressPrinter printer(absl::StrFormat("in %s", in.channel));
    status = shmring::bridge::RunIn(in, g_stop, Progress(common, printer));
  }
  if (!status.ok()) return Fail(std::string(status.message()));
  return shmring::tools::kExitOk;
}
