// SPDX-License-Identifier: Apache-2.0
// The HTTPS server end to end: a real server on loopback, real TLS with certificates from our
// own PKI, and curl as a client no one here wrote.
#include "support/json_reply.hpp"
#include "support/server_fixture.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <algorithm>
#include <boost/json.hpp>
#include <sstream>

namespace fwdepot::testing {
namespace {

namespace json = boost::json;

std::string random_payload(std::size_t n) {
  const auto bytes = random_bytes(n).value();
  return {bytes.begin(), bytes.end()};
}

std::string checkin_body(std::string_view version, std::string_view state,
                         std::string_view result = {}) {
  json::object o{{"model", "m1"}, {"version", version}, {"state", state}};
  if (!result.empty()) {
    o["result"] = result;
  }
  return json::serialize(o);
}

class HttpsServerTest : public ServerFixture {
 protected:
  void SetUp() override {
    ServerFixture::SetUp();
    issue_device("dev-1", "m1");
  }

  // Uploads FILE (already made) and targets model m1 with it; returns the image id.
  std::int64_t publish(const std::string& file) {
    auto up = upload(file);
    EXPECT_EQ(up.status, 201) << up.body << up.err;
    const auto id = parse(up.body).at("id").as_int64();
    auto dep = admin("POST", "/api/v1/deployments",
                     R"({"image_id":)" + std::to_string(id) + R"(,"models":["m1"]})");
    EXPECT_EQ(dep.status, 201) << dep.body;
    return id;
  }
};

// --- the happy path, with curl on both sides -------------------------------------------------

TEST_F(HttpsServerTest, CurlUploadsDeviceChecksInDownloadsAndTheHistoryIsVisible) {
  start_server();
  const std::string payload = random_payload(300 * 1024 + 7);
  make_image("fw", "fw", "1.1.0", {"m1"}, payload);
  const auto id = publish("fw");

  auto offer = device("dev-1", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "idle"));
  ASSERT_EQ(offer.status, 200) << offer.body;
  const auto update = parse(offer.body).at("update");
  ASSERT_TRUE(update.is_object()) << offer.body;
  EXPECT_EQ(update.at("image_id").as_int64(), id);
  EXPECT_EQ(update.at("size").as_int64(), static_cast<std::int64_t>(payload.size()));
  EXPECT_EQ(json::value_to<std::string>(update.at("sha256")), hex_encode(sha256(payload)));
  // The manifest comes back as uploaded, so the device verifies the release key's signature.
  EXPECT_EQ(update.at("manifest"), parse(read_file(dir_ / "fw.dsse")));
  const auto url = json::value_to<std::string>(update.at("urls").at("https"));
  EXPECT_EQ(url, device_url("/api/v1/device/images/" + std::to_string(id)));

  EXPECT_EQ(device("dev-1", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "downloading"))
                .status,
            200);
  auto got = curl({"--cert", (dir_ / "dev-1.pem").string(), "--key", (dir_ / "dev-1.key").string(),
                   "-o", (dir_ / "got.bin").string(), url});
  ASSERT_EQ(got.status, 200) << got.err;
  EXPECT_EQ(read_file(dir_ / "got.bin"), payload);
  for (const char* state : {"downloaded", "updating"}) {
    EXPECT_EQ(
        device("dev-1", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", state)).status,
        200);
  }
  auto done =
      device("dev-1", "POST", "/api/v1/device/checkin", checkin_body("1.1.0", "idle", "success"));
  ASSERT_EQ(done.status, 200);
  EXPECT_EQ(parse(done.body), parse(R"({"update":null})"));

  auto dev = admin("GET", "/api/v1/devices/dev-1");
  ASSERT_EQ(dev.status, 200) << dev.body;
  EXPECT_EQ(parse(dev.body).at("version"), "1.1.0");
  EXPECT_EQ(parse(dev.body).at("last_result"), "success");

  auto events = admin("GET", "/api/v1/devices/dev-1/events");
  ASSERT_EQ(events.status, 200) << events.body;
  const json::value history = parse(events.body);
  const auto& list = history.at("events").as_array();
  ASSERT_EQ(list.size(), 5u) << events.body;
  const std::vector<std::tuple<std::string, std::string, json::value, json::value>> expected = {
      {"1.0.0", "idle", nullptr, id},  // the offer, recorded with the check-in that got it
      {"1.0.0", "downloading", nullptr, id},
      {"1.0.0", "downloaded", nullptr, id},
      {"1.0.0", "updating", nullptr, id},
      {"1.1.0", "idle", "success", nullptr}};
  for (std::size_t i = 0; i < list.size(); ++i) {
    const auto& [version, state, result, image] = expected[i];
    EXPECT_EQ(list[i].at("kind"), "checkin") << i;
    EXPECT_EQ(list[i].at("version"), json::value(version)) << i;
    EXPECT_EQ(list[i].at("state"), json::value(state)) << i;
    EXPECT_EQ(list[i].at("result"), result) << i;
    EXPECT_EQ(list[i].at("image_id"), image) << i;
  }
  // Newest first, and back from a cursor.
  const auto newest = parse(admin("GET", "/api/v1/devices/dev-1/events?order=desc&limit=2").body);
  ASSERT_EQ(newest.at("events").as_array().size(), 2u);
  EXPECT_EQ(newest.at("events").as_array()[0], list[4]);
  EXPECT_EQ(newest.at("events").as_array()[1], list[3]);
  const auto older = parse(admin("GET", "/api/v1/devices/dev-1/events?order=desc&before=" +
                                            std::to_string(list[3].at("id").as_int64()))
                               .body);
  EXPECT_EQ(older.at("events").as_array().size(), 3u);
  EXPECT_EQ(admin("GET", "/api/v1/devices/dev-1/events?order=sideways").status, 400);
  EXPECT_EQ(admin("GET", "/api/v1/devices/dev-1/events?order=desc&after=1").status, 400);
  const std::string m = metrics();
  EXPECT_NE(m.find("fwdepot_update_outcomes_total{result=\"success\"} 1\n"), std::string::npos)
      << m;
  EXPECT_NE(m.find("fwdepot_checkins_total 5\n"), std::string::npos) << m;
  EXPECT_NE(m.find("fwdepot_bytes_served_total " + std::to_string(payload.size()) + "\n"),
            std::string::npos)
      << m;
}

TEST_F(HttpsServerTest, ADownloadCutHalfWayResumesWithCurlToIdenticalBytes) {
  start_server();
  const std::string payload = random_payload(4 * 1024 * 1024);
  make_image("fw", "fw", "1.1.0", {"m1"}, payload);
  const auto id = publish("fw");
  ASSERT_EQ(device("dev-1", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "idle")).status,
            200);
  const std::string url = device_url("/api/v1/device/images/" + std::to_string(id));
  const std::vector<std::string> cert{"--cert", (dir_ / "dev-1.pem").string(), "--key",
                                      (dir_ / "dev-1.key").string()};
  const std::string out = (dir_ / "part.bin").string();

