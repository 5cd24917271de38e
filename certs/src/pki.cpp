// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/certs/pki.hpp"

#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/ids.hpp"

#include <arpa/inet.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cctype>
#include <ctime>

namespace fwdepot::certs {
namespace {

// sk_X509_free is a macro, so it cannot be a template argument of openssl::Deleter. The stack
// only borrows its certificates.
struct X509StackFree {
  void operator()(STACK_OF(X509) * s) const noexcept { sk_X509_free(s); }
};
using X509StackPtr = std::unique_ptr<STACK_OF(X509), X509StackFree>;

constexpr std::int64_t kSecondsPerDay = 86400;
constexpr int kSerialBytes = 16;

class Category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "fwdepot.certs"; }
  std::string message(int ev) const override {
    switch (static_cast<error>(ev)) {
      case error::ok:
        return "success";
      case error::invalid_certificate:
        return "invalid certificate";
      case error::invalid_crl:
        return "invalid CRL";
      case error::invalid_name:
        return "invalid name";
      case error::key_mismatch:
        return "private key does not match the certificate";
      case error::expired:
        return "certificate expired";
      case error::not_yet_valid:
        return "certificate not yet valid";
      case error::revoked:
        return "certificate revoked";
      case error::untrusted:
        return "certificate not issued by a trusted CA";
      case error::wrong_usage:
        return "certificate not valid for this use";
      case error::crl_stale:
        return "CRL expired or not yet valid";
      case error::crypto_failure:
        return "cryptographic operation failed";
    }
    return "unknown fwdepot.certs error";
  }
};

Error crypto_error(std::string_view what) {
  return Error(error::crypto_failure, std::string(what) + ": " + openssl::drain_errors());
}

std::int64_t to_unix(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return 0;
  }
  return static_cast<std::int64_t>(timegm(&tm));
}

std::string normalize_serial(std::string_view hex) {
  std::string out;
  for (char c : hex) {
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  const auto first = out.find_first_not_of('0');
  return first == std::string::npos ? "0" : out.substr(first);
}

std::string serial_to_hex(const ASN1_INTEGER* serial) {
  openssl::BignumPtr bn(ASN1_INTEGER_to_BN(serial, nullptr));
  if (!bn) {
    openssl::clear_errors();
    return {};
  }
  char* hex = BN_bn2hex(bn.get());
  std::string out = hex != nullptr ? normalize_serial(hex) : std::string();
  OPENSSL_free(hex);
  return out;
}

result<openssl::Asn1IntegerPtr> hex_to_serial(std::string_view hex) {
  const std::string text(hex);
  const bool ok = !text.empty() && text.size() <= 40 &&
                  std::all_of(text.begin(), text.end(),
                              [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
  BIGNUM* raw = nullptr;
  if (!ok || BN_hex2bn(&raw, text.c_str()) == 0) {
    return Error(error::invalid_name, "serial '" + text + "' is not hex");
  }
  openssl::BignumPtr bn(raw);
  openssl::Asn1IntegerPtr serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  if (!serial) {
    return crypto_error("BN_to_ASN1_INTEGER");
  }
  return serial;
}

// 128 random bits with the top bit clear: positive, unique for all practical purposes, and
// unpredictable (which matters for the collision attacks that serials defend against).
result<openssl::Asn1IntegerPtr> random_serial() {
  auto bytes = random_bytes(kSerialBytes);
  if (!bytes) {
    return bytes.error();
  }
  (*bytes)[0] = static_cast<char>((*bytes)[0] & 0x7f);
  (*bytes)[0] = static_cast<char>((*bytes)[0] | 0x01);  // never zero, never shorter than 121 bits
  openssl::BignumPtr bn(
      BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes->data()), kSerialBytes, nullptr));
  openssl::Asn1IntegerPtr serial(bn ? BN_to_ASN1_INTEGER(bn.get(), nullptr) : nullptr);
  if (!serial) {
    return crypto_error("serial");
  }
  return serial;
}

std::string name_entry(const X509_NAME* name, int nid) {
  const int idx = X509_NAME_get_index_by_NID(name, nid, -1);
  if (idx < 0) {
    return {};
  }
  const ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
  unsigned char* utf8 = nullptr;
  const int len = ASN1_STRING_to_UTF8(&utf8, data);
  if (len < 0) {
    openssl::clear_errors();
    return {};
  }
  std::string out(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(len));
  OPENSSL_free(utf8);
  return out;
}

bool add_name_entry(X509_NAME* name, const char* field, std::string_view value) {
  return X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                    reinterpret_cast<const unsigned char*>(value.data()),
                                    static_cast<int>(value.size()), -1, 0) == 1;
}

