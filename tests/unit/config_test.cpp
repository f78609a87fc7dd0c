// Command line and config file: both flag forms, overrides, and errors that
// name the key to fix.

#include <cstdio>
#include <fstream>

#include <doctest/doctest.h>

#include "api/api_keys.hpp"
#include "app/config.hpp"
#include "cloud_backends/registry.hpp"
#include "core/error.hpp"
#include "tests/unit/command_line.hpp"

using namespace tlm;
using tlm::test::parse;

namespace {

std::string write_temp(const std::string& text) {
  char name[] = "/tmp/tlm-config-XXXXXX";
  int fd = mkstemp(name);
  close(fd);
  std::ofstream(name) << text;
  return name;
}

} // namespace

TEST_CASE("defaults match the documented ones") {
  auto cmd = parse({});
  REQUIRE(!cmd.exit_now);
  CHECK(cmd.config.bind == "127.0.0.1");
  CHECK(cmd.config.http_port == 3666);
  CHECK(cmd.config.tcp_port == 3667);
  CHECK(cmd.config.storage == "sqlite:./data/tlm.db");
  CHECK(cmd.config.default_ttl_ms == 3'600'000);
  CHECK(cmd.config.min_ttl_ms == 1'000);
  CHECK(cmd.config.max_ttl_ms == 345'600'000);
}

TEST_CASE("flags work as --name=value and --name value") {
  auto cmd = parse({"--http-port=1234", "--tcp-port", "2345", "--storage",
                    "memory", "--min-ttl=10", "--max-ttl", "100000"});
  REQUIRE(!cmd.exit_now);
  CHECK(cmd.config.http_port == 1234);
  CHECK(cmd.config.tcp_port == 2345);
  CHECK(cmd.config.storage == "memory");
  CHECK(cmd.config.min_ttl_ms == 10);
  CHECK(cmd.config.default_ttl_ms == 100000); // follows the narrower max
}

TEST_CASE("flags override the config file") {
  auto path = write_temp(R"({"http_port": 1111, "tcp_port": 2222,
    "storage": "memory", "backends": {"mine": {"type": "local"}},
    "default_backend": "mine"})");
  auto cmd = parse({"--config", path, "--tcp-port=3333"});
  std::remove(path.c_str());
  REQUIRE(!cmd.exit_now);
  CHECK(cmd.config.http_port == 1111);
  CHECK(cmd.config.tcp_port == 3333);
  CHECK(cmd.config.default_backend == "mine");
}

TEST_CASE("unknown config keys are errors naming the key") {
  auto path = write_temp(R"({"http_prot": 1})");
  auto cmd = parse({"--config", path});
  std::remove(path.c_str());
  CHECK(cmd.exit_now);
  CHECK(cmd.exit_code != 0);
  CHECK(cmd.output.find("http_prot") != std::string::npos);
}

TEST_CASE("a config file with a syntax error gives its line and column") {
  auto path = write_temp("{\n  \"http_port\": 1\n  \"tcp_port\": 2\n}\n");
  auto cmd = parse({"--config", path});
  std::remove(path.c_str());
  CHECK(cmd.exit_now);
  CHECK(cmd.exit_code != 0);
  CHECK(cmd.output.find("'" + path + "' is not valid JSON")
        != std::string::npos);
  CHECK(cmd.output.find("line 3, column ") != std::string::npos);
  CHECK(cmd.output.find("json.exception") == std::string::npos);
}

TEST_CASE("a config value of the wrong type names the expected type") {
  auto refusal = [](const std::string& text) {
    auto path = write_temp(text);
    auto cmd = parse({"--config", path});
    std::remove(path.c_str());
    CHECK(cmd.exit_now);
    return cmd.output;
  };
  CHECK(refusal(R"({"http_port": "3666"})")
        == "tlmd: http_port must be an integer (got a string)\n");
  CHECK(refusal(R"({"tcp_port": 3667.5})")
          .find("tcp_port must be an integer (got a number with a fraction")
        != std::string::npos);
  CHECK(refusal(R"({"storage": 1})")
        == "tlmd: storage must be a string (got an integer)\n");
  CHECK(refusal(R"({"http_port": 1e3})").find("must be an integer")
        != std::string::npos);
  // Too large for the field: refused instead of wrapping around.
  CHECK(refusal(R"({"http_threads": 4294967297})")
          .find("http_threads must be an integer from")
        != std::string::npos);
  CHECK(refusal("[1]").find("is not a JSON object (got an array)")
        != std::string::npos);
}

