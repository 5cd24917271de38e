// SPDX-License-Identifier: Apache-2.0
// hawkBit's Direct Device Integration (DDI) API, independent of the transport: the resources
// under /{tenant}/controller/v1/{controllerId} that SWUpdate's suricatta, rauc-hawkbit-updater
// and Zephyr's hawkBit client poll. The device is the one its certificate names (the HTTPS
// adapter checks controllerId against it); a deployment offered to it becomes a DDI action.
#pragma once

#include "fwdepot/certs/pki.hpp"
#include "service/api.hpp"
#include "service/metrics.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace fwdepot::server {

struct DdiOptions {
  std::string tenant = "DEFAULT";
  std::chrono::seconds polling_sleep{300};  // config.polling.sleep in every poll answer
};

/// A duration as DDI writes it: HH:MM:SS, hours not wrapping at a day.
[[nodiscard]] std::string hhmmss(std::chrono::seconds s);

class DdiService {
 public:
  DdiService(Backend& backend, Metrics& metrics, DdiOptions options)
      : backend_(backend),
        metrics_(metrics),
        options_(std::move(options)),
        sleep_text_(hhmmss(options_.polling_sleep)) {}

  [[nodiscard]] const std::string& tenant() const { return options_.tenant; }

  /// GET {base}: registers the device on first sight and answers the polling interval and the
  /// links to what is pending: cancelAction (a cancelled deployment the device was offered),
  /// else deploymentBase (an open action, or a new one for the deployment that applies), and
  /// configData while the device has reported no attributes. `base` is the resource's absolute
  /// URL ("https://host:port/DEFAULT/controller/v1/dev-1"), the prefix of every link.
  [[nodiscard]] ApiResponse poll(const certs::DeviceIdentity& who, std::string_view base,
                                 std::int64_t now);
  /// GET {base}/deploymentBase/{actionId}: the deployment with its one chunk and artifact.
  /// 404 for an action that is not this device's or was cancelled.
  [[nodiscard]] ApiResponse deployment_base(const certs::DeviceIdentity& who,
                                            std::int64_t action_id, std::string_view base);
  /// POST {base}/deploymentBase/{actionId}/feedback. 200 with no body; 404 for another
  /// device's action, 410 for a closed one, 400 for a malformed body.
  [[nodiscard]] ApiResponse deployment_feedback(const certs::DeviceIdentity& who,
                                                std::int64_t action_id, std::string_view body,
                                                std::int64_t now);
  /// GET {base}/cancelAction/{actionId}: {"id", "cancelAction": {"stopId"}}.
  [[nodiscard]] ApiResponse cancel_action(const certs::DeviceIdentity& who, std::int64_t action_id);
  /// POST {base}/cancelAction/{actionId}/feedback: closed or canceled confirms the
  /// cancellation; rejected (or a failure) keeps the action running.
  [[nodiscard]] ApiResponse cancel_feedback(const certs::DeviceIdentity& who,
                                            std::int64_t action_id, std::string_view body,
                                            std::int64_t now);
  /// PUT {base}/configData: {"data": {key: value}, "mode": "merge" | "replace" | "remove"}.
  [[nodiscard]] ApiResponse put_config_data(const certs::DeviceIdentity& who, std::string_view body,
                                            std::int64_t now);
  /// The image behind {base}/softwaremodules/{moduleId}/artifacts/{filename}: only while an
  /// open action of this device deploys it. Errors: storage::error::not_found otherwise (an
  /// unknown module and one not assigned to the device are not told apart).
  [[nodiscard]] result<storage::ImageRecord> authorize_artifact(const certs::DeviceIdentity& who,
                                                                std::int64_t module_id,
                                                                std::string_view filename);

 private:
  enum class FeedbackOn { deployment, cancel };
  ApiResponse feedback(const certs::DeviceIdentity& who, std::int64_t action_id,
                       std::string_view body, std::int64_t now, FeedbackOn on);

  Backend& backend_;
  Metrics& metrics_;
  DdiOptions options_;
  std::string sleep_text_;  // options_.polling_sleep as every poll answer writes it
};

}  // namespace fwdepot::server
