// SPDX-License-Identifier: Apache-2.0
// The HTTPS request path with bytes in and bytes out and no socket: the server's own
// serve_requests() over a stream in memory, routing to the real services on a real SQLite
// catalog. The first byte picks the listener (device, with an image deployed to the device; or
// admin, with a live token) and how the bytes arrive (1, 7, 64 or 4096 at a time); the rest is
// what the client sends.
//
// Properties: whatever arrives, the answer is a well-formed sequence of HTTP responses, no more
// of them than requests (plus one refusal of a malformed one), none a 5xx, nothing after one
// that said "Connection: close", each with the listener's protective headers, and every
// download's body is exactly the image's bytes at the range it names.
#include "fuzz_target.hpp"
#include "fwdepot/certs/pki.hpp"
#include "fwdepot/core/encoding.hpp"
#include "fwdepot/core/manifest.hpp"
#include "fwdepot/storage/blob_store.hpp"
#include "fwdepot/storage/sqlite_catalog.hpp"
#include "https/requests.hpp"
#include "https/tls.hpp"

#include <spdlog/spdlog.h>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <memory>

using namespace fwdepot;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

constexpr std::string_view kToken = "fuzz-admin-token";  // made here, for this catalog only
constexpr std::string_view kBoundary = "fuzzboundary";

/// An AsyncReadStream and AsyncWriteStream over memory: reads hand out `input` `chunk` bytes at
/// a time, then end of stream; writes append to `output`. Every completion is posted, as a
/// socket's would be.
class MemoryStream {
 public:
  using executor_type = asio::any_io_executor;

  MemoryStream(executor_type ex, std::string_view input, std::size_t chunk)
      : ex_(std::move(ex)), input_(input), chunk_(chunk) {}

  executor_type get_executor() const { return ex_; }
  const std::string& output() const { return output_; }

  template <class Buffers, class Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const Buffers& b) {
          boost::system::error_code ec;
          std::size_t n = 0;
          if (input_.empty()) {
            ec = asio::error::eof;
          } else {
            n = asio::buffer_copy(b, asio::buffer(input_.data(), std::min(input_.size(), chunk_)));
            input_.remove_prefix(n);
          }
          asio::post(ex_, [h = std::move(handler), ec, n]() mutable { std::move(h)(ec, n); });
        },
        token, buffers);
  }

  template <class Buffers, class Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    return asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const Buffers& b) {
          std::size_t n = 0;
          for (auto it = asio::buffer_sequence_begin(b); it != asio::buffer_sequence_end(b); ++it) {
            const asio::const_buffer piece(*it);
            output_.append(static_cast<const char*>(piece.data()), piece.size());
            n += piece.size();
          }
          asio::post(ex_, [h = std::move(handler), n]() mutable {
            std::move(h)(boost::system::error_code{}, n);
          });
        },
        token, buffers);
  }

 private:
  executor_type ex_;
  std::string_view input_;
  std::size_t chunk_;
  std::string output_;
};

std::int64_t now() { return static_cast<std::int64_t>(std::time(nullptr)); }

