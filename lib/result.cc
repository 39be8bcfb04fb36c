#include "shmring/result.h"

#include <ostream>

#include "absl/strings/str_cat.h"
#include "platform.h"

namespace shmring {

std::string_view ToString(Result result) {
  switch (result) {
    case Result::kOk:
      return "Ok";
    case Result::kWouldBlock:
      return "WouldBlock";
    case Result::kTimeout:
      return "Timeout";
    case Result::kClosed:
      return "Closed";
    case Result::kTooLarge:
      return "TooLarge";
    case Result::kCorrupted:
      return "Corrupted";
    case Result::kAbandoned:
      return "Abandoned";
    case Result::kLapped:
      return "Lapped";
  }
  return "Unknown";
}

absl::Status ToStatus(Result result) {
  if (result == Result::kOk) return absl::OkStatus();
  const std::string_view name = ToString(result);
  const std::string message =
      absl::StrCat("shmring: ", absl::string_view(name.data(), name.size()));
  switch (result) {
    case Result::kWouldBlock:
      return absl::UnavailableError(message);
    case Result::kTimeout:
      return absl::DeadlineExceededError(message);
    case Result::kClosed:
      return absl::OutOfRangeError(message);
    case Result::kTooLarge:
      return absl::InvalidArgumentError(message);
    case Result::kCorrupted:
    case Result::kLapped:
      return absl::DataLossError(message);
    case Result::kAbandoned:
      return absl::AbortedError(message);
    default:
      return absl::UnknownError(message);
  }
}

std::ostream& operator<<(std::ostream& os, Result result) { return os << ToString(result); }

absl::Time DeadlineAfter(absl::Duration timeout) {
  if (timeout == absl::InfiniteDuration()) return absl::InfiniteFuture();
  return internal::WallNow() + timeout;
}

}  // namespace shmring
