// SPDX-License-Identifier: Apache-2.0
// hawkBit DDI end to end: the flow an update agent (suricatta, rauc-hawkbit-updater) walks,
// over mutual TLS on a real server, with curl as the agent and sha1sum/md5sum as outside
// checkers of the hashes the server hands out.
#include "support/json_reply.hpp"
#include "support/server_fixture.hpp"

#include <boost/json.hpp>

namespace fwdepot::testing {
namespace {

namespace json = boost::json;

std::string str(const json::value& v) { return json::value_to<std::string>(v); }

// What sha1sum or md5sum prints for a file: the hash alone.
std::string hash_of(const char* tool, const std::filesystem::path& file) {
  auto p = run_process({tool, file.string()});
  EXPECT_EQ(p.exit_code, 0) << p.err;
  return p.out.substr(0, p.out.find(' '));
}

std::string feedback(std::string_view execution, std::string_view finished,
                     std::vector<std::string> details = {}) {
  json::array d;
  for (auto& s : details) {
    d.emplace_back(s);
  }
  return json::serialize(
      json::object{{"id", "1"},
                   {"status", json::object{{"execution", execution},
                                           {"result", json::object{{"finished", finished}}},
                                           {"details", std::move(d)}}}});
}

class DdiTest : public ServerFixture {
 protected:
  void SetUp() override {
    ServerFixture::SetUp();
    issue_device("dev-1", "m1");
    issue_device("dev-2", "m1");
    options_.ddi_polling_sleep = std::chrono::seconds(3725);
  }

  static std::string base(const std::string& id) { return "/DEFAULT/controller/v1/" + id; }

  // Uploads a signed 1.1.0 for m1 and deploys it to `devices` with `action_type`.
  std::int64_t deploy(const std::vector<std::string>& devices, std::string_view action_type) {
    make_image("fw", "fw", "1.1.0", {"m1"}, payload_);
    auto up = upload("fw");
    EXPECT_EQ(up.status, 201) << up.body << up.err;
    image_id_ = parse(up.body).at("id").as_int64();
    json::array targets;
    for (const auto& d : devices) {
      targets.emplace_back(d);
    }
    auto dep = admin("POST", "/api/v1/deployments",
                     json::serialize(json::object{{"image_id", image_id_},
                                                  {"devices", std::move(targets)},
                                                  {"action_type", action_type}}));
    EXPECT_EQ(dep.status, 201) << dep.body;
    return parse(dep.body).at("id").as_int64();
  }

  // A second deployment of the uploaded image to dev-1; the status.
  int deploy_again() {
    return admin("POST", "/api/v1/deployments",
                 R"({"image_id":)" + std::to_string(image_id_) + R"(,"devices":["dev-1"]})")
        .status;
  }

  json::value poll(const std::string& id) {
    auto r = device(id, "GET", base(id));
    EXPECT_EQ(r.status, 200) << r.body;
    return parse(r.body);
  }

  // The action id the poll links as deploymentBase (0: none).
  std::int64_t linked_action(const json::value& polled, const char* rel = "deploymentBase") {
    const auto* links = polled.as_object().if_contains("_links");
    if (links == nullptr || !links->as_object().contains(rel)) {
      return 0;
    }
    const std::string href = str(links->at(rel).at("href"));
    return std::stoll(href.substr(href.rfind('/') + 1));
  }

  HttpReply post_feedback(const std::string& id, std::int64_t action, const std::string& body,
                          const char* resource = "deploymentBase") {
    return device(id, "POST",
                  base(id) + "/" + resource + "/" + std::to_string(action) + "/feedback", body);
  }

  json::value admin_json(const std::string& path) {
    auto r = admin("GET", path);
    EXPECT_EQ(r.status, 200) << r.body;
    return parse(r.body);
  }

