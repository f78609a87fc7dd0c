#include "api/http_framing.hpp"

#include <Poco/String.h>

namespace tlm {

namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

/// Percent-decodes `text`; nothing when an escape is invalid or is a NUL.
std::optional<std::string> decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size())
        return std::nullopt;
      int hi = hex_value(text[i + 1]);
      int lo = hex_value(text[i + 2]);
      if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
        return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

/// A decimal length that fits 64 bits.
std::optional<uint64_t> parse_length(std::string_view text) {
  if (text.empty())
    return std::nullopt;
  uint64_t n = 0;
  for (char c : text) {
    if (!is_digit(c))
      return std::nullopt;
    auto digit = static_cast<uint64_t>(c - '0');
    if (n > (UINT64_MAX - digit) / 10)
      return std::nullopt;
    n = n * 10 + digit;
  }
  return n;
}

framing_error bad_request(std::string message) {
  return {400, std::move(message)};
}

} // namespace

std::optional<framing_error> check_version(const std::string& version) {
  if (version == "HTTP/1.1" || version == "HTTP/1.0")
    return std::nullopt;
  if (version.size() == 8 && version.compare(0, 5, "HTTP/") == 0
      && is_digit(version[5]) && version[6] == '.' && is_digit(version[7]))
    return framing_error{505, "HTTP version " + version
                                + " is not supported; use HTTP/1.1"};
  return bad_request("the request line has no valid HTTP version");
}

body_framing read_framing(const Poco::Net::MessageHeader& header) {
  body_framing result;
  int codings = 0;
  std::string coding;
  for (auto& [name, value] : header) {
    if (Poco::icompare(name, "Transfer-Encoding") == 0) {
      ++codings;
      coding = std::string{trim(value)};
      continue;
    }
    if (Poco::icompare(name, "Content-Length") != 0)
      continue;
    // A list ("5, 5") is several lengths in one field (RFC 9110, 8.6).
    std::string_view rest = value;
    do {
      auto comma = rest.find(',');
      auto item = trim(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view{}
                                             : rest.substr(comma + 1);
      auto n = parse_length(item);
      if (!n) {
        result.error = bad_request("Content-Length must be a decimal number "
                                   "of bytes below 2^64");
        return result;
      }
      if (result.length && *result.length != *n) {
        result.error = bad_request("the request has differing "
                                   "Content-Length values");
        return result;
      }
      result.length = n;
    } while (!rest.empty());
  }
  if (codings > 0) {
    if (codings > 1 || Poco::icompare(coding, "chunked") != 0) {
      result.error = framing_error{501, "of the transfer codings only a "
                                        "single 'chunked' is supported"};
      return result;
    }
    if (result.length) {
      result.error = bad_request("a request may not have both "
                                 "Content-Length and Transfer-Encoding");
      return result;
    }
    result.chunked = true;
  }
  return result;
}

http_target parse_target(const std::string& target) {
  http_target result;
  std::string_view rest = target;
  if (auto scheme = rest.find("://"); !rest.empty() && rest.front() != '/'
                                      && scheme != std::string_view::npos) {
    // absolute-form: the path starts after the authority
    auto path = rest.find('/', scheme + 3);
    rest = path == std::string_view::npos ? std::string_view{"/"}
                                          : rest.substr(path);
  }
  if (rest.empty() || rest.front() != '/') {
    result.error = "the request target must be a path starting with '/'";
    return result;
  }
  if (auto hash = rest.find('#'); hash != std::string_view::npos)
    rest = rest.substr(0, hash);
  std::string_view query;
  if (auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  auto fail = [&] {
    result.segments.clear();
    result.query.clear();
    result.error = "the request target has a '%' that is not a valid "
                   "escape (%XX, not %00)";
    return result;
  };
  rest.remove_prefix(1);
  for (;;) {
    auto slash = rest.find('/');
    auto segment = decode(rest.substr(0, slash), false);
    if (!segment)
      return fail();
    result.segments.push_back(std::move(*segment));
    if (slash == std::string_view::npos)
      break;
    rest = rest.substr(slash + 1);
  }
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{}
                                          : query.substr(amp + 1);
    if (pair.empty())
      continue;
    auto eq = pair.find('=');
    auto key = decode(pair.substr(0, eq), true);
    auto value = decode(eq == std::string_view::npos ? std::string_view{}
                                                     : pair.substr(eq + 1),
                        true);
    if (!key || !value)
      return fail();
    result.query.emplace_back(std::move(*key), std::move(*value));
  }
  return result;
}

int hex_value(char c) {
  if (is_digit(c))
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

} // namespace tlm