  // Throttled and cut off by curl's own deadline: the connection drops mid-body.
  auto args = cert;
  args.insert(args.end(), {"--limit-rate", "256K", "--max-time", "2", "-o", out, url});
  auto cut = curl(args);
  EXPECT_EQ(cut.exit_code, 28) << cut.err;  // CURLE_OPERATION_TIMEDOUT
  const auto partial = std::filesystem::file_size(out);
  ASSERT_GT(partial, 0u);
  ASSERT_LT(partial, payload.size());

  args = cert;
  args.insert(args.end(), {"-C", "-", "-o", out, url});
  auto resumed = curl(args);
  EXPECT_EQ(resumed.status, 206) << resumed.err;
  EXPECT_EQ(read_file(out), payload);
}

TEST_F(HttpsServerTest, RangeIfRangeIfMatchHeadAndUnsatisfiableRanges) {
  start_server();
  const std::string payload = random_payload(10'000);
  make_image("fw", "fw", "1.1.0", {"m1"}, payload);
  const auto id = publish("fw");
  ASSERT_EQ(device("dev-1", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "idle")).status,
            200);
  const std::string path = "/api/v1/device/images/" + std::to_string(id);
  const std::string etag = "\"" + hex_encode(sha256(payload)) + "\"";

  auto ranged = device("dev-1", "GET", path, {},
                       {"-H", "Range: bytes=100-", "-H", "If-Range: " + etag, "-D", "-"});
  EXPECT_EQ(ranged.status, 206);
  EXPECT_NE(ranged.body.find("Content-Range: bytes 100-9999/10000\r\n"), std::string::npos)
      << ranged.body;
  EXPECT_NE(ranged.body.find("ETag: " + etag + "\r\n"), std::string::npos);
  EXPECT_TRUE(ranged.body.ends_with(payload.substr(100)));

  // A stale validator: the client's copy is of another image, so it gets all of this one.
  auto stale =
      device("dev-1", "GET", path, {}, {"-H", "Range: bytes=100-", "-H", "If-Range: \"0000\""});
  EXPECT_EQ(stale.status, 200);
  EXPECT_EQ(stale.body, payload);

  // Anjay's downloader resumes with If-Match: a mismatch is 412, never the wrong bytes.
  auto mismatch =
      device("dev-1", "GET", path, {}, {"-H", "Range: bytes=100-", "-H", "If-Match: \"0000\""});
  EXPECT_EQ(mismatch.status, 412);
  EXPECT_EQ(error_code_of(mismatch), "precondition_failed");
  auto match =
      device("dev-1", "GET", path, {}, {"-H", "Range: bytes=-10", "-H", "If-Match: " + etag});
  EXPECT_EQ(match.status, 206);
  EXPECT_EQ(match.body, payload.substr(payload.size() - 10));

  auto past_end = device("dev-1", "GET", path, {}, {"-H", "Range: bytes=10000-", "-D", "-"});
  EXPECT_EQ(past_end.status, 416);
  EXPECT_NE(past_end.body.find("Content-Range: bytes */10000\r\n"), std::string::npos)
      << past_end.body;

  auto head = device("dev-1", "HEAD", path, {}, {"--head"});
  EXPECT_EQ(head.status, 200);
  EXPECT_NE(head.body.find("Content-Length: 10000\r\n"), std::string::npos) << head.body;
  EXPECT_NE(head.body.find("Accept-Ranges: bytes\r\n"), std::string::npos);
}

TEST_F(HttpsServerTest, DownloadsOnlyWhatIsOfferedToTheDevice) {
  issue_device("dev-2", "m2");
  start_server();
  make_image("fw", "fw", "1.1.0", {"m1"}, random_payload(1000));
  const auto id = publish("fw");
  const std::string path = "/api/v1/device/images/" + std::to_string(id);
  // Not checked in yet, then checked in as a model the image is not for, then already current.
  EXPECT_EQ(device("dev-2", "GET", path).status, 403);
  auto other = device("dev-2", "POST", "/api/v1/device/checkin",
                      R"({"model":"m2","version":"1.0.0","state":"idle"})");
  EXPECT_EQ(parse(other.body), parse(R"({"update":null})"));
  EXPECT_EQ(device("dev-2", "GET", path).status, 403);
  // A device cannot claim another model than its certificate says.
  auto claim = device("dev-2", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "idle"));
  EXPECT_EQ(claim.status, 403);
  EXPECT_EQ(device("dev-1", "POST", "/api/v1/device/checkin", checkin_body("1.1.0", "idle")).body,
            R"({"update":null})");
  EXPECT_EQ(device("dev-1", "GET", path).status, 403);
  EXPECT_EQ(device("dev-1", "GET", "/api/v1/device/images/999").status, 403);
}