  std::string payload_ = std::string(300 * 1024 + 11, 'x') + "tail";
  std::int64_t image_id_ = 0;
};

TEST_F(DdiTest, AnAgentWalksTheWholeFlowAndTheAdminSeesTheNewVersion) {
  start_server();
  for (std::size_t i = 0; i < payload_.size(); i += 4099) {
    payload_[i] = static_cast<char>('a' + i % 26);
  }
  deploy({"dev-1"}, "forced");

  // Poll: the interval as HH:MM:SS, a link to the deployment and one asking for attributes.
  auto polled = device("dev-1", "GET", base("dev-1"), {}, {"-D", (dir_ / "poll.h").string()});
  ASSERT_EQ(polled.status, 200) << polled.body;
  EXPECT_NE(read_file(dir_ / "poll.h").find("application/hal+json"), std::string::npos);
  const auto p = parse(polled.body);
  EXPECT_EQ(p.at("config").at("polling").at("sleep"), "01:02:05");
  const auto action = linked_action(p);
  ASSERT_GT(action, 0) << polled.body;
  EXPECT_EQ(str(p.at("_links").at("deploymentBase").at("href")),
            device_url(base("dev-1") + "/deploymentBase/" + std::to_string(action)));
  EXPECT_EQ(str(p.at("_links").at("configData").at("href")),
            device_url(base("dev-1") + "/configData"));
  EXPECT_FALSE(p.at("_links").as_object().contains("cancelAction"));

  // deploymentBase: one chunk with one artifact, its hashes those of the uploaded file.
  auto db = device("dev-1", "GET", base("dev-1") + "/deploymentBase/" + std::to_string(action));
  ASSERT_EQ(db.status, 200) << db.body;
  const auto d = parse(db.body);
  EXPECT_EQ(str(d.at("id")), std::to_string(action));
  EXPECT_EQ(d.at("deployment").at("download"), "forced");
  EXPECT_EQ(d.at("deployment").at("update"), "forced");
  const auto& chunks = d.at("deployment").at("chunks").as_array();
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].at("part"), "os");
  EXPECT_EQ(chunks[0].at("name"), "fw");
  EXPECT_EQ(chunks[0].at("version"), "1.1.0");
  const auto& artifacts = chunks[0].at("artifacts").as_array();
  ASSERT_EQ(artifacts.size(), 1u);
  const auto& art = artifacts[0];
  EXPECT_EQ(art.at("filename"), "fw.bin");  // the name it was uploaded with
  EXPECT_EQ(art.at("size").as_int64(), static_cast<std::int64_t>(payload_.size()));
  EXPECT_EQ(str(art.at("hashes").at("sha1")), hash_of("sha1sum", dir_ / "fw.bin"));
  EXPECT_EQ(str(art.at("hashes").at("md5")), hash_of("md5sum", dir_ / "fw.bin"));
  EXPECT_EQ(str(art.at("hashes").at("sha256")), hash_of("sha256sum", dir_ / "fw.bin"));
  const std::string href = str(art.at("_links").at("download").at("href"));
  EXPECT_EQ(href, device_url(base("dev-1") + "/softwaremodules/" + std::to_string(image_id_) +
                             "/artifacts/fw.bin"));
  EXPECT_EQ(str(art.at("_links").at("download-http").at("href")), href);
  // The signed manifest rides along for agents that verify it.
  EXPECT_EQ(chunks[0].at("metadata").at(0).at("key"), "fwdepot.manifest");
  EXPECT_EQ(parse(str(chunks[0].at("metadata").at(0).at("value"))),
            parse(read_file(dir_ / "fw.dsse")));

  const std::string path = href.substr(device_url("").size());
  // HEAD, then a download cut short and resumed with a range guarded by the ETag.
  auto head = device("dev-1", "HEAD", path, {}, {"-I"});
  ASSERT_EQ(head.status, 200) << head.body;
  EXPECT_NE(head.body.find("Content-Length: " + std::to_string(payload_.size())), std::string::npos)
      << head.body;
  const std::string etag = "\"" + hex_encode(sha256(payload_)) + "\"";
  EXPECT_NE(head.body.find("ETag: " + etag), std::string::npos) << head.body;
  auto first = device("dev-1", "GET", path, {}, {"-r", "0-99999", "-o", (dir_ / "a").string()});
  ASSERT_EQ(first.status, 206) << first.err;
  auto rest = device(
      "dev-1", "GET", path, {},
      {"-H", "Range: bytes=100000-", "-H", "If-Range: " + etag, "-o", (dir_ / "b").string()});
  ASSERT_EQ(rest.status, 206) << rest.err;
  EXPECT_EQ(read_file(dir_ / "a") + read_file(dir_ / "b"), payload_);
  auto stale = device("dev-1", "GET", path, {}, {"-H", "If-Match: \"0000\""});
  EXPECT_EQ(stale.status, 412);
  auto md5 = device("dev-1", "GET", path + ".MD5SUM");
  ASSERT_EQ(md5.status, 200) << md5.body;
  EXPECT_EQ(md5.body, hash_of("md5sum", dir_ / "fw.bin") + "  fw.bin\n");

