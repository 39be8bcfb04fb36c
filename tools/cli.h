// cli.h — argument parsing shared by shm-cat and shm-inspect: sizes with K/M/G suffixes,
// counts, durations in seconds, and the exit codes of the tools' contract (docs/tools.md).
#ifndef SHMRING_TOOLS_CLI_H_
#define SHMRING_TOOLS_CLI_H_

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace shmring::tools {

// Exit codes (a contract: scripts depend on them).
inline constexpr int kExitOk = 0;
inline constexpr int kExitUsage = 1;
inline constexpr int kExitRuntime = 2;
inline constexpr int kExitTimeout = 3;
// shm-cat recv of a broadcast channel: the stream ended (or --count frames arrived), but frames
// were missed (lapped or evicted; each lap reported on stderr with its count).
inline constexpr int kExitMissed = 4;

// ExitCodeOf maps a Status to the tools' exit code by its code: DeadlineExceeded -> timeout,
// InvalidArgument -> usage (a bad name or an impossible geometry), anything else -> runtime.
inline int ExitCodeOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kDeadlineExceeded:
      return kExitTimeout;
    case absl::StatusCode::kInvalidArgument:
      return kExitUsage;
    default:
      return kExitRuntime;
  }
}

// OneLine: `text` with its line breaks turned into "; " (error messages are one line).
inline std::string OneLine(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '\n') {
      if (!out.empty() && out.back() != ' ') out += "; ";
    } else {
      out += c;
    }
  }
  while (!out.empty() && (out.back() == ' ' || out.back() == ';')) out.pop_back();
  return out;
}

// ParseSize parses "4096", "64K", "1M", "2G" (powers of two: K = 1024). Also "k"/"m"/"g" and an
// optional trailing "B"/"iB" ("64KiB"). nullopt on anything else or on overflow.
inline std::optional<std::uint64_t> ParseSize(std::string_view text) {
  if (text.empty() || text.front() < '0' || text.front() > '9') return std::nullopt;
  std::uint64_t value = 0;
  std::size_t i = 0;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    const std::uint64_t digit = static_cast<std::uint64_t>(text[i] - '0');
    if (value > (UINT64_MAX - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  std::string_view suffix = text.substr(i);
  if (suffix == "B") suffix = "";
  if (suffix.size() == 3 && suffix.substr(1) == "iB") suffix = suffix.substr(0, 1);
  if (suffix.size() == 2 && suffix[1] == 'B') suffix = suffix.substr(0, 1);
  int shift = 0;
  if (suffix.empty()) {
    shift = 0;
  } else if (suffix == "K" || suffix == "k") {
    shift = 10;
  } else if (suffix == "M" || suffix == "m") {
    shift = 20;
  } else if (suffix == "G" || suffix == "g") {
    shift = 30;
  } else {
    return std::nullopt;
  }
  if (shift != 0 && value > (UINT64_MAX >> shift)) return std::nullopt;
  return value << shift;
}

// ParseCount parses a non-negative decimal integer.
inline std::optional<std::uint64_t> ParseCount(std::string_view text) {
  if (text.empty() || text.size() > 19) return std::nullopt;
  std::uint64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return value;
}

// ParseSeconds parses a non-negative decimal number of seconds ("5", "0.25").
inline std::optional<double> ParseSeconds(std::string_view text) {
  if (text.empty() || text.size() > 32) return std::nullopt;
  const std::string s(text);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(s.c_str(), &end);
  if (errno != 0 || end != s.c_str() + s.size() || !(v >= 0) || v > 1e9) return std::nullopt;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || c == '.')) return std::nullopt;  // no "inf", "1e3", "-0"
  }
  return v;
}

// WriteAll writes all of `data` to `fd` with write(2), retrying short writes and EINTR.
inline bool WriteAll(int fd, const void* data, std::size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace shmring::tools

#endif  // SHMRING_TOOLS_CLI_H_