TEST_F(HttpsServerTest, DeploymentsTargetDevicesOverModelsAndGuardImages) {
  issue_device("dev-2", "m1");
  start_server();
  make_image("v11", "fw", "1.1.0", {"m1"}, random_payload(1000));
  make_image("v12", "fw", "1.2.0", {"m1"}, random_payload(1000));
  make_image("v09", "fw", "0.9.0", {"m1"}, random_payload(1000));
  const auto v11 = publish("v11");  // model-level
  const auto v12 = parse(upload("v12").body).at("id").as_int64();
  const auto v09 = parse(upload("v09").body).at("id").as_int64();
  auto offered = [&](const std::string& id) -> json::value {
    auto r = device(id, "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "idle"));
    EXPECT_EQ(r.status, 200) << r.body;
    const auto u = parse(r.body).at("update");
    return u.is_null() ? json::value(nullptr) : u.at("image_id");
  };
  EXPECT_EQ(offered("dev-1"), json::value(v11));

  // A device-level assignment wins over a model-level one, even a newer one.
  auto dep = admin("POST", "/api/v1/deployments",
                   R"({"image_id":)" + std::to_string(v12) + R"(,"devices":["dev-1"]})");
  ASSERT_EQ(dep.status, 201) << dep.body;
  const auto dev_dep = parse(dep.body).at("id").as_int64();
  auto newer_model = admin("POST", "/api/v1/deployments",
                           R"({"image_id":)" + std::to_string(v11) + R"(,"models":["m1"]})");
  ASSERT_EQ(newer_model.status, 201);
  EXPECT_EQ(offered("dev-1"), json::value(v12));
  EXPECT_EQ(offered("dev-2"), json::value(v11));

  // A lower version is offered only where the deployment allows a downgrade.
  ASSERT_EQ(admin("POST", "/api/v1/deployments",
                  R"({"image_id":)" + std::to_string(v09) + R"(,"devices":["dev-2"]})")
                .status,
            201);
  EXPECT_EQ(offered("dev-2"), json::value(nullptr));
  ASSERT_EQ(admin("POST", "/api/v1/deployments",
                  R"({"image_id":)" + std::to_string(v09) +
                      R"(,"devices":["dev-2"],"allow_downgrade":true})")
                .status,
            201);
  EXPECT_EQ(offered("dev-2"), json::value(v09));

  // An image in an active deployment cannot be deleted; once cancelled, it can, blob and all.
  auto in_use = admin("DELETE", "/api/v1/images/" + std::to_string(v12));
  EXPECT_EQ(in_use.status, 409) << in_use.body;
  EXPECT_EQ(error_code_of(in_use), "in_use");
  EXPECT_EQ(admin("DELETE", "/api/v1/deployments/" + std::to_string(dev_dep)).status, 204);
  EXPECT_EQ(admin("DELETE", "/api/v1/deployments/" + std::to_string(dev_dep)).status, 404);
  EXPECT_EQ(offered("dev-1"), json::value(v11));
  const std::string v12_digest = hex_encode(sha256(read_file(dir_ / "v12.bin")));
  EXPECT_NE(storage_snapshot().find(v12_digest), std::string::npos);
  EXPECT_EQ(admin("DELETE", "/api/v1/images/" + std::to_string(v12)).status, 204);
  EXPECT_EQ(admin("GET", "/api/v1/images/" + std::to_string(v12)).status, 404);
  EXPECT_EQ(storage_snapshot().find(v12_digest), std::string::npos);

  // Devices: filters and paging.
  auto page = admin("GET", "/api/v1/devices?model=m1&limit=1&sort=id");
  ASSERT_EQ(page.status, 200) << page.body;
  const auto p = parse(page.body);
  EXPECT_EQ(p.at("total").as_int64(), 2);
  ASSERT_EQ(p.at("devices").as_array().size(), 1u);
  EXPECT_EQ(p.at("devices").as_array()[0].at("id"), "dev-1");
  auto second = parse(admin("GET", "/api/v1/devices?model=m1&limit=1&offset=1&sort=id").body);
  EXPECT_EQ(second.at("devices").as_array()[0].at("id"), "dev-2");
  EXPECT_EQ(parse(admin("GET", "/api/v1/devices?model=m2").body).at("total").as_int64(), 0);
  EXPECT_EQ(admin("GET", "/api/v1/devices?limit=0").status, 400);
  EXPECT_EQ(admin("GET", "/api/v1/devices/nobody").status, 404);
}

TEST_F(HttpsServerTest, FleetStatsAndDeploymentProgressFollowTheDevices) {
  issue_device("dev-2", "m1");
  issue_device("dev-3", "m1");
  start_server();
  make_image("fw", "fw", "1.1.0", {"m1"}, random_payload(1000));
  const auto id = publish("fw");
  const std::string deployment = "/api/v1/deployments/1";
  auto progress = [&] { return parse(admin("GET", deployment).body).at("progress"); };
  EXPECT_EQ(progress(), parse(R"({"targeted":0,"at_version":0,"in_progress":0,"failed":0})"));

  ASSERT_EQ(device("dev-1", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "idle")).status,
            200);
  ASSERT_EQ(device("dev-2", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "downloading"))
                .status,
            200);
  ASSERT_EQ(device("dev-3", "POST", "/api/v1/device/checkin",
                   checkin_body("1.0.0", "idle", "integrity_failure"))
                .status,
            200);
  EXPECT_EQ(progress(), parse(R"({"targeted":3,"at_version":0,"in_progress":1,"failed":1})"));
  ASSERT_EQ(
      device("dev-1", "POST", "/api/v1/device/checkin", checkin_body("1.1.0", "idle", "success"))
          .status,
      200);
  const auto detail = parse(admin("GET", deployment).body);
  EXPECT_EQ(detail.at("image_id").as_int64(), id);
  EXPECT_EQ(detail.at("progress"),
            parse(R"({"targeted":3,"at_version":1,"in_progress":1,"failed":1})"));

  auto stats = admin("GET", "/api/v1/stats");
  ASSERT_EQ(stats.status, 200) << stats.body;
  const auto s = parse(stats.body);
  EXPECT_EQ(s.at("devices").as_int64(), 3);
  EXPECT_EQ(s.at("by_version"),
            parse(R"([{"key":"1.0.0","devices":2},{"key":"1.1.0","devices":1}])"));
  EXPECT_EQ(s.at("by_model"), parse(R"([{"key":"m1","devices":3}])"));
  ASSERT_EQ(s.at("recent_failures").as_array().size(), 1u) << stats.body;
  EXPECT_EQ(s.at("recent_failures").as_array()[0].at("id"), "dev-3");

  EXPECT_EQ(admin("GET", "/api/v1/deployments/99").status, 404);
  EXPECT_EQ(admin("GET", "/api/v1/deployments/x").status, 404);
  EXPECT_EQ(admin("POST", "/api/v1/stats").status, 405);
}