// Adds an extension written in OpenSSL's config syntax. Only called with values we built from
// validated names, so no caller-controlled text can smuggle in extra config.
bool add_extension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  openssl::X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  return ext && X509_add_ext(cert, ext.get(), -1) == 1;
}

const EVP_MD* signing_digest(const PrivateKey& key) {
  return key.type() == KeyType::ed25519 ? nullptr : EVP_sha256();
}

bool is_dns_name(std::string_view name) {
  if (name.empty() || name.size() > 253) {
    return false;
  }
  std::size_t label = 0;
  for (std::size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      if (label == 0 || label > 63 || name[i - 1] == '-' || name[i - label] == '-') {
        return false;
      }
      label = 0;
      continue;
    }
    const char c = name[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') {
      return false;
    }
    ++label;
  }
  return true;
}

bool is_ip_address(const std::string& ip) {
  unsigned char buf[16];
  return inet_pton(AF_INET, ip.c_str(), buf) == 1 || inet_pton(AF_INET6, ip.c_str(), buf) == 1;
}

// Builds and signs a leaf certificate; `extensions` are (nid, config value) pairs.
result<Certificate> issue_leaf(const CertificateAuthority& ca, const PublicKey& subject_key,
                               const std::vector<std::pair<const char*, std::string>>& subject,
                               const std::vector<std::pair<int, std::string>>& extensions,
                               std::int64_t now, int validity_days) {
  if (validity_days <= 0) {
    return Error(core::error::invalid_argument, "validity must be at least one day");
  }
  openssl::X509Ptr cert(X509_new());
  auto serial = random_serial();
  if (!serial) {
    return serial.error();
  }
  X509* issuer = ca.certificate().get();
  bool ok = cert && X509_set_version(cert.get(), X509_VERSION_3) == 1 &&
            X509_set_serialNumber(cert.get(), serial->get()) == 1 &&
            X509_set_issuer_name(cert.get(), X509_get_subject_name(issuer)) == 1 &&
            ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<time_t>(now)) &&
            ASN1_TIME_set(X509_getm_notAfter(cert.get()),
                          static_cast<time_t>(now + validity_days * kSecondsPerDay)) &&
            X509_set_pubkey(cert.get(), subject_key.get()) == 1;
  X509_NAME* name = ok ? X509_get_subject_name(cert.get()) : nullptr;
  for (const auto& [field, value] : subject) {
    ok = ok && add_name_entry(name, field, value);
  }
  for (const auto& [nid, value] : extensions) {
    ok = ok && add_extension(cert.get(), issuer, nid, value);
  }
  ok = ok && X509_sign(cert.get(), ca.key().get(), signing_digest(ca.key())) > 0;
  if (!ok) {
    return crypto_error("issuing certificate");
  }
  return Certificate(std::move(cert));
}

