// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/storage/catalog.hpp"

namespace fwdepot::storage {

result<DeviceRecord> Catalog::record_checkin(const DeviceCheckin& c, std::int64_t now) {
  auto recorded = record_checkins({&c, 1}, now);
  if (!recorded) {
    return recorded.error();
  }
  if (!recorded->front()) {
    return recorded->front().error();
  }
  return find_device(c.device_id);
}

std::string_view to_string(ActionType t) {
  switch (t) {
    case ActionType::forced:
      return "forced";
    case ActionType::soft:
      return "soft";
    case ActionType::download_only:
      return "downloadonly";
  }
  return "forced";
}

std::optional<ActionType> parse_action_type(std::string_view s) {
  for (auto t : {ActionType::forced, ActionType::soft, ActionType::download_only}) {
    if (to_string(t) == s) {
      return t;
    }
  }
  return std::nullopt;
}

std::string_view to_string(ActionStatus s) {
  switch (s) {
    case ActionStatus::open:
      return "open";
    case ActionStatus::canceling:
      return "canceling";
    case ActionStatus::closed:
      return "closed";
    case ActionStatus::canceled:
      return "canceled";
  }
  return "closed";
}

}  // namespace fwdepot::storage
