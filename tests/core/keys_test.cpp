// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/core/keys.hpp"

#include "fwdepot/core/encoding.hpp"

#include <gtest/gtest.h>

namespace fwdepot {
namespace {

class KeysByType : public ::testing::TestWithParam<KeyType> {};

TEST_P(KeysByType, SignVerifyRoundTripsThroughPem) {
  auto key = PrivateKey::generate(GetParam());
  ASSERT_TRUE(key) << key.error().message();
  EXPECT_EQ(key->type(), GetParam());

  auto pem = key->to_pem();
  ASSERT_TRUE(pem);
  auto reloaded = PrivateKey::from_pem(*pem);
  ASSERT_TRUE(reloaded) << reloaded.error().message();
  EXPECT_EQ(reloaded->key_id(), key->key_id());

  auto pub = PublicKey::from_pem(key->public_key().to_pem());
  ASSERT_TRUE(pub) << pub.error().message();
  EXPECT_EQ(pub->key_id(), key->key_id());
  EXPECT_EQ(pub->type(), GetParam());

  auto sig = reloaded->sign("message");
  ASSERT_TRUE(sig);
  EXPECT_TRUE(pub->verify("message", *sig));
  EXPECT_FALSE(pub->verify("messagE", *sig));
  std::string flipped = *sig;
  flipped[flipped.size() / 2] ^= 0x01;
  EXPECT_FALSE(pub->verify("message", flipped));
  EXPECT_FALSE(pub->verify("message", ""));
}

TEST_P(KeysByType, KeyIdIsSha256OfSubjectPublicKeyInfo) {
  auto key = PrivateKey::generate(GetParam());
  ASSERT_TRUE(key);
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(key->get(), &der);
  ASSERT_GT(len, 0);
  const std::string spki(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  EXPECT_EQ(key->key_id(), hex_encode(sha256(spki)));
  EXPECT_EQ(key->key_id().size(), 64u);
}

INSTANTIATE_TEST_SUITE_P(AllTypes, KeysByType,
                         ::testing::Values(KeyType::ecdsa_p256, KeyType::ed25519, KeyType::rsa_2048,
                                           KeyType::rsa_3072, KeyType::rsa_pss_2048,
                                           KeyType::rsa_pss_3072),
                         [](const auto& info) {
                           std::string name(to_string(info.param));
                           std::erase(name, '-');
                           return name;
                         });

TEST(Keys, OtherKeyDoesNotVerify) {
  auto a = PrivateKey::generate(KeyType::ecdsa_p256);
  auto b = PrivateKey::generate(KeyType::ecdsa_p256);
  ASSERT_TRUE(a && b);
  auto sig = a->sign("m");
  ASSERT_TRUE(sig);
  EXPECT_FALSE(b->public_key().verify("m", *sig));
  EXPECT_NE(a->key_id(), b->key_id());
}

TEST(Keys, PasswordProtectedKeyNeedsItsPassword) {
  auto key = PrivateKey::generate(KeyType::ed25519);
  ASSERT_TRUE(key);
  auto pem = key->to_pem("correct horse");
  ASSERT_TRUE(pem);
  EXPECT_NE(pem->find("ENCRYPTED"), std::string::npos);
  EXPECT_EQ(PrivateKey::from_pem(*pem).error(), core::error::invalid_key);
  EXPECT_EQ(PrivateKey::from_pem(*pem, "wrong").error(), core::error::invalid_key);
  auto ok = PrivateKey::from_pem(*pem, "correct horse");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->key_id(), key->key_id());
}

TEST(Keys, RejectsGarbageAndUnsupportedCurves) {
  EXPECT_EQ(PublicKey::from_pem("not a key").error(), core::error::invalid_key);
  EXPECT_EQ(PrivateKey::from_pem("").error(), core::error::invalid_key);
  openssl::PkeyPtr p384(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"));
  ASSERT_TRUE(p384);
  EXPECT_EQ(PublicKey::from_pkey(std::move(p384)).error(), core::error::unsupported_key_type);
  EXPECT_EQ(parse_key_type("dsa-1024").error(), core::error::unsupported_key_type);
  EXPECT_EQ(*parse_key_type("rsa-pss-3072"), KeyType::rsa_pss_3072);
}

TEST(Keys, PssSignatureDoesNotVerifyAsPkcs1) {
  // Same modulus, other scheme: the scheme is bound to the key, so this must not verify.
  auto pss = PrivateKey::generate(KeyType::rsa_pss_2048);
  ASSERT_TRUE(pss);
  auto sig = pss->sign("m");
  ASSERT_TRUE(sig);
  EXPECT_TRUE(pss->public_key().verify("m", *sig));
  // Reinterpret the same RSA key material as a plain (PKCS#1 v1.5) RSA key.
  openssl::PkeyPtr plain(EVP_PKEY_dup(pss->get()));
  ASSERT_TRUE(plain);
  ASSERT_EQ(EVP_PKEY_get_base_id(plain.get()), EVP_PKEY_RSA_PSS);
  auto pkcs1 = PrivateKey::generate(KeyType::rsa_2048);
  ASSERT_TRUE(pkcs1);
  auto pkcs1_sig = pkcs1->sign("m");
  ASSERT_TRUE(pkcs1_sig);
  EXPECT_FALSE(pss->public_key().verify("m", *pkcs1_sig));
}

}  // namespace
}  // namespace fwdepot
