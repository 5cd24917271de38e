// SPDX-License-Identifier: Apache-2.0
// The hot paths one at a time, without the network (Google Benchmark):
//   - manifest verification (DSSE parse, signature check, manifest parse) per key type;
//   - the streaming image verifier, in MiB/s;
//   - the check-in path: JSON in, the offer decided and the check-in written to a real SQLite
//     file (synchronous=FULL, so each one is a commit with its fsync), the answer out;
//   - a CoAPS Block2 block: the request's options read, the answer's options written and the
//     block's bytes read from the blob file.
//
//   build/bench/fwdepot-micro-bench [--benchmark_filter=REGEX]
#include "coaps/block_cache.hpp"
#include "coaps/messages.hpp"
#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/manifest.hpp"
#include "fwdepot/core/verifier.hpp"
#include "fwdepot/storage/blob_store.hpp"
#include "fwdepot/storage/sqlite_catalog.hpp"
#include "service/device_service.hpp"
#include "service/metrics.hpp"

#include <benchmark/benchmark.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

namespace fwdepot {
namespace {

[[noreturn]] void die(const std::string& what) {
  std::cerr << "micro-bench setup: " << what << "\n";
  std::exit(1);
}

template <class T>
T value_or_die(result<T> r, const char* what) {
  if (!r) {
    die(std::string(what) + ": " + r.error().message());
  }
  return std::move(*r);
}

Manifest bench_manifest(std::uint64_t size, const Sha256Digest& digest) {
  Manifest m;
  m.name = "bench-fw";
  m.version = value_or_die(Version::parse("2.0.0"), "version");
  m.models = {"bench"};
  m.size_bytes = size;
  m.sha256 = digest;
  m.created = "2026-11-30T00:00:00Z";
  return m;
}

// --- Manifest verification, per key type -------------------------------------------------------
void BM_VerifyManifest(benchmark::State& state, KeyType type) {
  auto key = value_or_die(PrivateKey::generate(type), "key");
  const PrivateKey* keys[] = {&key};
  const auto envelope = value_or_die(
      sign_manifest(bench_manifest(1 << 20, sha256(std::string_view("x"))), keys), "sign");
  const std::string json = envelope.to_json();
  const std::vector<PublicKey> trusted = {key.public_key()};
  for (auto _ : state) {
    auto verified = verify_envelope_json(json, trusted, 1);
    if (!verified) {
      state.SkipWithError("verification failed");
      break;
    }
    benchmark::DoNotOptimize(verified);
  }
}
BENCHMARK_CAPTURE(BM_VerifyManifest, ecdsa_p256, KeyType::ecdsa_p256);
BENCHMARK_CAPTURE(BM_VerifyManifest, ed25519, KeyType::ed25519);
BENCHMARK_CAPTURE(BM_VerifyManifest, rsa_2048, KeyType::rsa_2048);
BENCHMARK_CAPTURE(BM_VerifyManifest, rsa_3072, KeyType::rsa_3072);
BENCHMARK_CAPTURE(BM_VerifyManifest, rsa_pss_3072, KeyType::rsa_pss_3072);

// --- The streaming verifier ---------------------------------------------------------------------
void BM_StreamingVerifier(benchmark::State& state) {
  const std::size_t chunk = static_cast<std::size_t>(state.range(0));
  constexpr std::size_t kImage = 16 << 20;
  const std::string image(kImage, '\x5a');
  const Sha256Digest digest = sha256(image);
  for (auto _ : state) {
    auto v = value_or_die(ImageVerifier::create(kImage, digest), "verifier");
    for (std::size_t at = 0; at < kImage; at += chunk) {
      if (!v.update(std::string_view(image).substr(at, chunk))) {
        state.SkipWithError("update failed");
        return;
      }
    }
    if (!v.finish()) {
      state.SkipWithError("finish failed");
      break;
    }
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kImage));
}
BENCHMARK(BM_StreamingVerifier)->ArgName("chunk")->Arg(1024)->Arg(16 << 10)->Arg(256 << 10);

// --- The check-in path against SQLite ------------------------------------------------------------
class CheckinFixture {
 public:
  explicit CheckinFixture(bool offer) : dir_(make_dir()) {
    auto catalog = value_or_die(storage::SqliteCatalog::open(dir_ / "fwdepot.db"), "catalog");
    auto blobs = value_or_die(storage::FileBlobStore::open(dir_ / "blobs"), "blobs");
    auto key = value_or_die(PrivateKey::generate(KeyType::ecdsa_p256), "key");
    const PrivateKey* keys[] = {&key};
    const auto digest = sha256(std::string_view("payload"));
    const auto envelope =
        value_or_die(sign_manifest(bench_manifest(7, digest), keys), "sign").to_json();
    storage::NewImage image{"bench-fw",
                            "2.0.0",
                            {"bench"},
                            7,
                            digest,
                            envelope,
                            {key.key_id()},
                            "",
                            1,
                            "bench-fw-2.0.0.bin",
                            std::string(40, '0'),
                            std::string(32, '0')};
    const auto id = value_or_die(catalog->insert_image(image), "image");
    if (offer) {
      storage::NewDeployment d;
      d.image_id = id;
      d.models = {"bench"};
      d.created_at = 1;
      (void)value_or_die(catalog->create_deployment(d), "deployment");
    }
    backend_ = std::make_unique<server::Backend>(std::move(catalog), std::move(blobs));
    devices_ = std::make_unique<server::DeviceService>(*backend_, metrics_);
  }
  ~CheckinFixture() {
    devices_.reset();
    backend_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  server::DeviceService& devices() { return *devices_; }

 private:
  static std::filesystem::path make_dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fwdepot-bench-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) {
      die("mkdtemp");
    }
    return tmpl;
  }
  std::filesystem::path dir_;
  server::Metrics metrics_;
  std::unique_ptr<server::Backend> backend_;
  std::unique_ptr<server::DeviceService> devices_;
};

