#include "api/envelope.hpp"

#include "api/protocol.hpp"

namespace tlm {

namespace {

using json = nlohmann::json;

/// Keeps the top-level `action` and `request_id`; every other value is
/// seen and dropped.
class envelope_reader : public nlohmann::json_sax<json> {
public:
  explicit envelope_reader(envelope& out) : out_(out) {
    // nop
  }

  bool null() override {
    return scalar(nullptr);
  }

  bool boolean(bool x) override {
    return scalar(x);
  }

  bool number_integer(number_integer_t x) override {
    return scalar(x);
  }

  bool number_unsigned(number_unsigned_t x) override {
    return scalar(x);
  }

  bool number_float(number_float_t x, const string_t&) override {
    return scalar(x);
  }

  bool string(string_t& x) override {
    if (depth_ == 1 && field_ == field::action)
      out_.action = x;
    else if (depth_ == 1 && field_ == field::request_id)
      out_.request_id = json(x);
    return true;
  }

  bool binary(binary_t&) override {
    return true;
  }

  bool start_object(std::size_t) override {
    if (depth_ == 0)
      is_object_ = true;
    ++depth_;
    return true;
  }

  bool key(string_t& x) override {
    if (depth_ == 1)
      field_ = x == "action"       ? field::action
               : x == "request_id" ? field::request_id
                                   : field::other;
    return true;
  }

  bool end_object() override {
    --depth_;
    return true;
  }

  bool start_array(std::size_t) override {
    ++depth_;
    return true;
  }

  bool end_array() override {
    --depth_;
    return true;
  }

  bool parse_error(std::size_t, const std::string&,
                   const nlohmann::detail::exception&) override {
    failed_ = true;
    return false;
  }

  bool ok() const {
    return is_object_ && !failed_;
  }

private:
  enum class field { other, action, request_id };

  /// A number at the top level is the current field's value; only a
  /// request id takes one.
  template <class T>
  bool scalar(T x) {
    if (depth_ == 1 && field_ == field::request_id) {
      if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>)
        out_.request_id = json(x);
    }
    return true;
  }

  envelope& out_;
  int depth_ = 0;
  field field_ = field::other;
  bool is_object_ = false;
  bool failed_ = false;
};

} // namespace

envelope peek_envelope(std::string_view text) {
  envelope result;
  if (!nesting_ok(text))
    return result;
  envelope_reader reader{result};
  json::sax_parse(text.begin(), text.end(), &reader);
  if (!reader.ok())
    return envelope{};
  result.valid = true;
  return result;
}

} // namespace tlm