void write_file(const std::filesystem::path& p, std::string_view bytes) {
  std::ofstream(p, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// One server's state: catalog, blobs and services, with the TLS contexts ServerContext holds
/// (never used here: there is no handshake).
struct World {
  std::filesystem::path dir;
  server::ServerOptions options;
  std::unique_ptr<server::ServerTls> tls;
  std::unique_ptr<server::Backend> backend;
  server::Metrics metrics;
  std::unique_ptr<server::DeviceService> devices;
  std::unique_ptr<server::AdminService> admin;
  std::unique_ptr<server::DdiService> ddi;
  std::unique_ptr<server::ServerContext> ctx;

  World(const std::string& name, const certs::CertificateAuthority& ca,
        const PrivateKey& server_key, const PublicKey& signer) {
    dir = std::filesystem::temp_directory_path() /
          ("fwdepot-fuzz-http-" + name + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const std::vector<std::string> dns{"localhost"};
    const std::vector<std::string> ips{"127.0.0.1"};
    server::TlsMaterial material{
        ca.issue_server(server_key.public_key(), dns, ips, now() - 60, 30).value().to_pem(),
        server_key.to_pem().value(),
        ca.certificate().to_pem(),
        {},
        {}};
    write_file(dir / "crl.pem", ca.make_crl({}, 1, now() - 60, 30).value().to_pem());
    tls = server::ServerTls::create(material, dir / "crl.pem").value();
    auto catalog = storage::SqliteCatalog::open(dir / "fwdepot.db").value();
    fuzz::check(static_cast<bool>(catalog->create_token("fuzz", hex_encode(sha256(kToken)), now())),
                "the token is stored");
    auto blobs = storage::FileBlobStore::open(dir / "blobs").value();
    backend = std::make_unique<server::Backend>(std::move(catalog), std::move(blobs));
    devices = std::make_unique<server::DeviceService>(*backend, metrics);
    admin = std::make_unique<server::AdminService>(*backend, std::vector<PublicKey>{signer}, 1,
                                                   server::AdminLimits{1 << 20});
    ddi = std::make_unique<server::DdiService>(*backend, metrics, server::DdiOptions{});
    ctx =
        std::make_unique<server::ServerContext>(options, *tls, *backend, *devices, *admin, metrics);
    ctx->ddi = ddi.get();
  }
  ~World() {
    ctx.reset();
    ddi.reset();
    admin.reset();
    devices.reset();
    backend.reset();
    tls.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  World(const World&) = delete;
  World& operator=(const World&) = delete;

  /// Uploads `image` signed by `key` for model m1 and deploys it; the image id.
  std::int64_t publish(const std::string& image, const PrivateKey& key) {
    Manifest m;
    m.name = "fw";
    m.version = Version::parse("2.0.0").value();
    m.models = {"m1"};
    m.size_bytes = image.size();
    m.sha256 = sha256(image);
    m.created = "2026-11-30T00:00:00Z";
    const PrivateKey* keys[] = {&key};
    const std::string envelope = sign_manifest(m, keys).value().to_json();
    const std::string b(kBoundary);
    const std::string body =
        "--" + b + "\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n" + envelope +
        "\r\n--" + b +
        "\r\nContent-Disposition: form-data; name=\"image\"; filename=\"fw.bin\"\r\n"
        "Content-Type: application/octet-stream\r\n\r\n" +
        image + "\r\n--" + b + "--\r\n";
    auto upload = admin->begin_upload("multipart/form-data; boundary=" + b, body.size()).value();
    fuzz::check(static_cast<bool>(upload->feed(body)), "the image's upload is accepted");
    const auto created = upload->finish(now());
    fuzz::check(created.status == 201, "the image is stored");
    const auto deployed =
        admin->handle("POST", "/deployments", {}, R"({"image_id":1,"models":["m1"]})", now());
    fuzz::check(deployed.status == 201, "the image is deployed");
    return 1;
  }
};

struct Fixture {
  bool quiet = [] {
    spdlog::set_level(spdlog::level::off);
    return true;
  }();
  certs::CertificateAuthority ca =
      certs::CertificateAuthority::create("fwdepot fuzz CA", now() - 60, 30).value();
  PrivateKey server_key = PrivateKey::generate(KeyType::ecdsa_p256).value();
  PrivateKey signer = PrivateKey::generate(KeyType::ecdsa_p256).value();
  // Separate catalogs: whatever the admin inputs delete, the device's image stays deployed.
  World device_world{"device", ca, server_key, signer.public_key()};
  World admin_world{"admin", ca, server_key, signer.public_key()};
  std::string image;
  std::optional<certs::DeviceIdentity> device = certs::DeviceIdentity{"dev-fuzz", "m1", "0a"};
  asio::io_context io;

  Fixture() {
    image.resize(150'001);
    for (std::size_t i = 0; i < image.size(); ++i) {
      image[i] = static_cast<char>((i * 7919) >> 3);
    }
    device_world.publish(image, signer);
  }
};

// The methods of the requests in `input`, read as the server reads them, up to the first whose
// head or body does not parse: the i-th response answers the i-th of these.
std::vector<http::verb> request_methods(std::string_view input) {
  std::vector<http::verb> methods;
  while (!input.empty()) {
    // The head first (a parser that is not eager stops after it), then the body: a body parser
    // is only made for a body the input holds, since a string body reserves its length.
    http::request_parser<http::empty_body> head;
    head.header_limit(server::requests::kMaxHeaderBytes);
    head.body_limit(boost::none);
    boost::system::error_code ec;
    std::size_t used = head.put(asio::buffer(input.data(), input.size()), ec);
    if (ec || !head.is_header_done()) {
      break;
    }
    methods.push_back(head.get().method());  // answered even if its body is cut short
    if (!head.is_done()) {
      if (head.content_length().value_or(0) > input.size() - used) {
        break;
      }
      http::request_parser<http::string_body> body(std::move(head));
      body.body_limit(input.size());
      body.eager(true);
      used += body.put(asio::buffer(input.data() + used, input.size() - used), ec);
      if (ec || !body.is_done()) {
        break;
      }
    }
    input.remove_prefix(used);
  }
  return methods;
}

void check_download(const http::response<http::string_body>& res, const std::string& image) {
  const auto& body = res.body();
  if (res.result() == http::status::ok) {
    fuzz::check(body == image, "a 200 download is the whole image");
    return;
  }
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  std::uint64_t total = 0;
  const std::string range(res[http::field::content_range]);
  fuzz::check(std::sscanf(range.c_str(), "bytes %lu-%lu/%lu", &first, &last, &total) == 3,
              "a 206 names its range");
  fuzz::check(total == image.size() && first <= last && last < total, "the range is in the image");
  fuzz::check(body == std::string_view(image).substr(first, last - first + 1),
              "a 206 download is the image's bytes at its range");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static Fixture f;
  if (size == 0) {
    return 0;
  }
  static constexpr std::array<std::size_t, 4> kChunks = {1, 7, 64, 4096};
  const bool admin = (data[0] & 1) != 0;
  const std::size_t chunk = kChunks[(data[0] >> 1) & 3];
  const std::string_view input = fuzz::text(data + 1, size - 1);
  World& world = admin ? f.admin_world : f.device_world;
  const auto listener = admin ? server::Listener::admin : server::Listener::device;
  const std::optional<certs::DeviceIdentity> device = admin ? std::nullopt : f.device;

  MemoryStream stream(f.io.get_executor(), input, chunk);
  bool idle = false;
  bool first = true;
  bool finished = false;
  asio::co_spawn(f.io,
                 server::requests::serve_requests(stream, listener, *world.ctx, device, "fuzz",
                                                  idle, first, true),
                 [&](std::exception_ptr e, bool parked) {
                   fuzz::check(e == nullptr, "no exception leaves the request path");
                   fuzz::check(!parked, "a stream in memory is served in one call");
                   finished = true;
                 });
  f.io.restart();
  f.io.run();
  fuzz::check(finished, "the session ends when the input does");

  const auto methods = request_methods(input);
  if (std::getenv("FUZZ_HTTP_DUMP") != nullptr) {
    std::fwrite(stream.output().data(), 1, stream.output().size(), stderr);
  }
  std::string_view out = stream.output();
  std::size_t answered = 0;
  bool closed = false;
  while (!out.empty()) {
    fuzz::check(!closed, "nothing follows a response that closed the connection");
    http::response_parser<http::string_body> parser;
    parser.eager(true);
    parser.body_limit(boost::none);
    if (answered < methods.size() && methods[answered] == http::verb::head) {
      parser.skip(true);
    }
    boost::system::error_code ec;
    const std::size_t used = parser.put(asio::buffer(out.data(), out.size()), ec);
    fuzz::check(!ec && parser.is_done(), "the output is well-formed HTTP responses");
    out.remove_prefix(used);
    const auto& res = parser.get();
    if (res.result_int() == 100) {
      fuzz::check(admin, "only an upload is told to continue");
      continue;
    }
    fuzz::check(res["Server"] == "fwdepot" && res[http::field::cache_control] == "no-store",
                "every response carries the common headers");
    ++answered;
    fuzz::check(answered <= methods.size() + 1, "no more responses than requests");
    fuzz::check(res.result_int() >= 200 && res.result_int() < 500, "no 5xx");
    if (admin) {
      fuzz::check(!res["Content-Security-Policy"].empty(), "the admin listener sends its CSP");
    } else if (res[http::field::content_type] == "application/octet-stream" &&
               (answered > methods.size() || methods[answered - 1] != http::verb::head)) {
      check_download(res, f.image);
    }
    closed = !res.keep_alive();
  }
  // Every request that came whole gets its answer unless one closed the connection; only the
  // last one read may go unanswered (its body cut short by the end of the input).
  fuzz::check(closed || answered + 1 >= methods.size(), "no request that came whole is dropped");
  return 0;
}