  // Feedback: proceeding, then closed with success.
  auto proceeding = post_feedback("dev-1", action, feedback("proceeding", "none", {"writing"}));
  ASSERT_EQ(proceeding.status, 200) << proceeding.body;
  EXPECT_EQ(admin_json("/api/v1/devices/dev-1").at("state"), "downloading");
  auto closed = post_feedback("dev-1", action, feedback("closed", "success", {"installed"}));
  ASSERT_EQ(closed.status, 200) << closed.body;

  // The next poll no longer links the action; a late feedback is gone.
  EXPECT_EQ(linked_action(poll("dev-1")), 0);
  EXPECT_EQ(post_feedback("dev-1", action, feedback("closed", "success")).status, 410);

  const auto dev = admin_json("/api/v1/devices/dev-1");
  EXPECT_EQ(dev.at("version"), "1.1.0");
  EXPECT_EQ(dev.at("state"), "idle");
  EXPECT_EQ(dev.at("last_result"), "success");
  const auto events = admin_json("/api/v1/devices/dev-1/events").at("events").as_array();
  ASSERT_EQ(events.size(), 3u) << json::serialize(events);
  EXPECT_EQ(events[0].at("kind"), "registered");
  EXPECT_EQ(events[1].at("kind"), "feedback");
  EXPECT_EQ(events[1].at("message"), "ddi proceeding: writing");
  EXPECT_EQ(events[2].at("version"), "1.1.0");
  EXPECT_EQ(events[2].at("result"), "success");
  EXPECT_EQ(events[2].at("image_id").as_int64(), image_id_);

  // configData: the attributes show in the admin API, and the poll stops asking.
  auto cfg = device("dev-1", "PUT", base("dev-1") + "/configData",
                    R"({"mode":"merge","data":{"hw":"rev2","serial":"A-17"}})");
  ASSERT_EQ(cfg.status, 200) << cfg.body;
  ASSERT_EQ(device("dev-1", "PUT", base("dev-1") + "/configData",
                   R"({"mode":"remove","data":{"serial":""}})")
                .status,
            200);
  EXPECT_EQ(admin_json("/api/v1/devices/dev-1").at("attributes"), parse(R"({"hw":"rev2"})"));
  EXPECT_FALSE(poll("dev-1").as_object().contains("_links"));
}

TEST_F(DdiTest, ACancelledDeploymentIsStoppedThroughCancelAction) {
  start_server();
  const auto deployment = deploy({"dev-1"}, "soft");
  const auto action = linked_action(poll("dev-1"));
  ASSERT_GT(action, 0);
  auto db = parse(
      device("dev-1", "GET", base("dev-1") + "/deploymentBase/" + std::to_string(action)).body);
  EXPECT_EQ(db.at("deployment").at("download"), "attempt");
  EXPECT_EQ(db.at("deployment").at("update"), "attempt");
  ASSERT_EQ(post_feedback("dev-1", action, feedback("download", "none")).status, 200);

  ASSERT_EQ(admin("DELETE", "/api/v1/deployments/" + std::to_string(deployment)).status, 204);
  const auto polled = poll("dev-1");
  EXPECT_EQ(linked_action(polled, "cancelAction"), action);
  EXPECT_EQ(linked_action(polled, "deploymentBase"), 0);
  auto cancel = device("dev-1", "GET", base("dev-1") + "/cancelAction/" + std::to_string(action));
  ASSERT_EQ(cancel.status, 200) << cancel.body;
  EXPECT_EQ(parse(cancel.body),
            parse(R"({"id":")" + std::to_string(action) + R"(","cancelAction":{"stopId":")" +
                  std::to_string(action) + R"("}})"));
  // Being cancelled, the deployment and its artifact are no longer handed out.
  EXPECT_EQ(
      device("dev-1", "GET", base("dev-1") + "/deploymentBase/" + std::to_string(action)).status,
      404);
  EXPECT_EQ(
      device("dev-1", "GET",
             base("dev-1") + "/softwaremodules/" + std::to_string(image_id_) + "/artifacts/fw.bin")
          .status,
      404);

  auto confirmed = post_feedback("dev-1", action, feedback("closed", "success"), "cancelAction");
  ASSERT_EQ(confirmed.status, 200) << confirmed.body;
  const auto after = poll("dev-1");
  EXPECT_EQ(linked_action(after, "cancelAction"), 0);
  EXPECT_EQ(linked_action(after, "deploymentBase"), 0);
  EXPECT_EQ(post_feedback("dev-1", action, feedback("closed", "success"), "cancelAction").status,
            410);
  const auto events = admin_json("/api/v1/devices/dev-1/events").at("events").as_array();
  EXPECT_EQ(events.back().at("kind"), "cancel_feedback");
  EXPECT_EQ(events.back().at("state"), "idle");
  EXPECT_EQ(admin_json("/api/v1/devices/dev-1").at("version"), "");
}