result<void> check_chain(const Certificate& leaf, std::span<const Certificate> intermediates,
                         const Certificate& anchor, const Crl* crl, int purpose,
                         std::string_view host, std::int64_t now) {
  openssl::X509StorePtr store(X509_STORE_new());
  openssl::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509StackPtr chain(sk_X509_new_null());
  if (!store || !ctx || !chain || X509_STORE_add_cert(store.get(), anchor.get()) != 1) {
    return crypto_error("X509_STORE");
  }
  for (const auto& c : intermediates) {
    if (sk_X509_push(chain.get(), c.get()) <= 0) {
      return crypto_error("sk_X509_push");
    }
  }
  if (crl != nullptr) {
    if (X509_STORE_add_crl(store.get(), crl->get()) != 1) {
      return crypto_error("X509_STORE_add_crl");
    }
    X509_STORE_set_flags(store.get(), X509_V_FLAG_CRL_CHECK);
  }
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf.get(), chain.get()) != 1) {
    return crypto_error("X509_STORE_CTX_init");
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(now));
  X509_STORE_CTX_set_purpose(ctx.get(), purpose);
  if (!host.empty()) {
    const std::string h(host);
    const int set = is_ip_address(h) ? X509_VERIFY_PARAM_set1_ip_asc(param, h.c_str())
                                     : X509_VERIFY_PARAM_set1_host(param, h.c_str(), h.size());
    if (set != 1) {
      openssl::clear_errors();
      return Error(error::invalid_name, "'" + h + "' is not a host name or IP address");
    }
  }
  if (X509_verify_cert(ctx.get()) == 1) {
    return {};
  }
  openssl::clear_errors();
  const int err = X509_STORE_CTX_get_error(ctx.get());
  const std::string why = X509_verify_cert_error_string(err);
  switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return Error(error::expired, why);
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return Error(error::not_yet_valid, why);
    case X509_V_ERR_CERT_REVOKED:
      return Error(error::revoked, why);
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_CRL_NOT_YET_VALID:
      return Error(error::crl_stale, why);
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
      return Error(error::invalid_crl, why);
    case X509_V_ERR_INVALID_PURPOSE:
      return Error(error::wrong_usage, why);
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
      return Error(error::invalid_name, why);
    default:
      return Error(error::untrusted, why);
  }
}

}  // namespace

const boost::system::error_category& error_category() noexcept {
  static const Category category;
  return category;
}

// --- Certificate ---------------------------------------------------------------------------

Certificate::Certificate(openssl::X509Ptr x509) : x509_(x509.release(), X509_free) {}

result<Certificate> Certificate::from_pem(std::string_view pem) {
  auto chain = chain_from_pem(pem);
  if (!chain) {
    return chain.error();
  }
  return chain->front();
}

result<std::vector<Certificate>> Certificate::chain_from_pem(std::string_view pem) {
  auto bio = openssl::memory_bio(pem);
  std::vector<Certificate> out;
  while (true) {
    openssl::X509Ptr x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!x) {
      break;
    }
    out.emplace_back(std::move(x));
  }
  // The loop ends on "no more PEM blocks", which OpenSSL reports as an error.
  openssl::clear_errors();
  if (out.empty()) {
    return Error(error::invalid_certificate, "no PEM certificate found");
  }
  return out;
}

std::string Certificate::to_pem() const {
  openssl::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), x509_.get()) != 1) {
    openssl::clear_errors();
    return {};
  }
  return openssl::bio_contents(bio.get());
}

std::string Certificate::subject_common_name() const {
  return name_entry(X509_get_subject_name(x509_.get()), NID_commonName);
}

std::string Certificate::subject_model() const {
  return name_entry(X509_get_subject_name(x509_.get()), NID_organizationalUnitName);
}

std::string Certificate::serial_hex() const {
  return serial_to_hex(X509_get0_serialNumber(x509_.get()));
}

std::int64_t Certificate::not_before() const { return to_unix(X509_get0_notBefore(x509_.get())); }
std::int64_t Certificate::not_after() const { return to_unix(X509_get0_notAfter(x509_.get())); }

std::vector<std::string> Certificate::dns_names() const {
  std::vector<std::string> out;
  openssl::GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(x509_.get(), NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type == GEN_DNS) {
      const ASN1_IA5STRING* s = gn->d.dNSName;
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<std::size_t>(ASN1_STRING_length(s)));
    }
  }
  return out;
}

