#include "api/http_parser.hpp"

#include <algorithm>

#include <Poco/Ascii.h>
#include <Poco/Exception.h>
#include <Poco/MemoryStream.h>

#include "api/protocol.hpp"

namespace tlm {

namespace {

using kind = http_parse_result::kind;

constexpr auto npos = std::string_view::npos;

/// The longest request-line tokens Poco's HTTPRequest::read takes (its
/// limits are private there): method, URI, version.
constexpr size_t poco_token_limits[] = {32, 16384, 8};

/// A chunk size line (digits and extensions) longer than this is refused:
/// extensions carry nothing we read, and would otherwise grow unbounded.
constexpr size_t max_chunk_line_bytes = 4096;

/// Trailers are read and dropped, within the bound of a head.
constexpr size_t max_trailer_bytes = max_head_bytes;

const char* const malformed_head = "the request header is malformed or too "
                                   "long";
const char* const malformed_chunks = "the chunked body is malformed";

http_parse_result refusal(int status, std::string message,
                          ec code = ec::invalid_request) {
  http_parse_result out;
  out.what = kind::failure;
  out.status = status;
  out.message = std::move(message);
  out.code = code;
  return out;
}

http_parse_result too_large() {
  return refusal(413, "a message must be at most 1 MiB", ec::too_large);
}

/// Sets `out` to the refusal of a malformed chunked body; returns false.
bool chunks_malformed(http_parse_result& out) {
  out = refusal(400, malformed_chunks);
  return false;
}

bool is_line_break(char c) {
  return c == '\r' || c == '\n';
}

/// Searches `text` from `from` for the empty line that ends a head, CRLF
/// or a bare LF as Poco takes it. Returns the offset just past it, or npos
/// with `from` set to where the search resumes when more bytes came.
size_t find_head_end(std::string_view text, size_t& from) {
  for (;;) {
    auto lf = text.find('\n', from);
    if (lf == npos) {
      from = text.size();
      return npos;
    }
    bool cr_next = lf + 1 < text.size() && text[lf + 1] == '\r';
    if (lf + 1 == text.size() || (cr_next && lf + 2 == text.size())) {
      from = lf; // undecided: the next bytes tell
      return npos;
    }
    if (text[lf + 1] == '\n')
      return lf + 2;
    if (cr_next && text[lf + 2] == '\n')
      return lf + 3;
    from = lf + 1;
  }
}

/// Parses a complete head with Poco, as the blocking server did.
std::optional<Poco::Net::HTTPRequest> read_head(std::string_view head) {
  Poco::Net::HTTPRequest request;
  try {
    Poco::MemoryInputStream in(head.data(), head.size());
    request.read(in);
    // Poco ends the fields at a line starting with a lone CR; what it left
    // of the head would be read differently by anyone else.
    if (in.peek() != std::char_traits<char>::eof())
      return std::nullopt;
  } catch (const Poco::Exception&) {
    return std::nullopt;
  }
  return request;
}

} // namespace

// -- the head -----------------------------------------------------------------

http_parse_result http_request_parser::parse(std::string_view buffer) {
  auto out = pending_ ? parse_body(buffer) : parse_head(buffer);
  if (out.what == kind::failure)
    *this = http_request_parser{};
  return out;
}

bool http_request_parser::holds_partial_request(std::string_view buffer) const {
  return pending_ || buffer.find_first_not_of("\r\n") != npos;
}

http_parse_result http_request_parser::parse_head(std::string_view buffer) {
  auto window = buffer.substr(0, max_head_bytes);
  // Empty lines before a request line are ignored (RFC 9112, 2.2).
  while (start_ < window.size() && is_line_break(window[start_]))
    ++start_;
  scanned_ = std::max(scanned_, start_);
  auto head_end = find_head_end(window, scanned_);
  if (!request_line_ok(window.substr(0, head_end)))
    return refusal(400, malformed_head);
  if (head_end != npos)
    return accept_head(buffer, head_end);
  if (buffer.size() > max_head_bytes)
    return refusal(400, malformed_head);
  return {};
}

bool http_request_parser::request_line_ok(std::string_view head) {
  auto& l = line_;
  l.position = std::max(l.position, start_);
  for (; l.token < 3 && l.position < head.size(); ++l.position) {
    auto c = static_cast<unsigned char>(head[l.position]);
    if (Poco::Ascii::isSpace(c)) {
      if (l.in_token) {
        ++l.token;
        l.length = 0;
        l.in_token = false;
      }
    } else if (++l.length > poco_token_limits[l.token]) {
      return false;
    } else {
      l.in_token = true;
    }
  }
  return true;
}

/// Checks the head in the blocking server's order: Poco's parse, version,
/// framing, length, target.
http_parse_result http_request_parser::accept_head(std::string_view buffer,
                                                   size_t head_end) {
  auto head = read_head(buffer.substr(start_, head_end - start_));
  if (!head)
    return refusal(400, malformed_head);
  if (auto err = check_version(head->getVersion()))
    return refusal(err->status, err->message);
  auto framing = read_framing(*head);
  if (framing.error)
    return refusal(framing.error->status, framing.error->message);
  if (framing.length && *framing.length > max_message_bytes)
    return too_large();
  auto target = parse_target(head->getURI());
  if (target.error)
    return refusal(400, *target.error);
  chunked_ = framing.chunked;
  length_ = framing.length.value_or(0);
  // An HTTP/1.0 client's expectation is ignored (RFC 9110, 10.1.1).
  continue_asked_ = (chunked_ || length_ > 0) && head->getExpectContinue()
                    && head->getVersion() != Poco::Net::HTTPMessage::HTTP_1_0;
  body_start_ = head_end;
  position_ = head_end;
  pending_ = http_parsed{std::move(*head), std::move(target), {}};
  return parse_body(buffer);
}

// -- the body -----------------------------------------------------------------

http_parse_result http_request_parser::parse_body(std::string_view buffer) {
  if (chunked_)
    return read_chunks(buffer);
  // Without a length and without chunks a request has no body (RFC 9112,
  // 6.3): length_ is 0.
  if (buffer.size() < body_start_ || buffer.size() - body_start_ < length_)
    return wait_for_body();
  pending_->body.assign(buffer.substr(body_start_, length_));
  return take(body_start_ + length_);
}

http_parse_result http_request_parser::wait_for_body() {
  http_parse_result out;
  out.send_continue = continue_asked_;
  continue_asked_ = false;
  return out;
}

http_parse_result http_request_parser::take(size_t consumed) {
  http_parse_result out;
  out.what = kind::request;
  out.consumed = consumed;
  out.request = std::move(pending_);
  *this = http_request_parser{};
  return out;
}

http_parse_result http_request_parser::read_chunks(std::string_view buffer) {
  auto& body = pending_->body;
  http_parse_result out;
  while (position_ < buffer.size() && chunk_ != chunk_at::done) {
    if (chunk_ == chunk_at::data) {
      auto n = std::min<uint64_t>(chunk_left_, buffer.size() - position_);
      body.append(buffer.substr(position_, n));
      position_ += n;
      chunk_left_ -= n;
      if (chunk_left_ == 0)
        chunk_ = chunk_at::data_end;
      continue;
    }
    char c = buffer[position_++];
    bool ok = chunk_ < chunk_at::data ? step_size_line(c, out)
                                      : step_after_data(c, out);
    if (!ok)
      return out;
  }
  if (chunk_ != chunk_at::done)
    return wait_for_body();
  return take(position_);
}

/// One byte of `size [; extension] CRLF`.
bool http_request_parser::step_size_line(char c, http_parse_result& out) {
  if (++line_bytes_ > max_chunk_line_bytes)
    return chunks_malformed(out);
  switch (chunk_) {
    case chunk_at::size:
      if (auto digit = hex_value(c); digit >= 0) {
        chunk_left_ = chunk_left_ * 16 + static_cast<uint64_t>(digit);
        chunk_has_digits_ = true;
        // Refused once the size says the body will be too large, before
        // its bytes are waited for.
        if (chunk_left_ > max_message_bytes - pending_->body.size()) {
          out = too_large();
          return false;
        }
        return true;
      }
      if (!chunk_has_digits_)
        return chunks_malformed(out);
      chunk_ = chunk_at::size_space;
      [[fallthrough]];
    case chunk_at::size_space:
      if (c == ' ' || c == '\t')
        return true;
      if (c == ';') {
        chunk_ = chunk_at::extension;
        return true;
      }
      return end_size_line(c, out);
    case chunk_at::extension:
      return is_line_break(c) ? end_size_line(c, out) : true;
    case chunk_at::size_lf: return end_size_line(c, out);
    default: return chunks_malformed(out);
  }
}

/// The CR or LF that ends a size line; then the chunk's data, or the
/// trailers after the last chunk (size 0).
bool http_request_parser::end_size_line(char c, http_parse_result& out) {
  if (c == '\r' && chunk_ != chunk_at::size_lf) {
    chunk_ = chunk_at::size_lf;
    return true;
  }
  if (c != '\n')
    return chunks_malformed(out);
  chunk_ = chunk_left_ == 0 ? chunk_at::trailer_start : chunk_at::data;
  chunk_has_digits_ = false;
  line_bytes_ = 0;
  return true;
}

/// One byte of the line end after data, of a trailer line, or of the
/// final line.
bool http_request_parser::step_after_data(char c, http_parse_result& out) {
  switch (chunk_) {
    case chunk_at::data_end:
      if (c == '\r') {
        chunk_ = chunk_at::data_lf;
        return true;
      }
      [[fallthrough]];
    case chunk_at::data_lf:
      if (c != '\n')
        return chunks_malformed(out);
      chunk_ = chunk_at::size;
      return true;
    case chunk_at::trailer_start:
      if (is_line_break(c)) {
        chunk_ = c == '\r' ? chunk_at::final_lf : chunk_at::done;
        return true;
      }
      chunk_ = chunk_at::trailer;
      line_has_colon_ = false;
      [[fallthrough]];
    case chunk_at::trailer:
      if (++trailer_bytes_ > max_trailer_bytes)
        return chunks_malformed(out);
      if (!is_line_break(c)) {
        line_has_colon_ = line_has_colon_ || c == ':';
        return true;
      }
      // A trailer is a field line: a request line here is a miscounted
      // body, not a trailer.
      if (!line_has_colon_)
        return chunks_malformed(out);
      chunk_ = c == '\r' ? chunk_at::trailer_lf : chunk_at::trailer_start;
      return true;
    case chunk_at::trailer_lf:
    case chunk_at::final_lf:
      if (c != '\n')
        return chunks_malformed(out);
      chunk_ = chunk_ == chunk_at::final_lf ? chunk_at::done
                                            : chunk_at::trailer_start;
      return true;
    default: return chunks_malformed(out);
  }
}

} // namespace tlm
