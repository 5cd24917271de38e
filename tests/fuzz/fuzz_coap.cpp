// SPDX-License-Identifier: Apache-2.0
// CoAP requests as the CoAPS listener reads them: any datagram that libcoap parses goes through
// the firmware id, Uri-Host and Uri-Port readers and the Block2 answer for payloads of several
// sizes. The answer must read only inside the payload, and the block it sends must be the one
// its Block2 option names, of the size that option says.
#include "coaps/messages.hpp"
#include "fuzz_target.hpp"

#include <array>

using namespace fwdepot;

namespace {

struct Pdu {
  coap_pdu_t* p;
  explicit Pdu(coap_pdu_t* pdu) : p(pdu) {}
  ~Pdu() { coap_delete_pdu(p); }
  Pdu(const Pdu&) = delete;
  Pdu& operator=(const Pdu&) = delete;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool started = [] {
    coap_startup();
    coap_set_log_level(LOG_EMERG);
    return true;
  }();
  (void)started;
  Pdu request(coap_pdu_init(COAP_MESSAGE_CON, COAP_EMPTY_CODE, 0, size + 16));
  if (request.p == nullptr || coap_pdu_parse(COAP_PROTO_UDP, data, size, request.p) != 1) {
    return 0;
  }
  if (const auto id = server::firmware_id(request.p)) {
    fuzz::check(*id > 0, "a firmware id is positive");
  }
  const std::string host = server::uri_host(request.p);
  fuzz::check(host.find_first_of("/@?#\\ \r\n\"'<>") == std::string::npos,
              "a Uri-Host that reaches a URL has no delimiters");
  if (const auto port = server::uri_port(request.p)) {
    fuzz::check(*port > 0, "a Uri-Port is non-zero");
  }
  const auto asked = server::block2(request.p);
  static constexpr std::array<std::uint64_t, 6> kTotals = {1, 16, 1000, 1024, 1025, 300017};
  static constexpr std::array<std::uint8_t, 8> kEtag = {1, 2, 3, 4, 5, 6, 7, 8};
  for (const std::uint64_t total : kTotals) {
    // A DTLS session's largest PDU, as libcoap sizes it.
    Pdu response(coap_pdu_init(COAP_MESSAGE_ACK, COAP_EMPTY_CODE, 0, 1152));
    std::uint64_t read_from = 0;
    std::size_t read_bytes = 0;
    const auto [status, more] = server::answer_block(
        request.p, asked, response.p, total, kEtag, COAP_MEDIATYPE_APPLICATION_OCTET_STREAM,
        [&](std::uint64_t offset, std::span<char> out) {
          fuzz::check(offset + out.size() <= total, "reads stay inside the payload");
          read_from = offset;
          read_bytes = out.size();
          std::fill(out.begin(), out.end(), 'x');
          return true;
        });
    if (status != 205) {
      fuzz::check(status == 402 || status == 500, "205, 4.02 or 5.00");
      fuzz::check(!more, "a refusal has nothing after it");
      continue;
    }
    std::size_t length = 0;
    const std::uint8_t* body = nullptr;
    if (coap_get_data(response.p, &length, &body) == 0) {
      length = 0;
    }
    fuzz::check(length == read_bytes, "the body is what was read");
    fuzz::check(more == (read_from + length < total), "more follows exactly when bytes do");
    coap_block_t sent{};
    if (coap_get_block(response.p, COAP_OPTION_BLOCK2, &sent) != 0) {
      fuzz::check(asked.has_value() || sent.szx == server::kDefaultSzx,
                  "without Block2 in the request, blocks of 1024 bytes");
      const std::uint64_t block = std::uint64_t{1} << (sent.szx + 4);
      fuzz::check(read_from == sent.num * block, "the block sent is the block named");
      fuzz::check(length == std::min<std::uint64_t>(block, total - read_from),
                  "the block has the size its option says");
      fuzz::check(static_cast<bool>(sent.m) == (read_from + length < total),
                  "More is set exactly when bytes follow");
    } else {
      fuzz::check(read_from == 0 && length == total, "without Block2, the whole payload");
    }
  }
  return 0;
}
