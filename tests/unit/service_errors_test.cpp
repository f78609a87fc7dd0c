// The parts every cloud backend shares: the one table from service status
// to our codes, the cut of service text, and the lease mark.

#include <doctest/doctest.h>

#include "cloud_backends/lease_mark.hpp"
#include "cloud_backends/service_errors.hpp"
#include "core/error.hpp"

using namespace tlm;

namespace {

service_errors errors() {
  return {"InfluxDB 'm'", "http://db:8086", "admin token",
          "backends.m.token_file"};
}

} // namespace

TEST_CASE("service_errors: one table from status to our codes") {
  auto e = errors();
  struct row {
    int status;
    bool client_request;
    ec code;
  };
  row rows[] = {
    {401, false, ec::backend_error},       {403, true, ec::backend_error},
    {400, true, ec::invalid_request},      {422, true, ec::invalid_request},
    {400, false, ec::backend_error},       {429, false, ec::overloaded},
    {500, false, ec::backend_unavailable}, {503, true, ec::backend_unavailable},
    {404, false, ec::backend_error},
  };
  for (auto& r : rows) {
    CAPTURE(r.status);
    CAPTURE(r.client_request);
    CHECK(code_of(e.of_status(r.status, "why", r.client_request)) == r.code);
  }
  auto text = message_of(e.of_status(401, "unauthorized", false));
  CHECK(text
        == "InfluxDB 'm' rejected the admin token (HTTP 401: "
           "unauthorized): check backends.m.token_file");
  CHECK(message_of(e.of_status(503, "", false))
        == "InfluxDB 'm' is unavailable (HTTP 503)");
  CHECK(message_of(e.timed_out())
        == "InfluxDB 'm' at http://db:8086 did not answer in time");
  CHECK(code_of(e.unreachable("refused")) == ec::backend_unavailable);
  CHECK(code_of(e.untrusted("bad cert")) == ec::backend_error);
}

TEST_CASE("clip: service text is cut to 240 bytes, never inside UTF-8") {
  CHECK(clip("short") == "short");
  std::string text(239, 'a');
  text += "\xC3\xA9\xC3\xA9"; // é é: the first one straddles byte 240
  auto cut = clip(text);
  CHECK(cut.size() == 239);
  CHECK(clip(std::string(300, 'b')).size() == 240);
  CHECK(message_of(errors().refused(text)).find("\xC3") == std::string::npos);
}

TEST_CASE("lease_mark: written and read back the same way") {
  CHECK(description_mark.of("abc") == "tlm:abc");
  CHECK(user_name_mark.of("abc") == "tlm_abc");
  CHECK(user_name_mark.lease_id_in("tlm_abc") == "abc");
  CHECK(!user_name_mark.lease_id_in("default"));
  CHECK(!description_mark.lease_id_in("tlm_abc"));
  auto token = user_name_mark.token("tlm_abc", "", "tlm_abc");
  REQUIRE(token);
  CHECK(token->lease_id == "abc");
  CHECK(token->backend_id == "tlm_abc");
  CHECK(token->extra == "{}"); // the lease id travels typed, never in extra
  CHECK(!description_mark.token("1", "", "theirs"));
}