// range(0): 1 when the devices are offered an image (the answer carries the manifest).
void BM_Checkin(benchmark::State& state) {
  CheckinFixture fixture(state.range(0) == 1);
  constexpr int kDevices = 1000;
  std::vector<certs::DeviceIdentity> who(kDevices);
  for (int i = 0; i < kDevices; ++i) {
    who[static_cast<std::size_t>(i)] = {"bench-" + std::to_string(i), "bench", "01"};
  }
  const std::string body = R"({"model":"bench","version":"1.0.0","state":"idle"})";
  std::size_t i = 0;
  for (auto _ : state) {
    // Each device's next check-in a second later, as a device polls: its last_seen moves, and
    // every check-in writes and commits.
    const auto now = static_cast<std::int64_t>(1000 + i / kDevices);
    auto answer = fixture.devices().checkin(who[i++ % kDevices], body, "https://127.0.0.1:8443",
                                            "coaps://127.0.0.1:5684", now);
    if (answer.status != 200) {
      state.SkipWithError(answer.body.c_str());
      break;
    }
    benchmark::DoNotOptimize(answer);
  }
}
BENCHMARK(BM_Checkin)->ArgName("offer")->Arg(0)->Arg(1)->UseRealTime();

// --- A CoAPS Block2 block -----------------------------------------------------------------------
// What the listener does with each block request of a download, apart from DTLS and libcoap:
// reads its Block2 option and firmware id, and answers from the blob through the block cache.
void BM_Block2(benchmark::State& state) {
  const unsigned szx = static_cast<unsigned>(state.range(0));
  const std::size_t block = std::size_t{1} << (szx + 4);
  constexpr std::uint64_t kTotal = 1 << 20;
  std::string tmpl = (std::filesystem::temp_directory_path() / "fwdepot-bench-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    die("mkdtemp");
  }
  const std::filesystem::path dir = tmpl;
  auto store = value_or_die(storage::FileBlobStore::open(dir / "blobs"), "blob store");
  auto writer = value_or_die(store->begin_write(), "blob write");
  if (!writer->write(std::string(kTotal, '\x33'))) {
    die("blob write");
  }
  const Sha256Digest digest = value_or_die(writer->commit(), "blob commit");
  auto reader = value_or_die(store->open_blob(digest), "blob open");
  coap_startup();
  const std::array<std::uint8_t, 8> etag{1, 2, 3, 4, 5, 6, 7, 8};
  // The requests of a whole download, made beforehand: what is timed is the answer to each,
  // as libcoap hands the listener a request and an empty response.
  std::vector<coap_pdu_t*> requests;
  for (unsigned num = 0; num < kTotal / block; ++num) {
    coap_pdu_t* request = coap_pdu_init(COAP_MESSAGE_CON, COAP_REQUEST_CODE_GET, 1, 1400);
    std::uint8_t buf[4];
    coap_add_option(request, COAP_OPTION_URI_PATH, 2, reinterpret_cast<const std::uint8_t*>("fw"));
    coap_add_option(request, COAP_OPTION_URI_PATH, 1, reinterpret_cast<const std::uint8_t*>("1"));
    coap_add_option(request, COAP_OPTION_BLOCK2,
                    coap_encode_var_safe(buf, sizeof buf, (num << 4) | szx), buf);
    requests.push_back(request);
  }
  server::BlockCache blocks;
  std::size_t next = 0;
  for (auto _ : state) {
    coap_pdu_t* response = coap_pdu_init(COAP_MESSAGE_ACK, COAP_EMPTY_CODE, 1, 1400);
    const auto asked = server::block2(requests[next]);
    const auto id = server::firmware_id(requests[next]);
    const auto answer = server::answer_block(requests[next], asked, response, kTotal, etag,
                                             COAP_MEDIATYPE_APPLICATION_OCTET_STREAM,
                                             [&](std::uint64_t offset, std::span<char> out) {
                                               return blocks.copy(digest, *reader, offset, out);
                                             });
    coap_delete_pdu(response);
    if (answer.status != 205 || id != 1) {
      state.SkipWithError("answer_block failed");
      break;
    }
    next = (next + 1) % requests.size();
  }
  for (coap_pdu_t* request : requests) {
    coap_delete_pdu(request);
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * block));
  reader.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_Block2)->ArgName("szx")->Arg(6)->Arg(5)->Arg(4);

}  // namespace
}  // namespace fwdepot

BENCHMARK_MAIN();