// The admin listener serves the web UI: every answer carries the browser protections, the
// files are compiled in, and nothing but the UI's own files is served outside /api.
TEST_F(HttpsServerTest, AdminAnswersCarryBrowserProtectionsAndServeTheUi) {
  start_server();
  const auto headers = dir_ / "headers.txt";
  auto with_headers = [&](const std::string& path, bool token) {
    std::vector<std::string> args{"-D", headers.string()};
    if (token) {
      args.insert(args.end(), {"-H", "Authorization: Bearer " + token_});
    }
    args.push_back(admin_url(path));
    auto r = curl(args);
    std::string h = read_file(headers);
    std::transform(h.begin(), h.end(), h.begin(), ::tolower);
    return std::pair{r, h};
  };
  for (const auto& [path, token] :
       std::vector<std::pair<std::string, bool>>{{"/", false},
                                                 {"/app.js", false},
                                                 {"/api/v1/images", true},
                                                 {"/api/v1/images", false},
                                                 {"/nope.html", false}}) {
    const auto [reply, h] = with_headers(path, token);
    for (const char* expected : {"content-security-policy: default-src 'none'; script-src 'self'; ",
                                 "frame-ancestors 'none'", "x-content-type-options: nosniff",
                                 "referrer-policy: no-referrer", "x-frame-options: deny"}) {
      EXPECT_NE(h.find(expected), std::string::npos) << path << " lacks " << expected << "\n" << h;
    }
    EXPECT_EQ(h.find("unsafe-inline"), std::string::npos) << path;
  }
  const auto [index, index_headers] = with_headers("/", false);
  EXPECT_EQ(index.status, 200);
  EXPECT_EQ(index.body, read_file(std::filesystem::path(FWDEPOT_SOURCE_DIR) / "web/index.html"));
  EXPECT_NE(index_headers.find("content-type: text/html; charset=utf-8"), std::string::npos);
  // No inline script or style anywhere in the page: the CSP would block them.
  EXPECT_EQ(index.body.find("<script>"), std::string::npos);
  EXPECT_EQ(index.body.find("style="), std::string::npos);
  const auto [js, js_headers] = with_headers("/app.js", false);
  EXPECT_EQ(js.body, read_file(std::filesystem::path(FWDEPOT_SOURCE_DIR) / "web/app.js"));
  EXPECT_NE(js_headers.find("content-type: text/javascript"), std::string::npos);

  EXPECT_EQ(with_headers("/nope.html", false).first.status, 404);
  EXPECT_EQ(with_headers("/web/app.js", false).first.status, 404);
  EXPECT_EQ(with_headers("/..%2fCMakeLists.txt", false).first.status, 400);
  EXPECT_EQ(admin("POST", "/app.js").status, 405);
  // Metrics label unknown paths as one series, whatever a client sends.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(admin("GET", "/api/v1/junk" + std::to_string(i)).status, 404);
  }
  const std::string m = metrics();
  EXPECT_EQ(m.find("junk"), std::string::npos) << m;
  EXPECT_NE(m.find("route=\"unknown\""), std::string::npos) << m;
}

