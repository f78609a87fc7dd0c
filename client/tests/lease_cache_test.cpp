#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tlm/atomic_file.hpp"
#include "tlm/lease_cache.hpp"

using namespace tlm;
namespace fs = std::filesystem;

namespace {

struct temp_dir {
  fs::path path;
  temp_dir() {
    char tmpl[] = "/tmp/tlm-cache-test-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~temp_dir() {
    fs::remove_all(path);
  }
};

lease sample() {
  lease x;
  x.id = "L1";
  x.backend = "influx";
  x.value = "tlm_L1:pw";
  x.ttl_ms = 60000;
  x.issued = wall_time{std::chrono::seconds{1'800'000'000}};
  x.expires = x.issued + std::chrono::seconds{60};
  x.renewable = true;
  return x;
}

bool locked_by_someone(const std::string& lock_path) {
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT, 0600);
  bool busy = ::flock(fd, LOCK_EX | LOCK_NB) != 0;
  ::close(fd);
  return busy;
}

} // namespace

TEST_SUITE_BEGIN("lease_cache");

TEST_CASE("no file: no lease") {
  temp_dir dir;
  lease_cache cache{(dir.path / "lease.json").string()};
  auto loaded = cache.load();
  REQUIRE(loaded);
  CHECK_FALSE(loaded.value());
}

TEST_CASE("a stored lease reads back, mode 0600 whatever the umask") {
  temp_dir dir;
  auto path = (dir.path / "lease.json").string();
  lease_cache cache{path};
  auto old_mask = ::umask(0);
  auto stored = cache.store(sample());
  ::umask(old_mask);
  REQUIRE(stored);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto loaded = cache.load();
  REQUIRE(loaded);
  REQUIRE(loaded.value());
  CHECK(loaded.value()->value == "tlm_L1:pw");
  CHECK(loaded.value()->expires == sample().expires);
  // Only the file itself is left, no temporary one.
  CHECK(
    std::distance(fs::directory_iterator{dir.path}, fs::directory_iterator{})
    == 1);
}

TEST_CASE("a file that is not a lease is an error naming it") {
  temp_dir dir;
  auto path = (dir.path / "lease.json").string();
  std::ofstream{path} << "{\"half\":";
  lease_cache cache{path};
  auto loaded = cache.load();
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error().code == errc::cache_error);
  CHECK(loaded.error().message.find(path) != std::string::npos);
}

TEST_CASE("the lock keeps other writers out until it is released") {
  temp_dir dir;
  auto path = (dir.path / "lease.json").string();
  lease_cache cache{path};
  REQUIRE(cache.lock());
  CHECK(locked_by_someone(path + ".lock"));
  cache.unlock();
  CHECK_FALSE(locked_by_someone(path + ".lock"));
}

TEST_CASE("forget removes only the lease it names") {
  temp_dir dir;
  auto path = (dir.path / "lease.json").string();
  lease_cache cache{path};
  REQUIRE(cache.store(sample()));
  REQUIRE(cache.forget("other"));
  CHECK(fs::exists(path));
  REQUIRE(cache.forget("L1"));
  CHECK_FALSE(fs::exists(path));
}

TEST_CASE("an atomic write into a missing folder fails naming the file") {
  auto r = write_file_atomically("/nonexistent-dir/x", "v");
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("/nonexistent-dir/x") != std::string::npos);
}

TEST_SUITE_END();
