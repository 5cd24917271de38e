// SPDX-License-Identifier: Apache-2.0
#include "coaps/messages.hpp"

#include <arpa/inet.h>

#include <charconv>
#include <string_view>

namespace fwdepot::server {

coap_pdu_code_t coap_code(int http_status) {
  switch (http_status) {
    case 200:
      return COAP_RESPONSE_CODE_CONTENT;
    case 400:
    case 422:
      return COAP_RESPONSE_CODE_BAD_REQUEST;
    case 401:
      return COAP_RESPONSE_CODE_UNAUTHORIZED;
    case 403:
      return COAP_RESPONSE_CODE_FORBIDDEN;
    case 404:
      return COAP_RESPONSE_CODE_NOT_FOUND;
    case 405:
      return COAP_RESPONSE_CODE_NOT_ALLOWED;
    case 413:
      return COAP_RESPONSE_CODE_REQUEST_TOO_LARGE;
    case 415:
      return COAP_RESPONSE_CODE_UNSUPPORTED_CONTENT_FORMAT;
    case 503:
      return COAP_RESPONSE_CODE_SERVICE_UNAVAILABLE;
    default:
      return COAP_RESPONSE_CODE_INTERNAL_ERROR;
  }
}

int status_of(coap_pdu_code_t code) {
  const int c = static_cast<int>(code);
  return (c >> 5) * 100 + (c & 0x1f);
}

std::optional<std::int64_t> firmware_id(const coap_pdu_t* request) {
  // Read from the Uri-Path options in place: exactly "fw" and the digits, nothing after them.
  coap_opt_filter_t filter;
  coap_option_filter_clear(&filter);
  coap_option_filter_set(&filter, COAP_OPTION_URI_PATH);
  coap_opt_iterator_t it;
  if (coap_option_iterator_init(request, &it, &filter) == nullptr) {
    return std::nullopt;
  }
  auto segment = [&]() -> std::optional<std::string_view> {
    const coap_opt_t* o = coap_option_next(&it);
    if (o == nullptr) {
      return std::nullopt;
    }
    return std::string_view(reinterpret_cast<const char*>(coap_opt_value(o)), coap_opt_length(o));
  };
  const auto first = segment();
  const auto digits = segment();
  if (first != "fw" || !digits || segment()) {
    return std::nullopt;
  }
  std::int64_t id = 0;
  const auto [end, ec] = std::from_chars(digits->data(), digits->data() + digits->size(), id);
  if (digits->empty() || ec != std::errc() || end != digits->data() + digits->size() || id <= 0) {
    return std::nullopt;
  }
  return id;
}

std::optional<coap_block_t> block2(const coap_pdu_t* request) {
  coap_block_t block{0, 0, 0};
  if (coap_get_block(request, COAP_OPTION_BLOCK2, &block) == 0) {
    return std::nullopt;
  }
  return block;
}

std::string uri_host(const coap_pdu_t* request) {
  coap_opt_iterator_t it;
  const coap_opt_t* o = coap_check_option(request, COAP_OPTION_URI_HOST, &it);
  if (o == nullptr) {
    return {};
  }
  std::string host(reinterpret_cast<const char*>(coap_opt_value(o)), coap_opt_length(o));
  // An IPv6 literal, bare or in brackets (RFC 3986's IP-literal).
  std::string bare = host;
  if (bare.size() > 2 && bare.front() == '[' && bare.back() == ']') {
    bare = bare.substr(1, bare.size() - 2);
  }
  // inet_pton reads up to a NUL: only the characters of an address may reach it, or "::\0junk"
  // would pass as "::" and carry the junk into the URL.
  in6_addr v6{};
  if (!bare.empty() && bare.find_first_not_of("0123456789abcdefABCDEF:.") == std::string::npos &&
      inet_pton(AF_INET6, bare.c_str(), &v6) == 1) {
    return "[" + bare + "]";
  }
  const bool name = !host.empty() && host.size() <= 253 &&
                    host.find_first_not_of(
                        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789.-") == std::string::npos;
  return name ? host : std::string();
}

std::optional<std::uint16_t> uri_port(const coap_pdu_t* request) {
  coap_opt_iterator_t it;
  const coap_opt_t* o = coap_check_option(request, COAP_OPTION_URI_PORT, &it);
  if (o == nullptr || coap_opt_length(o) > 2) {
    return std::nullopt;
  }
  const unsigned port = coap_decode_var_bytes(coap_opt_value(o), coap_opt_length(o));
  if (port == 0) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(port);
}

}  // namespace fwdepot::server