// docs/openapi.yaml stays true: every documented route and method answers, with real ids,
// something other than "no such resource" or "method not allowed".
TEST_F(HttpsServerTest, EveryRouteInTheOpenApiDocumentExists) {
  start_server();
  make_image("fw", "fw", "1.1.0", {"m1"}, random_payload(1000));
  const auto id = publish("fw");
  ASSERT_EQ(id, 1);
  ASSERT_EQ(device("dev-1", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "idle")).status,
            200);

  std::vector<std::pair<std::string, std::string>> operations;  // (method, path)
  std::istringstream doc(
      read_file(std::filesystem::path(FWDEPOT_SOURCE_DIR) / "docs/openapi.yaml"));
  std::string line;
  std::string path;
  for (bool in_paths = false; std::getline(doc, line);) {
    if (!line.empty() && line[0] != ' ' && line[0] != '#') {
      in_paths = line == "paths:";
      continue;
    }
    if (in_paths && line.starts_with("  /") && line.ends_with(":")) {
      path = line.substr(2, line.size() - 3);
    }
    for (const char* m : {"get", "post", "put", "delete", "head"}) {
      if (in_paths && line == std::string("    ") + m + ":") {
        operations.emplace_back(m, path);
      }
    }
  }
  ASSERT_EQ(operations.size(), 19u);
  // Deletions last, deployments before images, so that every id still exists when it is used.
  auto rank = [](const std::pair<std::string, std::string>& op) {
    return op.first != "delete" ? 0 : op.second.find("deployments") != std::string::npos ? 1 : 2;
  };
  std::stable_sort(operations.begin(), operations.end(),
                   [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
  for (auto [method, route] : operations) {
    std::string target = route;
    if (auto at = target.find("{id}"); at != std::string::npos) {
      target.replace(at, 4, route.starts_with("/api/v1/devices/") ? "dev-1" : "1");
    }
    std::transform(method.begin(), method.end(), method.begin(), ::toupper);
    std::string body;
    std::vector<std::string> extra;
    if (method == "HEAD") {
      extra.push_back("--head");
    } else if (route == "/api/v1/device/checkin") {
      body = checkin_body("1.0.0", "idle");
    } else if (method == "PUT" && route == "/api/v1/devices/{id}/psk") {
      body = R"({"key":"000102030405060708090a0b0c0d0e0f"})";
    } else if (method == "POST" && route == "/api/v1/deployments") {
      body = R"({"image_id":1,"models":["m1"]})";
    } else if (method == "POST" && route == "/api/v1/images") {
      extra = {"-F", "manifest=@" + (dir_ / "fw.dsse").string(), "-F",
               "image=@" + (dir_ / "fw.bin").string()};
    }
    const HttpReply r = route.starts_with("/api/v1/device/")
                            ? device("dev-1", method, target, body, extra)
                            : admin(method, target, body, extra);
    EXPECT_NE(r.status, 405) << method << " " << target;
    EXPECT_TRUE(r.status != 404 || r.body.find("no such resource") == std::string::npos)
        << method << " " << target << ": " << r.body;
    EXPECT_TRUE(r.status > 0 && r.status < 500) << method << " " << target << ": " << r.status;
  }
}

// --- TLS refusals ----------------------------------------------------------------------------

TEST_F(HttpsServerTest, HandshakeRefusesMissingForeignExpiredAndRevokedCertificates) {
  // A certificate from another CA, and one of ours that expired yesterday.
  {
    auto other_ca = certs::CertificateAuthority::create("other CA", now() - 60, 30).value();
    auto key = PrivateKey::generate(KeyType::ecdsa_p256).value();
    auto cert = other_ca.issue_device(key.public_key(), "dev-x", "m1", now() - 60, 30).value();
    write_file(dir_ / "dev-x.pem", cert.to_pem());
    write_file(dir_ / "dev-x.key", key.to_pem().value());
  }
  issue_device("dev-old", "m1", now() - 3 * 86400, 2);
  const std::string serial = issue_device("dev-3", "m1");
  options_.handshake_timeout = std::chrono::milliseconds(1000);
  start_server();
  ASSERT_EQ(device("dev-3", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "idle")).status,
            200);
  const std::string before = storage_snapshot();

  auto none = curl({"-X", "POST", "--data-binary", checkin_body("1.0.0", "idle"),
                    device_url("/api/v1/device/checkin")});
  EXPECT_NE(none.exit_code, 0);
  EXPECT_NE(none.err.find("certificate required"), std::string::npos) << none.err;

  auto foreign = device("dev-x", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "idle"));
  EXPECT_NE(foreign.exit_code, 0);
  EXPECT_NE(foreign.err.find("unknown ca"), std::string::npos) << foreign.err;

  auto expired = device("dev-old", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "idle"));
  EXPECT_NE(expired.exit_code, 0);
  EXPECT_NE(expired.err.find("certificate expired"), std::string::npos) << expired.err;

  // Revoked while the server runs: the next handshake already sees the new CRL.
  write_crl({{serial, now()}});
  auto revoked = device("dev-3", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "idle"));
  EXPECT_NE(revoked.exit_code, 0);
  EXPECT_NE(revoked.err.find("certificate revoked"), std::string::npos) << revoked.err;

  // A garbage CRL file is refused and the last good one stays in force.
  replace_file(dir_ / "crl.pem", "-----BEGIN X509 CRL-----\ngarbage\n-----END X509 CRL-----\n");
  auto still = device("dev-3", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "idle"));
  EXPECT_NE(still.err.find("certificate revoked"), std::string::npos) << still.err;

  // A client that never starts its TLS handshake is cut off at the handshake deadline.
  {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(server_->device_port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    timeval tv{10, 0};  // far beyond the 1 s deadline; a hang fails the test, not the suite
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char c = 0;
    EXPECT_EQ(::recv(fd, &c, 1, 0), 0);  // an orderly close by the server, not a timeout
    ::close(fd);
  }

  // None of the refused clients left a trace.
  EXPECT_EQ(storage_snapshot(), before);
  const std::string m = metrics();
  for (const char* reason :
       {"peer did not return a certificate", "certificate revoked", "certificate has expired",
        "unable to get local issuer certificate", "timeout"}) {
    EXPECT_NE(m.find(std::string("reason=\"") + reason), std::string::npos) << reason << "\n" << m;
  }
  // The other devices are still served.
  EXPECT_EQ(device("dev-1", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "idle")).status,
            200);
}

// --- admin authentication ---------------------------------------------------------------------

TEST_F(HttpsServerTest, AdminApiRefusesMissingWrongAndRevokedTokens) {
  start_server();
  EXPECT_EQ(admin("GET", "/api/v1/images").status, 200);
  const std::string before = storage_snapshot();

  auto missing = curl({admin_url("/api/v1/images")});
  EXPECT_EQ(missing.status, 401);
  EXPECT_EQ(error_code_of(missing), "unauthorized");
  auto wrong = curl({"-H", "Authorization: Bearer " + token_ + "x", admin_url("/api/v1/images")});
  EXPECT_EQ(wrong.status, 401);
  auto basic = curl({"-u", "ci:" + token_, admin_url("/api/v1/images")});
  EXPECT_EQ(basic.status, 401);
  // A refused upload is answered before its body is read, and stores nothing.
  make_image("fw", "fw", "1.1.0", {"m1"}, random_payload(1000));
  auto up =
      curl({"-H", "Authorization: Bearer nope", "-F", "manifest=@" + (dir_ / "fw.dsse").string(),
            "-F", "image=@" + (dir_ / "fw.bin").string(), admin_url("/api/v1/images")});
  EXPECT_EQ(up.status, 401);
  EXPECT_EQ(storage_snapshot(), before);

  {
    auto catalog = storage::SqliteCatalog::open(options_.database).value();
    ASSERT_TRUE(catalog->revoke_token("ci", now()));
  }
  auto revoked = admin("GET", "/api/v1/images");
  EXPECT_EQ(revoked.status, 401);
  EXPECT_EQ(error_code_of(revoked), "unauthorized");
  // Health and metrics are for load balancers and scrapers: no token.
  EXPECT_EQ(curl({admin_url("/healthz")}).status, 200);
}

// --- uploads that must store nothing ----------------------------------------------------------