std::vector<std::string> Certificate::ip_addresses() const {
  std::vector<std::string> out;
  openssl::GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(x509_.get(), NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type != GEN_IPADD) {
      continue;
    }
    const int len = ASN1_STRING_length(gn->d.iPAddress);
    const unsigned char* data = ASN1_STRING_get0_data(gn->d.iPAddress);
    char buf[INET6_ADDRSTRLEN] = {};
    if ((len == 4 && inet_ntop(AF_INET, data, buf, sizeof buf) != nullptr) ||
        (len == 16 && inet_ntop(AF_INET6, data, buf, sizeof buf) != nullptr)) {
      out.emplace_back(buf);
    }
  }
  return out;
}

result<PublicKey> Certificate::public_key() const {
  openssl::PkeyPtr pkey(X509_get_pubkey(x509_.get()));
  return PublicKey::from_pkey(std::move(pkey));
}

// --- Crl -----------------------------------------------------------------------------------

Crl::Crl(openssl::X509CrlPtr crl) : crl_(crl.release(), X509_CRL_free) {}

result<Crl> Crl::from_pem(std::string_view pem) {
  auto bio = openssl::memory_bio(pem);
  openssl::X509CrlPtr crl(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
  if (!crl) {
    openssl::clear_errors();
    return Error(error::invalid_crl, "no PEM CRL found");
  }
  return Crl(std::move(crl));
}

std::string Crl::to_pem() const {
  openssl::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_CRL(bio.get(), crl_.get()) != 1) {
    openssl::clear_errors();
    return {};
  }
  return openssl::bio_contents(bio.get());
}

bool Crl::is_revoked(std::string_view serial_hex) const {
  const std::string wanted = normalize_serial(serial_hex);
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl_.get());
  for (int i = 0; i < sk_X509_REVOKED_num(revoked); ++i) {
    if (serial_to_hex(X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i))) ==
        wanted) {
      return true;
    }
  }
  return false;
}

std::size_t Crl::revoked_count() const {
  const int n = sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl_.get()));
  return n > 0 ? static_cast<std::size_t>(n) : 0;
}

std::int64_t Crl::this_update() const { return to_unix(X509_CRL_get0_lastUpdate(crl_.get())); }
std::int64_t Crl::next_update() const { return to_unix(X509_CRL_get0_nextUpdate(crl_.get())); }

std::uint64_t Crl::number() const {
  openssl::Asn1IntegerPtr n(static_cast<ASN1_INTEGER*>(
      X509_CRL_get_ext_d2i(crl_.get(), NID_crl_number, nullptr, nullptr)));
  std::uint64_t value = 0;
  if (!n || ASN1_INTEGER_get_uint64(&value, n.get()) != 1) {
    openssl::clear_errors();
    return 0;
  }
  return value;
}

// --- CertificateAuthority ------------------------------------------------------------------

result<CertificateAuthority> CertificateAuthority::create(std::string_view common_name,
                                                          std::int64_t now, int validity_days) {
  if (common_name.empty() || common_name.size() > 64 || validity_days <= 0) {
    return Error(core::error::invalid_argument, "CA name must be 1-64 bytes, validity > 0");
  }
  auto key = PrivateKey::generate(KeyType::ecdsa_p256);
  if (!key) {
    return key.error();
  }
  auto serial = random_serial();
  if (!serial) {
    return serial.error();
  }
  openssl::X509Ptr cert(X509_new());
  bool ok = cert && X509_set_version(cert.get(), X509_VERSION_3) == 1 &&
            X509_set_serialNumber(cert.get(), serial->get()) == 1 &&
            ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<time_t>(now)) &&
            ASN1_TIME_set(X509_getm_notAfter(cert.get()),
                          static_cast<time_t>(now + validity_days * kSecondsPerDay)) &&
            X509_set_pubkey(cert.get(), key->get()) == 1 &&
            add_name_entry(X509_get_subject_name(cert.get()), "O", "fwdepot") &&
            add_name_entry(X509_get_subject_name(cert.get()), "CN", common_name) &&
            X509_set_issuer_name(cert.get(), X509_get_subject_name(cert.get())) == 1;
  ok = ok && add_extension(cert.get(), cert.get(), NID_basic_constraints, "critical,CA:TRUE") &&
       add_extension(cert.get(), cert.get(), NID_key_usage, "critical,keyCertSign,cRLSign") &&
       add_extension(cert.get(), cert.get(), NID_subject_key_identifier, "hash") &&
       add_extension(cert.get(), cert.get(), NID_authority_key_identifier, "keyid:always") &&
       X509_sign(cert.get(), key->get(), EVP_sha256()) > 0;
  if (!ok) {
    return crypto_error("creating the CA certificate");
  }
  return CertificateAuthority(Certificate(std::move(cert)), std::move(*key));
}

