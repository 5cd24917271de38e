// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/json.hpp"

#include <boost/container/small_vector.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <boost/json/value_stack.hpp>

#include <algorithm>
#include <cmath>

namespace fwdepot {
namespace {

namespace json = boost::json;
using boost::system::error_code;

// A basic_parser handler that builds the value (as json::parse does, on a value_stack) and
// refuses what json::parse would let through: a duplicate key (json::parse keeps the last one)
// and a number too large for a double. One pass: the check-in path parses a body per request,
// and a small document's bookkeeping takes no allocation.
class StrictHandler {
 public:
  static constexpr std::size_t max_array_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_object_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_string_size = static_cast<std::size_t>(-1);
  static constexpr std::size_t max_key_size = static_cast<std::size_t>(-1);

  explicit StrictHandler(json::storage_ptr sp) : stack_({}, temp_, sizeof temp_) {
    stack_.reset(std::move(sp));
  }

  bool on_document_begin(error_code&) { return true; }
  bool on_document_end(error_code&) { return true; }
  bool on_array_begin(error_code&) { return true; }
  bool on_array_end(std::size_t n, error_code&) {
    stack_.push_array(n);
    return true;
  }
  bool on_object_begin(error_code&) {
    object_keys_.push_back(keys_.size());
    return true;
  }
  bool on_object_end(std::size_t n, error_code&) {
    keys_.resize(object_keys_.back());
    object_keys_.pop_back();
    stack_.push_object(n);
    return true;
  }
  bool on_string_part(json::string_view s, std::size_t, error_code&) {
    stack_.push_chars(s);
    return true;
  }
  bool on_string(json::string_view s, std::size_t, error_code&) {
    stack_.push_string(s);
    return true;
  }
  bool on_key_part(json::string_view s, std::size_t, error_code&) {
    stack_.push_chars(s);
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, error_code& ec) {
    key_.append(s.data(), s.size());
    // The keys of the innermost open object: objects in our documents are small, so a scan
    // beats a set here.
    const auto first = keys_.begin() + static_cast<std::ptrdiff_t>(object_keys_.back());
    if (std::find(first, keys_.end(), key_) != keys_.end()) {
      duplicate_ = key_;
      ec = make_error_code(core::error::malformed_json);
      return false;
    }
    keys_.push_back(std::move(key_));
    key_.clear();
    stack_.push_key(s);
    return true;
  }
  bool on_number_part(json::string_view, error_code&) { return true; }
  bool on_int64(std::int64_t i, json::string_view, error_code&) {
    stack_.push_int64(i);
    return true;
  }
  bool on_uint64(std::uint64_t u, json::string_view, error_code&) {
    stack_.push_uint64(u);
    return true;
  }
  // A number too large for a double would come back as infinity, which JSON cannot express:
  // serialized again it would not be JSON at all.
  bool on_double(double d, json::string_view, error_code& ec) {
    if (!std::isfinite(d)) {
      out_of_range_ = true;
      ec = make_error_code(core::error::malformed_json);
      return false;
    }
    stack_.push_double(d);
    return true;
  }
  bool on_bool(bool b, error_code&) {
    stack_.push_bool(b);
    return true;
  }
  bool on_null(error_code&) {
    stack_.push_null();
    return true;
  }
  bool on_comment_part(json::string_view, error_code&) { return true; }
  bool on_comment(json::string_view, error_code&) { return true; }

  const std::string& duplicate() const { return duplicate_; }
  bool out_of_range() const { return out_of_range_; }
  json::value release() { return stack_.release(); }

 private:
  unsigned char temp_[512];  // the value stack's first working memory
  json::value_stack stack_;
  // Of every open object, outermost first, and where each open object's keys start in keys_.
  boost::container::small_vector<std::string, 8> keys_;
  boost::container::small_vector<std::size_t, 4> object_keys_;
  std::string key_;
  std::string duplicate_;
  bool out_of_range_ = false;
};

Error field_error(core::error kind, std::string_view name, std::string_view why) {
  return Error(kind, "field '" + std::string(name) + "': " + std::string(why));
}

}  // namespace

result<json::value> parse_json_strict(std::string_view text, const JsonLimits& limits,
                                      json::storage_ptr sp) {
  if (text.size() > limits.max_bytes) {
    return Error(core::error::document_too_large,
                 std::to_string(text.size()) + " bytes, limit " + std::to_string(limits.max_bytes));
  }
  json::parse_options options;
  options.max_depth = limits.max_depth;
  options.allow_comments = false;
  options.allow_trailing_commas = false;
  options.allow_invalid_utf8 = false;

  json::basic_parser<StrictHandler> parser(options, std::move(sp));
  error_code ec;
  const std::size_t used = parser.write_some(false, text.data(), text.size(), ec);
  if (!parser.handler().duplicate().empty()) {
    return Error(core::error::malformed_json,
                 "duplicate key '" + parser.handler().duplicate() + "'");
  }
  if (parser.handler().out_of_range()) {
    return Error(core::error::malformed_json, "a number out of the range of a double");
  }
  if (ec) {
    return Error(core::error::malformed_json, ec.message());
  }
  if (used != text.size()) {
    return Error(core::error::malformed_json, "trailing data after the JSON value");
  }
  return parser.handler().release();
}

namespace json_field {

result<std::string_view> get_string(const json::object& o, std::string_view name,
                                    core::error kind) {
  const json::value* v = o.if_contains(json::string_view(name.data(), name.size()));
  if (v == nullptr) {
    return field_error(kind, name, "missing");
  }
  if (!v->is_string()) {
    return field_error(kind, name, "must be a string");
  }
  const json::string& s = v->get_string();
  return std::string_view(s.data(), s.size());
}

result<std::optional<std::string_view>> get_optional_string(const json::object& o,
                                                            std::string_view name,
                                                            core::error kind) {
  if (!o.contains(json::string_view(name.data(), name.size()))) {
    return std::optional<std::string_view>();
  }
  auto s = get_string(o, name, kind);
  if (!s) {
    return s.error();
  }
  return std::optional<std::string_view>(*s);
}

result<std::uint64_t> get_uint64(const json::object& o, std::string_view name, core::error kind) {
  const json::value* v = o.if_contains(json::string_view(name.data(), name.size()));
  if (v == nullptr) {
    return field_error(kind, name, "missing");
  }
  if (v->is_uint64()) {
    return v->get_uint64();
  }
  if (v->is_int64() && v->get_int64() >= 0) {
    return static_cast<std::uint64_t>(v->get_int64());
  }
  return field_error(kind, name, "must be a non-negative integer");
}

result<const json::array*> get_array(const json::object& o, std::string_view name,
                                     core::error kind) {
  const json::value* v = o.if_contains(json::string_view(name.data(), name.size()));
  if (v == nullptr) {
    return field_error(kind, name, "missing");
  }
  if (!v->is_array()) {
    return field_error(kind, name, "must be an array");
  }
  return &v->get_array();
}

result<void> reject_unknown(const json::object& o, std::initializer_list<std::string_view> allowed,
                            core::error kind) {
  for (const auto& kv : o) {
    const std::string_view key(kv.key().data(), kv.key().size());
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return field_error(kind, key, "unknown field");
    }
  }
  return {};
}

}  // namespace json_field
}  // namespace fwdepot
