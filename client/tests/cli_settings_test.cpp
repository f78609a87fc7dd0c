#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "cli/cli_settings.hpp"
#include "cli/exit_codes.hpp"

using namespace tlm;
using namespace tlm::cli;
namespace fs = std::filesystem;

namespace {

struct sandbox {
  fs::path dir;
  std::map<std::string, std::string> vars;

  sandbox() {
    char tmpl[] = "/tmp/tlm-cli-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
    vars["HOME"] = dir.string();
  }
  ~sandbox() {
    fs::remove_all(dir);
  }
  std::string write(const std::string& name, const std::string& text) {
    auto path = dir / name;
    fs::create_directories(path.parent_path());
    std::ofstream{path} << text;
    return path.string();
  }
  env_lookup env() const {
    return [this](const char* name) -> std::optional<std::string> {
      auto it = vars.find(name);
      if (it == vars.end())
        return std::nullopt;
      return it->second;
    };
  }
};

} // namespace

TEST_SUITE_BEGIN("cli_settings");

TEST_CASE("nothing given: the default address, no key") {
  sandbox box;
  auto opts = resolve_connection({}, box.env());
  REQUIRE(opts);
  CHECK(opts->transport == transport_kind::tcp);
  CHECK(opts->host == "127.0.0.1");
  CHECK(opts->port == 3667);
  CHECK(opts->api_key.empty());
}

TEST_CASE("flags beat the environment, which beats the config file") {
  sandbox box;
  auto key_a = box.write("a.key", "# comment\n\n  key-a  \n");
  auto key_b = box.write("b.key", "key-b\n");
  box.write(".config/tlm/config.json",
            R"({"addr":"tcp://127.0.0.1:1001","api_key_file":")" + key_a
              + R"(","timeout_ms":1234})");
  auto from_file = resolve_connection({}, box.env());
  REQUIRE(from_file);
  CHECK(from_file->port == 1001);
  CHECK(from_file->api_key == "key-a");
  CHECK(from_file->request_timeout == std::chrono::milliseconds{1234});

  box.vars["TLM_ADDR"] = "http://localhost:1002";
  box.vars["TLM_API_KEY_FILE"] = key_b;
  auto from_env = resolve_connection({}, box.env());
  REQUIRE(from_env);
  CHECK(from_env->transport == transport_kind::http);
  CHECK(from_env->port == 1002);
  CHECK(from_env->api_key == "key-b");

  global_flags flags;
  flags.addr = "127.0.0.1:1003";
  flags.api_key_file = key_a;
  auto from_flags = resolve_connection(flags, box.env());
  REQUIRE(from_flags);
  CHECK(from_flags->transport == transport_kind::tcp);
  CHECK(from_flags->port == 1003);
  CHECK(from_flags->api_key == "key-a");
}

TEST_CASE("TLM_CONFIG and --config choose the config file") {
  sandbox box;
  auto one = box.write("one.json", R"({"addr":"tcp://h:1"})");
  auto two = box.write("two.json", R"({"addr":"tcp://h:2"})");
  box.vars["TLM_CONFIG"] = one;
  CHECK(resolve_connection({}, box.env())->port == 1);
  global_flags flags;
  flags.config = two;
  CHECK(resolve_connection(flags, box.env())->port == 2);
}

TEST_CASE("config mistakes are named") {
  sandbox box;
  global_flags flags;
  flags.config = box.write("c.json", R"({"address":"tcp://h:1"})");
  auto r = resolve_connection(flags, box.env());
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("'address' is not a setting")
        != std::string::npos);
  flags.config = box.write("d.json", R"({"timeout_ms":"soon"})");
  CHECK(resolve_connection(flags, box.env()).error().message.find("integer")
        != std::string::npos);
  flags.config = (box.dir / "missing.json").string();
  CHECK(
    resolve_connection(flags, box.env()).error().message.find("missing.json")
    != std::string::npos);
}

TEST_CASE("addresses: schemes, ports, TLS asked for") {
  connection_options o;
  CHECK(parse_address("tcp://10.0.0.1:99", o));
  CHECK(o.host == "10.0.0.1");
  CHECK_FALSE(o.tls.enabled);
  CHECK(parse_address("https://tlm.example:443", o));
  CHECK(o.transport == transport_kind::http);
  CHECK(o.tls.enabled);
  CHECK(parse_address("[::1]:3667", o));
  CHECK(o.host == "::1");
  CHECK(parse_address("ftp://h:1", o).error().message.find("scheme")
        != std::string::npos);
  CHECK(parse_address("tcp://h:0", o).error().message.find("port")
        != std::string::npos);
  CHECK(parse_address("tcp://h", o).error().message.find("port")
        != std::string::npos);
}

TEST_CASE("an API key file without a key is refused") {
  sandbox box;
  auto empty = box.write("empty.key", "# nothing\n\n");
  CHECK(read_api_key_file(empty).error().message.find("holds no key")
        != std::string::npos);
}

TEST_CASE("every failure code has its exit code class") {
  CHECK(exit_code_for(errc::connection_failed) == exit_connection);
  CHECK(exit_code_for(errc::timeout) == exit_connection);
  CHECK(exit_code_for(errc::unsupported) == exit_connection);
  CHECK(exit_code_for(errc::unauthorized) == exit_unauthorized);
  CHECK(exit_code_for(errc::not_found) == exit_not_found);
  CHECK(exit_code_for(errc::invalid_token) == exit_not_found);
  CHECK(exit_code_for(errc::invalid_request) == exit_refused);
  CHECK(exit_code_for(errc::not_renewable) == exit_refused);
  CHECK(exit_code_for(errc::backend_unavailable) == exit_server);
  CHECK(exit_code_for(errc::overloaded) == exit_server);
  CHECK(exit_code_for(errc::cache_error) == exit_usage);
}

TEST_SUITE_END();