TEST_F(HttpsServerTest, RefusedUploadsStoreNothing) {
  options_.max_image_bytes = 64 * 1024;
  start_server();
  make_image("ok", "fw", "1.0.0", {"m1"}, random_payload(1000));
  ASSERT_EQ(upload("ok").status, 201);
  const std::string before = storage_snapshot();

  // Signed by a key the server does not trust.
  auto stranger = PrivateKey::generate(KeyType::ecdsa_p256).value();
  make_image("untrusted", "fw", "1.1.0", {"m1"}, random_payload(1000), &stranger);
  auto untrusted = upload("untrusted");
  EXPECT_EQ(untrusted.status, 422) << untrusted.body;
  EXPECT_EQ(error_code_of(untrusted), "verification_failed");

  // A payload that is not the one the manifest was signed for: same size, then another size.
  make_image("swap", "fw", "1.2.0", {"m1"}, random_payload(1000));
  write_file(dir_ / "swap.bin", random_payload(1000));
  auto digest = upload("swap");
  EXPECT_EQ(digest.status, 422) << digest.body;
  EXPECT_NE(digest.body.find("SHA-256"), std::string::npos) << digest.body;
  write_file(dir_ / "swap.bin", random_payload(999));
  auto size = upload("swap");
  EXPECT_EQ(size.status, 422) << size.body;
  write_file(dir_ / "swap.bin", random_payload(1001));
  auto longer = upload("swap");
  EXPECT_EQ(longer.status, 422) << longer.body;

  // Over the configured size limit.
  make_image("big", "fw", "1.3.0", {"m1"}, random_payload(100 * 1024));
  auto big = upload("big");
  EXPECT_EQ(big.status, 413) << big.body;
  EXPECT_EQ(error_code_of(big), "too_large");

  // Same name and version again.
  make_image("again", "fw", "1.0.0", {"m1"}, random_payload(1000));
  auto again = upload("again");
  EXPECT_EQ(again.status, 409) << again.body;

  // A multipart body cut off before its closing boundary.
  const std::string envelope = read_file(dir_ / "ok.dsse");
  const std::string truncated =
      "--XyZ\r\nContent-Disposition: form-data; name=\"manifest\"\r\n\r\n" + envelope +
      "\r\n--XyZ\r\nContent-Disposition: form-data; name=\"image\"\r\n\r\n" +
      read_file(dir_ / "ok.bin").substr(0, 500);
  write_file(dir_ / "truncated.body", truncated);
  auto cut = admin("POST", "/api/v1/images", {},
                   {"-H", "Content-Type: multipart/form-data; boundary=XyZ", "--data-binary",
                    "@" + (dir_ / "truncated.body").string()});
  EXPECT_EQ(cut.status, 400) << cut.body;

  // Not multipart at all.
  auto json_upload = admin("POST", "/api/v1/images", R"({"image":"x"})");
  EXPECT_EQ(json_upload.status, 415) << json_upload.body;

  EXPECT_EQ(storage_snapshot(), before);
  EXPECT_EQ(parse(admin("GET", "/api/v1/images").body).at("images").as_array().size(), 1u);
}

// --- hostile requests -------------------------------------------------------------------------

TEST_F(HttpsServerTest, MalformedRequestsGetClearErrorsAndChangeNothing) {
  start_server();
  make_image("fw", "fw", "1.1.0", {"m1"}, random_payload(1000));
  publish("fw");
  ASSERT_EQ(device("dev-1", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "idle")).status,
            200);
  const std::string before = storage_snapshot();

  for (const std::string& body :
       {std::string(R"({"model":"m1","version":"1.0.0")"),
        std::string(R"({"model":"m1","version":"1.0.0","state":"idle","state":"idle"})"),
        std::string(R"({"model":"m1","version":"1.0","state":"idle"})"),
        std::string(R"({"model":"m1","version":"1.0.0","state":"sleeping"})"),
        std::string(R"({"model":"m1","version":"1.0.0","state":"idle","extra":1})"),
        std::string(R"([1,2,3])")}) {
    auto r = device("dev-1", "POST", "/api/v1/device/checkin", body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
  }
  auto dup = admin("POST", "/api/v1/deployments", R"({"image_id":1,"image_id":1,"models":["m1"]})");
  EXPECT_EQ(dup.status, 400) << dup.body;
  auto no_image = admin("POST", "/api/v1/deployments", R"({"image_id":99,"models":["m1"]})");
  EXPECT_EQ(no_image.status, 404) << no_image.body;

  // Ids that try to climb out of their collection.
  for (const std::string& path :
       {std::string("/api/v1/images/..%2F..%2Fetc%2Fpasswd"), std::string("/api/v1/images/../1"),
        std::string("/api/v1/devices/..%2fdev-1"), std::string("/api/v1/devices/./dev-1")}) {
    auto r = admin("GET", path, {}, {"--path-as-is"});
    EXPECT_TRUE(r.status == 400 || r.status == 404) << path << " -> " << r.status;
  }
  auto dev_path = device("dev-1", "GET", "/api/v1/device/images/..%2F1", {}, {"--path-as-is"});
  EXPECT_TRUE(dev_path.status == 400 || dev_path.status == 404) << dev_path.status;

  // JSON bodies over 64 KiB are refused without being buffered.
  auto huge = admin("POST", "/api/v1/deployments", std::string(70 * 1024, ' ') + "{}");
  EXPECT_EQ(huge.status, 413) << huge.body;
  EXPECT_EQ(error_code_of(huge), "too_large");

  // A request head over 8 KiB.
  auto big_head =
      admin("GET", "/api/v1/images", {}, {"-H", "X-Padding: " + std::string(9000, 'a')});
  EXPECT_EQ(big_head.status, 431);
  EXPECT_EQ(error_code_of(big_head), "headers_too_large");

  EXPECT_EQ(storage_snapshot(), before);
}

