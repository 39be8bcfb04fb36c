#include "shmring/result.h"

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
  }
  return "Unknown";
}

}  // namespace shmring
