// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/keys.hpp"

#include "fwdepot/core/encoding.hpp"

#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <array>

namespace fwdepot {
namespace {

constexpr int kPssSaltBytes = 32;

struct KeyTypeName {
  KeyType type;
  std::string_view name;
};
constexpr std::array kKeyTypeNames{
    KeyTypeName{KeyType::ecdsa_p256, "ecdsa-p256"},
    KeyTypeName{KeyType::ed25519, "ed25519"},
    KeyTypeName{KeyType::rsa_2048, "rsa-2048"},
    KeyTypeName{KeyType::rsa_3072, "rsa-3072"},
    KeyTypeName{KeyType::rsa_pss_2048, "rsa-pss-2048"},
    KeyTypeName{KeyType::rsa_pss_3072, "rsa-pss-3072"},
};

Error crypto_error(std::string_view what) {
  return Error(core::error::crypto_failure, std::string(what) + ": " + openssl::drain_errors());
}

// Classifies a parsed key into the allowed set, refusing curves and sizes we do not sign with.
result<KeyType> classify(EVP_PKEY* pkey) {
  const int bits = EVP_PKEY_get_bits(pkey);
  switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_EC: {
      char group[64] = {};
      size_t len = 0;
      if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                         &len) != 1 ||
          std::string_view(group, len) != "prime256v1") {
        openssl::clear_errors();
        return Error(core::error::unsupported_key_type, "only the P-256 curve is allowed");
      }
      return KeyType::ecdsa_p256;
    }
    case EVP_PKEY_ED25519:
      return KeyType::ed25519;
    case EVP_PKEY_RSA:
      if (bits == 2048) {
        return KeyType::rsa_2048;
      }
      if (bits == 3072) {
        return KeyType::rsa_3072;
      }
      return Error(core::error::unsupported_key_type,
                   "RSA keys must be 2048 or 3072 bits, not " + std::to_string(bits));
    case EVP_PKEY_RSA_PSS:
      if (bits == 2048) {
        return KeyType::rsa_pss_2048;
      }
      if (bits == 3072) {
        return KeyType::rsa_pss_3072;
      }
      return Error(core::error::unsupported_key_type,
                   "RSA-PSS keys must be 2048 or 3072 bits, not " + std::to_string(bits));
    default:
      return Error(core::error::unsupported_key_type,
                   "allowed: ecdsa-p256, ed25519, rsa-2048/3072, rsa-pss-2048/3072");
  }
}

result<std::string> spki_der(EVP_PKEY* pkey) {
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(pkey, &der);
  if (len <= 0) {
    return crypto_error("i2d_PUBKEY");
  }
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

const EVP_MD* digest_for(KeyType type) {
  // Ed25519 is "pure": it hashes internally and must be given no digest.
  return type == KeyType::ed25519 ? nullptr : EVP_sha256();
}

// Sets PSS parameters on a sign/verify context; the key already forces PSS padding.
bool configure_pss(EVP_PKEY_CTX* pctx, KeyType type) {
  if (type != KeyType::rsa_pss_2048 && type != KeyType::rsa_pss_3072) {
    return true;
  }
  return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, kPssSaltBytes) == 1;
}

}  // namespace

std::string_view to_string(KeyType type) {
  for (const auto& entry : kKeyTypeNames) {
    if (entry.type == type) {
      return entry.name;
    }
  }
  return "unknown";
}

result<KeyType> parse_key_type(std::string_view name) {
  for (const auto& entry : kKeyTypeNames) {
    if (entry.name == name) {
      return entry.type;
    }
  }
  return Error(core::error::unsupported_key_type,
               "'" + std::string(name) +
                   "' (allowed: ecdsa-p256, ed25519, rsa-2048, rsa-3072, rsa-pss-2048, "
                   "rsa-pss-3072)");
}

result<PublicKey> PublicKey::from_pem(std::string_view pem) {
  auto bio = openssl::memory_bio(pem);
  openssl::PkeyPtr pkey(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!pkey) {
    return Error(core::error::invalid_key,
                 "not a PEM public key (" + openssl::drain_errors() + ")");
  }
  return from_pkey(std::move(pkey));
}

result<PublicKey> PublicKey::from_pkey(openssl::PkeyPtr pkey) {
  if (!pkey) {
    return Error(core::error::invalid_key, "null key");
  }
  auto type = classify(pkey.get());
  if (!type) {
    return type.error();
  }
  auto der = spki_der(pkey.get());
  if (!der) {
    return der.error();
  }
  // Keep only the public half, so that a PublicKey made from a private key never carries it.
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der->data());
  openssl::PkeyPtr pub(d2i_PUBKEY(nullptr, &p, static_cast<long>(der->size())));
  if (!pub) {
    return crypto_error("d2i_PUBKEY");
  }
  return PublicKey(std::shared_ptr<EVP_PKEY>(pub.release(), EVP_PKEY_free), *type,
                   hex_encode(sha256(*der)));
}