// A bare TLS client for what curl will not do: trickle a request head byte by byte, or stop
// reading a response half-way. Every read waits at most `read_timeout`.
class TlsClient {
 public:
  TlsClient(std::uint16_t port, const std::filesystem::path& cert = {},
            const std::filesystem::path& key = {},
            std::chrono::milliseconds read_timeout = std::chrono::seconds(10)) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx_, SSL_VERIFY_NONE, nullptr);  // the server is not under test here
    if (!cert.empty() && (SSL_CTX_use_certificate_file(ctx_, cert.c_str(), SSL_FILETYPE_PEM) != 1 ||
                          SSL_CTX_use_PrivateKey_file(ctx_, key.c_str(), SSL_FILETYPE_PEM) != 1)) {
      throw std::runtime_error("TLS client: bad certificate or key");
    }
    bio_ = BIO_new_ssl_connect(ctx_);
    BIO_set_conn_hostname(bio_, ("127.0.0.1:" + std::to_string(port)).c_str());
    if (BIO_do_connect(bio_) != 1 || BIO_do_handshake(bio_) != 1) {
      throw std::runtime_error("TLS client: cannot connect");
    }
    int fd = -1;
    BIO_get_fd(bio_, &fd);
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(read_timeout).count();
    timeval tv{static_cast<time_t>(us / 1'000'000), static_cast<suseconds_t>(us % 1'000'000)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~TlsClient() {
    BIO_free_all(bio_);
    SSL_CTX_free(ctx_);
  }
  TlsClient(const TlsClient&) = delete;
  TlsClient& operator=(const TlsClient&) = delete;

  bool write(std::string_view bytes) {
    return BIO_write(bio_, bytes.data(), static_cast<int>(bytes.size())) ==
           static_cast<int>(bytes.size());
  }
  enum class Read { data, timeout, closed };
  /// Appends what arrives to `out`.
  Read read_some(std::string& out) {
    char buf[16384];
    const int n = BIO_read(bio_, buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
      return Read::data;
    }
    const bool retry = BIO_should_retry(bio_);
    ERR_clear_error();
    return retry ? Read::timeout : Read::closed;
  }

 private:
  SSL_CTX* ctx_ = nullptr;
  BIO* bio_ = nullptr;
};

TEST_F(HttpsServerTest, AnOffersUrlCarriesTheHostTheDeviceNamedAsAJsonString) {
  start_server();
  make_image("fw", "fw", "1.1.0", {"m1"}, random_payload(1000));
  const auto id = publish("fw");
  TlsClient client(server_->device_port(), dir_ / "dev-1.pem", dir_ / "dev-1.key");
  const std::string body = checkin_body("1.0.0", "idle");
  // A quote and a tab: legal in a field value, and each must be escaped in the answer's JSON.
  ASSERT_TRUE(
      client.write("POST /api/v1/device/checkin HTTP/1.1\r\nHost: h\"x\ty:1234\r\n"
                   "Content-Type: application/json\r\nContent-Length: " +
                   std::to_string(body.size()) + "\r\n\r\n" + body));
  std::string response;
  std::size_t head_end = std::string::npos;
  std::size_t length = 0;
  while (head_end == std::string::npos || response.size() < head_end + 4 + length) {
    ASSERT_EQ(client.read_some(response), TlsClient::Read::data) << response;
    head_end = response.find("\r\n\r\n");
    if (const auto at = response.find("Content-Length: "); at != std::string::npos) {
      length = std::stoul(response.substr(at + 16));
    }
  }
  ASSERT_TRUE(response.starts_with("HTTP/1.1 200 ")) << response;
  const auto answer = parse(response.substr(head_end + 4));
  EXPECT_EQ(json::value_to<std::string>(answer.at("update").at("urls").at("https")),
            "https://h\"x\ty:1234/api/v1/device/images/" + std::to_string(id));
}

TEST_F(HttpsServerTest, SlowLorisIsTimedOutWhileOthersAreServed) {
  options_.header_timeout = std::chrono::milliseconds(1500);
  start_server();
  TlsClient loris(server_->admin_port(), {}, {}, std::chrono::milliseconds(200));
  const std::string head = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(200, 'z');
  std::size_t sent = 0;
  bool closed = false;
  bool others_served = false;
  std::string answer;
  // One byte per wait of up to 200 ms: a head this slow takes over 40 s. The server must hang
  // up at its 1.5 s header deadline, long before the head is complete.
  while (sent < head.size() && !closed) {
    if (!loris.write(head.substr(sent, 1))) {
      closed = true;
      break;
    }
    ++sent;
    closed = loris.read_some(answer) == TlsClient::Read::closed;
    if (sent == 2) {
      // Meanwhile other clients are served at once.
      others_served = admin("GET", "/api/v1/images").status == 200;
    }
  }
  EXPECT_TRUE(closed);
  EXPECT_LT(sent, head.size());
  EXPECT_TRUE(others_served);
  EXPECT_EQ(answer, "");  // hung up on, not answered
}

// Reads one whole answer (its head, and a body of its Content-Length) from `client`; false if
// the connection ends or goes quiet first.
bool read_answer(TlsClient& client, std::string& answer) {
  answer.clear();
  while (true) {
    const auto head_end = answer.find("\r\n\r\n");
    if (head_end != std::string::npos) {
      const auto at = answer.find("Content-Length: ");
      const std::size_t length = at == std::string::npos ? 0 : std::stoul(answer.substr(at + 16));
      if (answer.size() >= head_end + 4 + length) {
        return true;
      }
    }
    if (client.read_some(answer) != TlsClient::Read::data) {
      return false;
    }
  }
}

// A connection parked after its answer ends once it has idled for the idle timeout (the
// server's sweep of parked connections), while one that keeps asking within the timeout stays
// open however long it lives.
TEST_F(HttpsServerTest, ParkedConnectionsEndAfterTheIdleTimeoutBusyOnesStay) {
  options_.idle_timeout = std::chrono::milliseconds(600);
  start_server();
  const std::string ask = "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n";
  // A read of nothing waits 150 ms: the pace of the busy client, a quarter of the timeout.
  TlsClient busy(server_->device_port(), dir_ / "dev-1.pem", dir_ / "dev-1.key",
                 std::chrono::milliseconds(150));
  TlsClient quiet(server_->device_port(), dir_ / "dev-1.pem", dir_ / "dev-1.key",
                  std::chrono::milliseconds(150));
  std::string answer;
  ASSERT_TRUE(quiet.write(ask));
  ASSERT_TRUE(read_answer(quiet, answer));
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 404 ")) << answer;
  const auto parked = std::chrono::steady_clock::now();
  std::string nothing;
  TlsClient::Read quiet_read = TlsClient::Read::timeout;
  while (quiet_read == TlsClient::Read::timeout &&
         std::chrono::steady_clock::now() - parked < std::chrono::seconds(8)) {
    ASSERT_TRUE(busy.write(ask));
    ASSERT_TRUE(read_answer(busy, answer));
    EXPECT_TRUE(answer.starts_with("HTTP/1.1 404 ")) << answer;
    quiet_read = quiet.read_some(nothing);  // waits up to 150 ms for the quiet one's end
  }
  const auto lasted = std::chrono::steady_clock::now() - parked;
  EXPECT_EQ(quiet_read, TlsClient::Read::closed);
  EXPECT_EQ(nothing, "");  // hung up on, not answered
  EXPECT_GE(lasted, std::chrono::milliseconds(600));
  EXPECT_LT(lasted, std::chrono::seconds(4));  // swept every 75 ms here
  // The busy connection has lived past the timeout, never idle that long: still served.
  ASSERT_TRUE(busy.write(ask));
  ASSERT_TRUE(read_answer(busy, answer));
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 404 ")) << answer;
}

