// Catch2 main for every test binary: runs the session, then removes every /dev/shm object the
// tests created under their pid-suffixed prefix — also when tests failed or threw, or when the
// binary is stopped by SIGTERM/SIGINT/SIGHUP (a meson timeout).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "test_util.h"

int main(int argc, char* argv[]) {
  shmring::testing::RemoveTestObjectsOnSignal();
  const int result = Catch::Session().run(argc, argv);
  shmring::testing::RemoveAllTestObjects();
  return result;
}