// A device may refuse to stop: its action runs on, offered again, and its image cannot be
// deleted from under it until the action ends.
TEST_F(DdiTest, ARefusedCancellationKeepsTheActionAndItsImage) {
  start_server();
  const auto deployment = deploy({"dev-1"}, "forced");
  const auto action = linked_action(poll("dev-1"));
  ASSERT_GT(action, 0);
  ASSERT_EQ(admin("DELETE", "/api/v1/deployments/" + std::to_string(deployment)).status, 204);
  EXPECT_EQ(linked_action(poll("dev-1"), "cancelAction"), action);
  auto refused =
      post_feedback("dev-1", action, feedback("rejected", "none", {"installing"}), "cancelAction");
  ASSERT_EQ(refused.status, 200) << refused.body;
  // hawkBit's tenant names ignore case: suricatta's examples say "default".
  auto polled = device("dev-1", "GET", "/default/controller/v1/dev-1");
  ASSERT_EQ(polled.status, 200) << polled.body;
  EXPECT_EQ(linked_action(parse(polled.body)), action);
  auto del = admin("DELETE", "/api/v1/images/" + std::to_string(image_id_));
  EXPECT_EQ(del.status, 409) << del.body;
  EXPECT_EQ(error_code_of(del), "in_use");
  ASSERT_EQ(post_feedback("dev-1", action, feedback("closed", "success")).status, 200);
  EXPECT_EQ(admin_json("/api/v1/devices/dev-1").at("version"), "1.1.0");
  EXPECT_EQ(admin("DELETE", "/api/v1/images/" + std::to_string(image_id_)).status, 204);
}

// A newer deployment for a device with a running action: the device is asked to stop the old
// one first (cancelAction), and is offered the new one once it has confirmed.
TEST_F(DdiTest, ANewerDeploymentSupersedesTheRunningAction) {
  start_server();
  deploy({"dev-1"}, "forced");
  const auto first = linked_action(poll("dev-1"));
  ASSERT_GT(first, 0);
  ASSERT_EQ(deploy_again(), 201);
  const auto asked = poll("dev-1");
  EXPECT_EQ(linked_action(asked, "cancelAction"), first);
  EXPECT_EQ(linked_action(asked, "deploymentBase"), 0);
  ASSERT_EQ(post_feedback("dev-1", first, feedback("canceled", "none"), "cancelAction").status,
            200);
  const auto second = linked_action(poll("dev-1"));
  EXPECT_GT(second, first);
  auto db = device("dev-1", "GET", base("dev-1") + "/deploymentBase/" + std::to_string(second));
  EXPECT_EQ(db.status, 200) << db.body;
}

TEST_F(DdiTest, AClosedFailureIsRecordedAndNotOfferedAgain) {
  start_server();
  const auto deployment = deploy({"dev-1"}, "forced");
  const auto action = linked_action(poll("dev-1"));
  ASSERT_GT(action, 0);
  auto failed =
      post_feedback("dev-1", action, feedback("closed", "failure", {"bootloader refused", "rc=3"}));
  ASSERT_EQ(failed.status, 200) << failed.body;
  const auto dev = admin_json("/api/v1/devices/dev-1");
  EXPECT_EQ(dev.at("last_result"), "update_failed");
  EXPECT_EQ(dev.at("last_message"), "ddi closed: bootloader refused; rc=3");
  EXPECT_EQ(dev.at("version"), "");
  EXPECT_EQ(
      admin_json("/api/v1/deployments/" + std::to_string(deployment)).at("progress").at("failed"),
      1);
  EXPECT_EQ(linked_action(poll("dev-1")), 0);
  // A report longer than the history keeps is cut to 1 KiB, prefix included.
  ASSERT_EQ(deploy_again(), 201);
  const auto second = linked_action(poll("dev-1"));
  ASSERT_GT(second, action);
  ASSERT_EQ(post_feedback("dev-1", second, feedback("closed", "failure", {std::string(3000, 'e')}))
                .status,
            200);
  const std::string message = str(admin_json("/api/v1/devices/dev-1").at("last_message"));
  EXPECT_EQ(message.size(), 1024u);
  EXPECT_EQ(message.substr(0, 13), "ddi closed: e");
  EXPECT_NE(metrics().find("fwdepot_update_outcomes_total{result=\"update_failed\"} 2"),
            std::string::npos)
      << metrics();
}