std::string PublicKey::to_pem() const {
  openssl::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), pkey_.get()) != 1) {
    openssl::clear_errors();
    return {};
  }
  return openssl::bio_contents(bio.get());
}

bool PublicKey::verify(std::string_view message, std::string_view signature) const {
  openssl::MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  const bool ok =
      ctx && EVP_DigestVerifyInit(ctx.get(), &pctx, digest_for(type_), nullptr, pkey_.get()) == 1 &&
      configure_pss(pctx, type_) &&
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                       signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                       message.size()) == 1;
  // A bad signature leaves entries on the error queue; they are expected, not news.
  openssl::clear_errors();
  return ok;
}

result<PrivateKey> PrivateKey::generate(KeyType type) {
  openssl::PkeyPtr pkey;
  switch (type) {
    case KeyType::ecdsa_p256:
      pkey.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
      break;
    case KeyType::ed25519:
      pkey.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
      break;
    case KeyType::rsa_2048:
    case KeyType::rsa_3072:
    case KeyType::rsa_pss_2048:
    case KeyType::rsa_pss_3072: {
      const bool pss = type == KeyType::rsa_pss_2048 || type == KeyType::rsa_pss_3072;
      const int bits = (type == KeyType::rsa_2048 || type == KeyType::rsa_pss_2048) ? 2048 : 3072;
      // EVP_PKEY_Q_keygen takes a size only for "RSA", so build the context by hand.
      openssl::PkeyCtxPtr ctx(
          EVP_PKEY_CTX_new_from_name(nullptr, pss ? "RSA-PSS" : "RSA", nullptr));
      EVP_PKEY* raw = nullptr;
      if (ctx && EVP_PKEY_keygen_init(ctx.get()) == 1 &&
          EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), bits) == 1 &&
          EVP_PKEY_generate(ctx.get(), &raw) == 1) {
        pkey.reset(raw);
      }
      break;
    }
  }
  if (!pkey) {
    return crypto_error("key generation");
  }
  openssl::PkeyPtr copy(EVP_PKEY_dup(pkey.get()));
  auto pub = PublicKey::from_pkey(std::move(copy));
  if (!pub) {
    return pub.error();
  }
  return PrivateKey(std::move(pkey), std::move(*pub));
}

result<PrivateKey> PrivateKey::from_pem(std::string_view pem,
                                        std::optional<std::string_view> password) {
  auto bio = openssl::memory_bio(pem);
  std::string pass(password.value_or(""));
  // With no password, an encrypted key must fail rather than prompt on the terminal.
  openssl::PkeyPtr pkey(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, const_cast<char*>(pass.c_str())));
  OPENSSL_cleanse(pass.data(), pass.size());
  if (!pkey) {
    openssl::clear_errors();
    return Error(core::error::invalid_key,
                 password ? "not a PEM private key, or wrong password"
                          : "not a PEM private key, or it is encrypted and no password was given");
  }
  openssl::PkeyPtr copy(EVP_PKEY_dup(pkey.get()));
  auto pub = PublicKey::from_pkey(std::move(copy));
  if (!pub) {
    return pub.error();
  }
  return PrivateKey(std::move(pkey), std::move(*pub));
}

result<std::string> PrivateKey::to_pem(std::optional<std::string_view> password) const {
  openssl::BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio) {
    return crypto_error("BIO_new");
  }
  int ok = 0;
  if (password) {
    ok = PEM_write_bio_PKCS8PrivateKey(bio.get(), pkey_.get(), EVP_aes_256_cbc(), password->data(),
                                       static_cast<int>(password->size()), nullptr, nullptr);
  } else {
    ok = PEM_write_bio_PKCS8PrivateKey(bio.get(), pkey_.get(), nullptr, nullptr, 0, nullptr,
                                       nullptr);
  }
  if (ok != 1) {
    return crypto_error("PEM_write_bio_PKCS8PrivateKey");
  }
  return openssl::bio_contents(bio.get());
}

result<std::string> PrivateKey::sign(std::string_view message) const {
  openssl::MdCtxPtr ctx(EVP_MD_CTX_new());
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (!ctx || EVP_DigestSignInit(ctx.get(), &pctx, digest_for(type()), nullptr, pkey_.get()) != 1 ||
      !configure_pss(pctx, type())) {
    return crypto_error("EVP_DigestSignInit");
  }
  const auto* msg = reinterpret_cast<const unsigned char*>(message.data());
  size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, msg, message.size()) != 1) {
    return crypto_error("EVP_DigestSign");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len, msg,
                     message.size()) != 1) {
    return crypto_error("EVP_DigestSign");
  }
  sig.resize(len);
  return sig;
}

}  // namespace fwdepot