TEST_CASE("an unknown backend type is reported as such") {
  auto path = write_temp(R"({"backends": {"x": {"type": "influx"}}})");
  auto cmd = parse({"--config", path});
  std::remove(path.c_str());
  CHECK(cmd.exit_now);
  CHECK(cmd.output.find("backends.x.type 'influx' is not a backend type; "
                        "known: ")
        != std::string::npos);
  for (auto type : cloud_backend_types())
    CHECK(cmd.output.find(type) != std::string::npos);
  CHECK(cmd.output.find("default_backend") == std::string::npos);
  // The default backend is still checked, once the types are right.
  path = write_temp(R"({"backends": {"x": {"type": "local"}}})");
  cmd = parse({"--config", path});
  std::remove(path.c_str());
  CHECK(cmd.output.find("default_backend 'local'") != std::string::npos);
}

TEST_CASE("inconsistent settings are refused") {
  CHECK(parse({"--min-ttl=5000", "--max-ttl=1000"}).exit_now);
  CHECK(parse({"--default-ttl=10", "--min-ttl=1000"}).exit_now);
  CHECK(parse({"--http-port=70000"}).exit_now);
  CHECK(parse({"--no-such-flag"}).exit_now);
}

TEST_CASE("--help documents every flag and exits 0") {
  auto cmd = parse({"--help"});
  CHECK(cmd.exit_now);
  CHECK(cmd.exit_code == 0);
  for (auto flag :
       {"--config", "--bind", "--http-port", "--tcp-port", "--storage",
        "--default-ttl", "--min-ttl", "--max-ttl", "--api-key-file"})
    CHECK(cmd.output.find(flag) != std::string::npos);
}

TEST_CASE("backend settings are validated by their backend") {
  CHECK(make_cloud_backend("l", {{"type", "local"}}));
  auto bad_key = make_cloud_backend("l", {{"type", "local"}, {"colour", 1}});
  REQUIRE(!bad_key);
  CHECK(message_of(bad_key.error()).find("backends.l.colour")
        != std::string::npos);
  auto bad_type = make_cloud_backend("x", {{"type", "carrier-pigeon"}});
  REQUIRE(!bad_type);
  CHECK(message_of(bad_type.error()).find("carrier-pigeon")
        != std::string::npos);
}

TEST_CASE("API keys: any configured key passes, others do not") {
  auto keys = api_keys::of({"alpha", "beta"});
  CHECK(keys.allows("alpha"));
  CHECK(keys.allows("beta"));
  CHECK(!keys.allows("alph"));
  CHECK(!keys.allows(""));
  CHECK(keys.allows_header("Bearer beta"));
  CHECK(!keys.allows_header("beta"));
  CHECK(!keys.allows_header("Basic YWxwaGE="));
  CHECK(api_keys{}.allows("anything"));
  auto path = write_temp("# comment\n\n  gamma  \n");
  auto loaded = api_keys::load(path);
  std::remove(path.c_str());
  REQUIRE(loaded);
  CHECK(loaded->allows("gamma"));
}

TEST_CASE("token_server's settings: prefix, dump and a bounded lifetime") {
  auto cmd = parse({});
  REQUIRE(!cmd.exit_now);
  CHECK(cmd.config.token_server.prefix == "/");
  CHECK(!cmd.config.token_server.dump);
  CHECK(cmd.config.token_server.lifetime_ms == 7'200'000);
  cmd = parse(
    {"--token-server-prefix", "/ts/", "--dump", "--token-lifetime", "1800000"});
  REQUIRE(!cmd.exit_now);
  CHECK(cmd.config.token_server.prefix == "/ts/");
  CHECK(cmd.config.token_server.dump);
  CHECK(cmd.config.token_server.lifetime_ms == 1'800'000);
  // Unset, it follows a narrower max ttl; given, it must fit token_server's
  // bounds and ours.
  CHECK(parse({"--max-ttl", "60000"}).config.token_server.lifetime_ms == 60000);
  CHECK(parse({"--token-lifetime", "60000"}).exit_now);
  auto narrow = parse({"--token-lifetime", "7200000", "--max-ttl", "3600000"});
  CHECK(narrow.exit_now);
  CHECK(narrow.output.find("token_lifetime_ms") != std::string::npos);
  for (auto bad : {"ts", "/ts", "/v1/", "/a?b/"}) {
    auto refused = parse({"--token-server-prefix", bad});
    CHECK(refused.exit_now);
    CHECK(refused.output.find("token_server_prefix") != std::string::npos);
  }
  auto path = write_temp(R"({"token_lifetime_ms": 60000})");
  auto file = parse({"--config", path});
  std::remove(path.c_str());
  CHECK(file.exit_now);
  CHECK(file.output.find("1800000 to 345600000") != std::string::npos);
}