result<CertificateAuthority> CertificateAuthority::from_pem(std::string_view cert_pem,
                                                            std::string_view key_pem) {
  auto cert = Certificate::from_pem(cert_pem);
  if (!cert) {
    return cert.error();
  }
  auto key = PrivateKey::from_pem(key_pem);
  if (!key) {
    return key.error();
  }
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    openssl::clear_errors();
    return Error(error::key_mismatch, "CA key does not match the CA certificate");
  }
  if (X509_check_ca(cert->get()) == 0) {
    return Error(error::wrong_usage, "certificate is not a CA");
  }
  return CertificateAuthority(std::move(*cert), std::move(*key));
}

result<Certificate> CertificateAuthority::issue_server(const PublicKey& subject_key,
                                                       std::span<const std::string> dns_names,
                                                       std::span<const std::string> ip_addresses,
                                                       std::int64_t now, int validity_days) const {
  if (auto ok = validate_server_names(dns_names, ip_addresses); !ok) {
    return ok.error();
  }
  std::string san;
  for (const auto& dns : dns_names) {
    san += (san.empty() ? "DNS:" : ",DNS:") + dns;
  }
  for (const auto& ip : ip_addresses) {
    san += (san.empty() ? "IP:" : ",IP:") + ip;
  }
  const std::string cn = dns_names.empty() ? ip_addresses.front() : dns_names.front();
  const bool rsa =
      subject_key.type() != KeyType::ecdsa_p256 && subject_key.type() != KeyType::ed25519;
  return issue_leaf(*this, subject_key, {{"O", "fwdepot"}, {"CN", cn}},
                    {{NID_basic_constraints, "critical,CA:FALSE"},
                     {NID_key_usage, rsa ? "critical,digitalSignature,keyEncipherment"
                                         : "critical,digitalSignature"},
                     {NID_ext_key_usage, "serverAuth"},
                     {NID_subject_alt_name, san},
                     {NID_subject_key_identifier, "hash"},
                     {NID_authority_key_identifier, "keyid:always"}},
                    now, validity_days);
}

result<Certificate> CertificateAuthority::issue_device(const PublicKey& subject_key,
                                                       std::string_view device_id,
                                                       std::string_view model, std::int64_t now,
                                                       int validity_days) const {
  if (auto ok = validate_identifier(device_id, "device id"); !ok) {
    return Error(error::invalid_name, ok.error().detail);
  }
  std::vector<std::pair<const char*, std::string>> subject = {{"O", "fwdepot device"}};
  if (!model.empty()) {
    if (auto ok = validate_identifier(model, "model"); !ok) {
      return Error(error::invalid_name, ok.error().detail);
    }
    subject.emplace_back("OU", std::string(model));
  }
  subject.emplace_back("CN", std::string(device_id));
  return issue_leaf(*this, subject_key, subject,
                    {{NID_basic_constraints, "critical,CA:FALSE"},
                     {NID_key_usage, "critical,digitalSignature"},
                     {NID_ext_key_usage, "clientAuth"},
                     {NID_subject_key_identifier, "hash"},
                     {NID_authority_key_identifier, "keyid:always"}},
                    now, validity_days);
}