TEST_F(HttpsServerTest, ConnectionsOverTheCapAreClosedAndCounted) {
  options_.max_connections = 1;
  start_server();
  {
    TlsClient holder(server_->admin_port());  // the admin listener's one connection
    auto refused = curl({admin_url("/healthz")});
    EXPECT_NE(refused.exit_code, 0);
    EXPECT_EQ(refused.status, 0);
  }
  // The device listener has its own cap: its connections are unaffected, and with the holder
  // gone the admin listener serves again (curl retries on a fresh connection each time).
  EXPECT_EQ(device("dev-1", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "idle")).status,
            200);
  HttpReply ok;
  for (int attempt = 0; attempt < 50 && ok.status != 200; ++attempt) {
    ok = curl({admin_url("/healthz")});  // the holder's session ends asynchronously
  }
  EXPECT_EQ(ok.status, 200);
  EXPECT_NE(metrics().find("reason=\"connection limit\"}"), std::string::npos) << metrics();
}

class HttpsDrainTest : public HttpsServerTest {
 protected:
  // A download of `payload` to dev-1 that has begun: the response's first bytes are in
  // `response`, and the client reads no more until told to. nullptr on failure.
  std::unique_ptr<TlsClient> start_download(const std::string& payload, std::string& response) {
    make_image("fw", "fw", "1.1.0", {"m1"}, payload);
    const auto id = publish("fw");
    const auto checkin =
        device("dev-1", "POST", "/api/v1/device/checkin", checkin_body("1.0.0", "idle"));
    EXPECT_EQ(checkin.status, 200);
    auto client =
        std::make_unique<TlsClient>(server_->device_port(), dir_ / "dev-1.pem", dir_ / "dev-1.key");
    const bool sent = client->write("GET /api/v1/device/images/" + std::to_string(id) +
                                    " HTTP/1.1\r\nHost: x\r\n\r\n");
    if (checkin.status != 200 || !sent || client->read_some(response) != TlsClient::Read::data) {
      return nullptr;
    }
    return client;
  }
};

TEST_F(HttpsDrainTest, StopLetsAnInFlightDownloadFinish) {
  options_.shutdown_grace = std::chrono::milliseconds(20'000);
  start_server();
  const std::string payload = random_payload(8 * 1024 * 1024);
  std::string response;
  auto client = start_download(payload, response);
  ASSERT_TRUE(client);
  server_->stop();
  // New connections are refused from now on, while this download goes on to its end.
  while (client->read_some(response) == TlsClient::Read::data) {
  }
  client.reset();
  thread_.join();  // run() has returned: the server is drained
  server_.reset();
  const auto body_at = response.find("\r\n\r\n");
  ASSERT_NE(body_at, std::string::npos);
  EXPECT_TRUE(response.starts_with("HTTP/1.1 200 OK\r\n")) << response.substr(0, body_at);
  EXPECT_EQ(response.substr(body_at + 4), payload);
}

// Shutdown ends at once the connections that wait for a request: one that has sent nothing
// since its handshake, and one parked after its first answer. Both timeouts are far longer
// than the clients wait, so only the shutdown can close them in time.
TEST_F(HttpsDrainTest, StopClosesConnectionsWaitingForARequestAtOnce) {
  options_.header_timeout = std::chrono::seconds(120);
  options_.idle_timeout = std::chrono::seconds(120);
  options_.shutdown_grace = std::chrono::seconds(120);
  start_server();
  TlsClient fresh(server_->device_port(), dir_ / "dev-1.pem", dir_ / "dev-1.key",
                  std::chrono::seconds(30));
  TlsClient parked(server_->device_port(), dir_ / "dev-1.pem", dir_ / "dev-1.key",
                   std::chrono::seconds(30));
  ASSERT_TRUE(parked.write("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string answer;
  while (answer.find("\r\n\r\n") == std::string::npos) {
    ASSERT_EQ(parked.read_some(answer), TlsClient::Read::data) << answer;
  }
  EXPECT_TRUE(answer.starts_with("HTTP/1.1 404 ")) << answer;
  server_->stop();
  for (TlsClient* client : {&fresh, &parked}) {
    std::string rest;
    TlsClient::Read r = TlsClient::Read::data;
    while (r == TlsClient::Read::data) {
      r = client->read_some(rest);
    }
    EXPECT_EQ(r, TlsClient::Read::closed) << rest;
  }
  thread_.join();
  server_.reset();
}

// The grace period ends with a download still going: run() returns, and destroying the server
// destroys that connection, which must not report the drain to a server half gone.
TEST_F(HttpsDrainTest, AnEndedGracePeriodCutsADownloadAndTheServerStops) {
  options_.shutdown_grace = std::chrono::milliseconds(200);
  start_server();
  std::string response;
  auto client = start_download(random_payload(8 * 1024 * 1024), response);
  ASSERT_TRUE(client);
  server_->stop();  // the client reads no more: the download cannot finish in time
  thread_.join();
  server_.reset();
  EXPECT_TRUE(response.starts_with("HTTP/1.1 200 OK\r\n"));
}

}  // namespace
}  // namespace fwdepot::testing
