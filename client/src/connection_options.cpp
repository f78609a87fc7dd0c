#include "tlm/connection_options.hpp"

#include <charconv>
#include <fstream>

namespace tlm::inline client_api {

namespace {

failure bad_address(std::string_view address, std::string why) {
  return {errc::invalid_request, "address '" + std::string{address}
                                   + "' is not tcp://host:port, "
                                     "http://host:port or host:port: "
                                   + why};
}

std::string_view trim(std::string_view s) {
  auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos)
    return {};
  auto last = s.find_last_not_of(" \t\r\n");
  return s.substr(first, last - first + 1);
}

} // namespace

result<done> parse_address(std::string_view address, connection_options& opts) {
  std::string_view rest = address;
  auto scheme_end = rest.find("://");
  std::string_view scheme = "tcp";
  if (scheme_end != std::string_view::npos) {
    scheme = rest.substr(0, scheme_end);
    rest = rest.substr(scheme_end + 3);
  }
  if (scheme == "tcp" || scheme == "tls")
    opts.transport = transport_kind::tcp;
  else if (scheme == "http" || scheme == "https")
    opts.transport = transport_kind::http;
  else
    return bad_address(address, "unknown scheme '" + std::string{scheme} + "'");
  opts.tls.enabled = scheme == "tls" || scheme == "https";
  if (!rest.empty() && rest.back() == '/')
    rest.remove_suffix(1);
  auto colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0)
    return bad_address(address, "it needs a host and a port");
  auto host = rest.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  auto port_text = rest.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(),
                                   port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size()
      || port == 0 || port > 65535)
    return bad_address(address, "the port must be 1 to 65535");
  opts.host = std::string{host};
  opts.port = static_cast<uint16_t>(port);
  return done{};
}

result<std::string> read_api_key_file(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    return failure{errc::invalid_request,
                   "cannot read the API key file " + path};
  std::string line;
  while (std::getline(in, line)) {
    auto key = trim(line);
    if (!key.empty() && key.front() != '#')
      return std::string{key};
  }
  return failure{errc::invalid_request,
                 "the API key file " + path + " holds no key"};
}

} // namespace tlm::inline client_api
