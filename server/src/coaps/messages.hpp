// SPDX-License-Identifier: Apache-2.0
// CoAP messages for the CoAPS listener, apart from sessions and the catalog: status codes, the
// request's firmware id, Uri-Host and Uri-Port, and Block2 answers. Fuzzed (tests/fuzz).
#pragma once

#include <coap3/coap.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>
#include <string>

namespace fwdepot::server {

inline constexpr unsigned kDefaultSzx = 6;  // 1024-byte blocks unless the device asks for less

/// The CoAP response code for an HTTP status of the shared services, and back.
[[nodiscard]] coap_pdu_code_t coap_code(int http_status);
[[nodiscard]] int status_of(coap_pdu_code_t code);

/// N for a request whose Uri-Path is "fw/N" (N a positive decimal integer), else nullopt.
[[nodiscard]] std::optional<std::int64_t> firmware_id(const coap_pdu_t* request);

/// The request's Uri-Host when it is a host name or an IP address (IPv6 in brackets), else "".
[[nodiscard]] std::string uri_host(const coap_pdu_t* request);
/// The request's Uri-Port when it has a non-zero one.
[[nodiscard]] std::optional<std::uint16_t> uri_port(const coap_pdu_t* request);

/// The Block2 option a request carries, read once per request; nullopt without one.
[[nodiscard]] std::optional<coap_block_t> block2(const coap_pdu_t* request);

/// The block number a request asks for: 0 without a Block2 option.
[[nodiscard]] inline unsigned block_number(const std::optional<coap_block_t>& asked) {
  return asked ? asked->num : 0;
}

struct BlockAnswer {
  int status = 0;     // 205, or the 4.02/5.00 the response carries instead
  bool more = false;  // bytes follow the block that was sent
};

// Answers with the block of a `total`-byte body that `asked` (the request's Block2 option)
// names, block 0 of 1024 bytes without one, reading only that block through `read`. Options go
// in CoAP order: ETag, Content-Format, Block2, Size2.
template <class Read>
BlockAnswer answer_block(const coap_pdu_t* request, std::optional<coap_block_t> asked,
                         coap_pdu_t* response, std::uint64_t total,
                         std::span<const std::uint8_t> etag, unsigned content_format, Read&& read) {
  coap_block_t block = asked.value_or(coap_block_t{0, 0, kDefaultSzx});
  if (block.szx > kDefaultSzx) {
    block.szx = kDefaultSzx;  // 7 is BERT (TCP only)
  }
  const std::uint64_t size = std::uint64_t{1} << (block.szx + 4);
  if (std::uint64_t{block.num} * size >= std::max<std::uint64_t>(total, 1)) {
    coap_pdu_set_code(response, COAP_RESPONSE_CODE_BAD_OPTION);
    return {402, false};
  }
  coap_pdu_set_code(response, COAP_RESPONSE_CODE_CONTENT);
  if (!etag.empty()) {
    coap_add_option(response, COAP_OPTION_ETAG, etag.size(), etag.data());
  }
  std::uint8_t buf[8];
  coap_add_option(response, COAP_OPTION_CONTENT_FORMAT,
                  coap_encode_var_safe(buf, sizeof buf, content_format), buf);
  const bool blockwise = asked || total > size;
  if (blockwise) {
    // Size2 on block 0, and on any block of a request that carries Size2 (RFC 7959 4: a
    // device resuming mid-payload asks for it that way).
    coap_opt_iterator_t it;
    if (block.num == 0 || coap_check_option(request, COAP_OPTION_SIZE2, &it) != nullptr) {
      coap_add_option(response, COAP_OPTION_SIZE2, coap_encode_var_safe8(buf, sizeof buf, total),
                      buf);
    }
    if (coap_write_block_opt(&block, COAP_OPTION_BLOCK2, response, total) < 0) {
      coap_pdu_set_code(response, COAP_RESPONSE_CODE_BAD_OPTION);
      return {402, false};
    }
  }
  const std::uint64_t block_size = std::uint64_t{1} << (block.szx + 4);  // may have shrunk
  const std::uint64_t offset = blockwise ? std::uint64_t{block.num} * block_size : 0;
  const std::size_t n = static_cast<std::size_t>(
      std::min<std::uint64_t>(total - std::min(total, offset), blockwise ? block_size : total));
  if (n > 0) {
    std::uint8_t* out = coap_add_data_after(response, n);
    if (out == nullptr || !read(offset, std::span<char>(reinterpret_cast<char*>(out), n))) {
      coap_pdu_set_code(response, COAP_RESPONSE_CODE_INTERNAL_ERROR);
      return {500, false};
    }
  }
  return {205, offset + n < total};
}

}  // namespace fwdepot::server
