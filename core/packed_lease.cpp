#include "core/packed_lease.hpp"

#include <cstring>

namespace tlm {

namespace {

constexpr size_t string_fields = 7;
constexpr std::string_view empty_meta = "{}";

void put_varint(std::string& out, size_t n) {
  while (n >= 0x80) {
    out.push_back(static_cast<char>((n & 0x7F) | 0x80));
    n >>= 7;
  }
  out.push_back(static_cast<char>(n));
}

size_t get_varint(const char*& p) {
  size_t n = 0;
  for (int shift = 0;; shift += 7) {
    auto byte = static_cast<unsigned char>(*p++);
    n |= static_cast<size_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0)
      return n;
  }
}

void put_field(std::string& out, std::string_view text) {
  put_varint(out, text.size());
  out.append(text);
}

std::string_view next_field(const char*& p) {
  auto n = get_varint(p);
  std::string_view result{p, n};
  p += n;
  return result;
}

} // namespace

bool parse_record_state(std::string_view text, record_state& out) {
  for (auto x : {record_state::active, record_state::pending,
                 record_state::revoking, record_state::irrevocable})
    if (text == to_string(x)) {
      out = x;
      return true;
    }
  return false;
}

const char* to_string(record_state x) {
  switch (x) {
    case record_state::active: return state_active;
    case record_state::pending: return state_pending;
    case record_state::revoking: return state_revoking;
    case record_state::irrevocable: return state_irrevocable;
  }
  return state_active;
}

packed_lease::packed_lease(const lease& x)
  : ttl_ms(x.ttl_ms),
    issued_ms(x.issued_ms),
    expires_ms(x.expires_ms),
    last_access_ms(x.last_access_ms),
    row_id(x.row_id),
    attempts(x.attempts),
    renewable(x.renewable),
    backend_id_is_id_(!x.id.empty() && x.backend_id == x.id) {
  parse_record_state(x.state, state);
  std::string text;
  text.reserve(16 + x.backend.size() + x.backend_id.size() + x.value.size());
  put_field(text, x.backend);
  put_field(text, backend_id_is_id_ ? std::string_view{} : x.backend_id);
  put_field(text, x.value);
  put_field(text, x.meta == empty_meta ? std::string_view{} : x.meta);
  put_field(text, x.description);
  put_field(text, x.last_error);
  put_field(text, x.scope);
  put_varint(text, x.tags.size());
  for (auto& tag : x.tags)
    put_field(text, tag);
  text_ = std::make_unique<char[]>(text.size());
  std::memcpy(text_.get(), text.data(), text.size());
}

std::string_view packed_lease::field(size_t i) const {
  if (!text_)
    return {};
  const char* p = text_.get();
  for (size_t k = 0; k < i; ++k)
    next_field(p);
  return next_field(p);
}

bool packed_lease::has_tag(std::string_view tag) const {
  if (!text_)
    return false;
  const char* p = text_.get();
  for (size_t k = 0; k < string_fields; ++k)
    next_field(p);
  for (auto n = get_varint(p); n > 0; --n)
    if (next_field(p) == tag)
      return true;
  return false;
}

lease packed_lease::unpack(std::string id) const {
  lease x;
  x.id = std::move(id);
  x.ttl_ms = ttl_ms;
  x.issued_ms = issued_ms;
  x.expires_ms = expires_ms;
  x.last_access_ms = last_access_ms;
  x.row_id = row_id;
  x.attempts = attempts;
  x.renewable = renewable;
  x.state = to_string(state);
  if (!text_)
    return x;
  const char* p = text_.get();
  x.backend = next_field(p);
  x.backend_id = next_field(p);
  if (backend_id_is_id_)
    x.backend_id = x.id;
  x.value = next_field(p);
  auto meta = next_field(p);
  x.meta = meta.empty() ? empty_meta : meta;
  x.description = next_field(p);
  x.last_error = next_field(p);
  x.scope = next_field(p);
  auto n = get_varint(p);
  x.tags.reserve(n);
  while (n-- > 0)
    x.tags.emplace_back(next_field(p));
  return x;
}

void packed_lease::set_last_error(std::string_view text) {
  // Without the id the flag cannot be worked out again: keep it (its
  // backend id field is empty either way).
  bool backend_id_is_id = backend_id_is_id_;
  auto x = unpack({});
  x.last_error = text;
  *this = packed_lease{x};
  backend_id_is_id_ = backend_id_is_id;
}

} // namespace tlm
