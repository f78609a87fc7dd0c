#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace tlm {

/// The two top-level fields of a message that decide how to treat it
/// before it is parsed for real: its `action` and its `request_id`.
struct envelope {
  /// False when the text is not a JSON object.
  bool valid = false;
  /// Empty when missing or not a string.
  std::string action;
  /// Set when it is a string or a number, as `parse_request` takes it.
  std::optional<nlohmann::json> request_id;
};

/// Reads the envelope of `text` with a SAX walk that keeps only those two
/// fields, so an unauthenticated client never makes us build a document.
envelope peek_envelope(std::string_view text);

} // namespace tlm
