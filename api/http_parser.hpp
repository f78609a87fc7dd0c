#pragma once

// An incremental HTTP/1.x request parser for an event loop: it looks at the
// bytes a connection has received so far and says whether a whole request
// is there, more bytes are needed, or the request is refused. No sockets,
// threads or clocks: reading, writing and deadlines are the caller's. The
// statuses and messages are those of the thread-per-connection server.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <Poco/Net/HTTPRequest.h>

#include "api/http_framing.hpp"
#include "core/error.hpp"

namespace tlm {

/// The most bytes a request's head may take, from its first byte (leading
/// empty lines included) to the empty line that ends it. Poco alone would
/// allow 100 fields of 8 KiB; no client of ours needs more than this.
constexpr size_t max_head_bytes = 64 * 1024;

/// One request read whole from a connection's bytes.
struct http_parsed {
  /// Method, URI, version and fields as Poco parsed them.
  Poco::Net::HTTPRequest head;
  /// The URI split and decoded (parse_target), already checked.
  http_target target;
  /// The body, de-chunked when it came chunked.
  std::string body;
};

/// What the parser found at the front of the buffer.
struct http_parse_result {
  enum class kind {
    need_more, ///< No whole request yet; call again when bytes arrive.
    request,   ///< `request` is set; `consumed` bytes belong to it.
    failure,   ///< Answer `status`, `message`, `code`, then close.
  };
  kind what = kind::need_more;
  /// Bytes at the front of the buffer the request took (`request` only).
  size_t consumed = 0;
  std::optional<http_parsed> request;
  int status = 0;
  std::string message;
  ec code = ec::invalid_request;
  /// Set on `need_more` once per request, when its head asks
  /// `Expect: 100-continue` and its body is still to come: the caller
  /// sends "HTTP/1.1 100 Continue\r\n\r\n".
  bool send_continue = false;
};

/// Reads the requests of one connection, one after the other. The buffer
/// passed to `parse` holds the connection's bytes after the last request
/// taken; between two calls bytes may only be appended to it, except that
/// after a `request` the caller erases its `consumed` bytes from the front.
/// The parser remembers how far it got, so each byte is looked at about
/// once however the bytes are split. After a `failure` the connection ends.
class http_request_parser {
public:
  /// What is at the front of `buffer`: the first request (pipelined ones
  /// stay in the buffer for the next call), a refusal, or not enough yet.
  http_parse_result parse(std::string_view buffer);

  /// For a connection whose peer closed with `buffer` unconsumed: true
  /// when it holds part of a request (more than empty lines), which will
  /// never be complete.
  bool holds_partial_request(std::string_view buffer) const;

private:
  /// Where a chunked body's decoding stands (RFC 9112, 7.1).
  enum class chunk_at {
    size,          ///< In the hex digits of a chunk size.
    size_space,    ///< Spaces after the digits, before `;` or the line end.
    extension,     ///< In a chunk extension, up to the line end.
    size_lf,       ///< The LF after the size line's CR.
    data,          ///< In a chunk's data.
    data_end,      ///< The line end after a chunk's data.
    data_lf,       ///< The LF after the data's CR.
    trailer_start, ///< At the start of a trailer line or the final line.
    trailer,       ///< In a trailer field line (read, then dropped).
    trailer_lf,    ///< The LF after a trailer line's CR.
    final_lf,      ///< The LF that ends the chunked body.
    done,
  };

  /// Poco's request-line tokens (method, URI, version) followed byte by
  /// byte, so that a line Poco will refuse is refused before its end.
  struct request_line_check {
    size_t position = 0;
    int token = 0;
    size_t length = 0;
    bool in_token = false;
  };

  http_parse_result parse_head(std::string_view buffer);
  http_parse_result accept_head(std::string_view buffer, size_t head_end);
  bool request_line_ok(std::string_view head);
  http_parse_result parse_body(std::string_view buffer);
  http_parse_result read_chunks(std::string_view buffer);
  bool step_size_line(char c, http_parse_result& out);
  bool end_size_line(char c, http_parse_result& out);
  bool step_after_data(char c, http_parse_result& out);
  http_parse_result wait_for_body();
  http_parse_result take(size_t consumed);

  // The head: where the request starts after leading empty lines, and how
  // far the search for the empty line that ends the head got.
  size_t start_ = 0;
  size_t scanned_ = 0;
  request_line_check line_;

  // The request whose head is accepted, and how its body is framed.
  std::optional<http_parsed> pending_;
  size_t body_start_ = 0;
  bool chunked_ = false;
  uint64_t length_ = 0;
  bool continue_asked_ = false;

  // A chunked body: the next byte to read and what it may be.
  size_t position_ = 0;
  chunk_at chunk_ = chunk_at::size;
  uint64_t chunk_left_ = 0;
  bool chunk_has_digits_ = false;
  size_t line_bytes_ = 0;
  bool line_has_colon_ = false;
  size_t trailer_bytes_ = 0;
};

} // namespace tlm