result<Crl> CertificateAuthority::make_crl(std::span<const RevokedEntry> revoked,
                                           std::uint64_t number, std::int64_t now,
                                           int next_update_days) const {
  if (next_update_days <= 0) {
    return Error(core::error::invalid_argument, "next update must be at least one day ahead");
  }
  openssl::X509CrlPtr crl(X509_CRL_new());
  openssl::Asn1TimePtr this_update(ASN1_TIME_set(nullptr, static_cast<time_t>(now)));
  openssl::Asn1TimePtr next_update(
      ASN1_TIME_set(nullptr, static_cast<time_t>(now + next_update_days * kSecondsPerDay)));
  openssl::Asn1IntegerPtr crl_number(ASN1_INTEGER_new());
  bool ok = crl && this_update && next_update && crl_number &&
            X509_CRL_set_version(crl.get(), 1) == 1 &&  // v2, needed for extensions
            X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(cert_.get())) == 1 &&
            X509_CRL_set1_lastUpdate(crl.get(), this_update.get()) == 1 &&
            X509_CRL_set1_nextUpdate(crl.get(), next_update.get()) == 1 &&
            ASN1_INTEGER_set_uint64(crl_number.get(), number) == 1 &&
            X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, crl_number.get(), 0, 0) == 1;
  if (!ok) {
    return crypto_error("creating the CRL");
  }
  for (const auto& entry : revoked) {
    auto serial = hex_to_serial(entry.serial_hex);
    if (!serial) {
      return serial.error();
    }
    openssl::X509RevokedPtr r(X509_REVOKED_new());
    openssl::Asn1TimePtr when(ASN1_TIME_set(nullptr, static_cast<time_t>(entry.revoked_at)));
    if (!r || !when || X509_REVOKED_set_serialNumber(r.get(), serial->get()) != 1 ||
        X509_REVOKED_set_revocationDate(r.get(), when.get()) != 1 ||
        X509_CRL_add0_revoked(crl.get(), r.get()) != 1) {
      return crypto_error("adding a CRL entry");
    }
    r.release();  // now owned by the CRL
  }
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert_.get(), nullptr, nullptr, crl.get(), 0);
  openssl::X509ExtensionPtr aki(
      X509V3_EXT_conf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always"));
  if (!aki || X509_CRL_add_ext(crl.get(), aki.get(), -1) != 1 || X509_CRL_sort(crl.get()) != 1 ||
      X509_CRL_sign(crl.get(), key_.get(), signing_digest(key_)) <= 0) {
    return crypto_error("signing the CRL");
  }
  return Crl(std::move(crl));
}

result<void> validate_server_names(std::span<const std::string> dns_names,
                                   std::span<const std::string> ip_addresses) {
  if (dns_names.empty() && ip_addresses.empty()) {
    return Error(error::invalid_name, "a server certificate needs a DNS name or an IP address");
  }
  for (const auto& dns : dns_names) {
    if (!is_dns_name(dns)) {
      return Error(error::invalid_name, "'" + dns + "' is not a DNS name");
    }
  }
  for (const auto& ip : ip_addresses) {
    if (!is_ip_address(ip)) {
      return Error(error::invalid_name, "'" + ip + "' is not an IP address");
    }
  }
  return {};
}

// --- verification --------------------------------------------------------------------------

result<DeviceIdentity> verify_device_certificate(const Certificate& leaf,
                                                 std::span<const Certificate> intermediates,
                                                 const Certificate& anchor, const Crl* crl,
                                                 std::int64_t now) {
  if (auto ok = check_chain(leaf, intermediates, anchor, crl, X509_PURPOSE_SSL_CLIENT, {}, now);
      !ok) {
    return ok.error();
  }
  DeviceIdentity id{leaf.subject_common_name(), leaf.subject_model(), leaf.serial_hex()};
  if (auto ok = validate_identifier(id.device_id, "device id (certificate CN)"); !ok) {
    return Error(error::invalid_name, ok.error().detail);
  }
  return id;
}

result<void> verify_server_certificate(const Certificate& leaf, const Certificate& anchor,
                                       std::string_view host, std::int64_t now) {
  return check_chain(leaf, {}, anchor, nullptr, X509_PURPOSE_SSL_SERVER, host, now);
}

}  // namespace fwdepot::certs