TEST_F(DdiTest, RefusalsChangeNothing) {
  start_server();
  deploy({"dev-1", "dev-2"}, "forced");
  const auto mine = linked_action(poll("dev-1"));
  const auto theirs = linked_action(poll("dev-2"));
  ASSERT_GT(mine, 0);
  ASSERT_GT(theirs, 0);
  const std::string before = storage_snapshot();
  const std::string ok = feedback("closed", "success");

  // Another controller than the certificate's, an unknown tenant, another device's action.
  auto other = device("dev-1", "GET", base("dev-2"));
  EXPECT_EQ(other.status, 403);
  EXPECT_EQ(error_code_of(other), "forbidden");
  EXPECT_EQ(device("dev-1", "POST",
                   base("dev-2") + "/deploymentBase/" + std::to_string(theirs) + "/feedback", ok)
                .status,
            403);
  EXPECT_EQ(device("dev-1", "GET", "/OTHER/controller/v1/dev-1").status, 404);
  EXPECT_EQ(post_feedback("dev-1", theirs, ok).status, 404);
  EXPECT_EQ(post_feedback("dev-1", theirs, ok, "cancelAction").status, 404);
  EXPECT_EQ(
      device("dev-1", "GET", base("dev-1") + "/deploymentBase/" + std::to_string(theirs)).status,
      404);
  EXPECT_EQ(post_feedback("dev-1", 999999, ok).status, 404);
  // Feedback to cancel an action nobody cancelled.
  EXPECT_EQ(post_feedback("dev-1", mine, ok, "cancelAction").status, 410);
  // Artifacts: a wrong name, a module not assigned, an id that is not one.
  const std::string modules = base("dev-1") + "/softwaremodules/";
  EXPECT_EQ(device("dev-1", "GET", modules + std::to_string(image_id_) + "/artifacts/x.bin").status,
            404);
  EXPECT_EQ(device("dev-1", "GET", modules + "77/artifacts/fw.bin").status, 404);
  EXPECT_EQ(device("dev-1", "GET", modules + "-1/artifacts/fw.bin").status, 404);
  EXPECT_EQ(device("dev-1", "DELETE", base("dev-1")).status, 405);

  for (
      const std::string body :
      {"not json", "{}", "[]", R"({"status":{}})", R"({"status":"closed"})",
       R"({"status":{"execution":"finished","result":{"finished":"success"}}})",
       R"({"status":{"execution":"closed"}})",
       R"({"status":{"execution":"closed","result":{"finished":"maybe"}}})",
       R"({"status":{"execution":"closed","result":{"finished":"success"},"details":"x"}})",
       R"({"status":{"execution":"closed","result":{"finished":"success"},"details":[1]}})",
       R"({"status":{"execution":"closed","result":{"finished":"success","progress":{"cnt":"a"}}}})",
       R"({"status":{"execution":"closed","execution":"closed","result":{"finished":"success"}}})"}) {
    auto r = post_feedback("dev-1", mine, body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
    EXPECT_EQ(error_code_of(r), "bad_request") << body;
  }
  for (const std::string& body : std::vector<std::string>{
           "[]", R"({"data":"x"})", R"({"data":{"k":1}})", R"({"mode":"append","data":{}})",
           R"({"data":{"":"v"}})", R"({"data":{"k":")" + std::string(129, 'v') + R"("}})"}) {
    auto r = device("dev-1", "PUT", base("dev-1") + "/configData", body);
    EXPECT_EQ(r.status, 400) << body << " -> " << r.body;
  }
  EXPECT_EQ(storage_snapshot(), before);

  // And the refused device's own action still works afterwards.
  EXPECT_EQ(post_feedback("dev-1", mine, ok).status, 200);
}

}  // namespace
}  // namespace fwdepot::testing
