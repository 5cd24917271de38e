// SPDX-License-Identifier: Apache-2.0
// The admin REST API, independent of the transport: tokens, images, devices, deployments.
#pragma once

#include "fwdepot/core/keys.hpp"
#include "service/api.hpp"
#include "service/multipart.hpp"

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace fwdepot::server {

struct AdminLimits {
  std::uint64_t max_image_bytes = std::uint64_t{1} << 30;
};

/// One streamed POST /api/v1/images. Bytes go to a temporary blob as they arrive; nothing is
/// visible until finish() has verified the manifest's signatures, size and digest and the row
/// is committed. Destroying an unfinished upload discards everything it wrote.
class ImageUpload {
 public:
  virtual ~ImageUpload() = default;
  /// Errors: core::error::invalid_argument (malformed multipart), error::payload_too_large,
  /// core::error::too_many_bytes (image longer than its manifest says), storage errors.
  [[nodiscard]] virtual result<void> feed(std::string_view bytes) = 0;
  /// Verifies and commits. The response is 201 with the image, or the refusal.
  [[nodiscard]] virtual ApiResponse finish(std::int64_t now) = 0;
};

class AdminService {
 public:
  /// Runs with each uploaded image's id once its row is committed, before the upload is
  /// answered: the server queues it for its DDI hashes (ArtifactHashing).
  using Uploaded = std::function<void(std::int64_t)>;

  AdminService(Backend& backend, std::vector<PublicKey> trusted_keys, std::size_t threshold,
               AdminLimits limits, Uploaded uploaded = nullptr)
      : backend_(backend),
        trusted_keys_(std::move(trusted_keys)),
        threshold_(threshold),
        limits_(limits),
        uploaded_(std::move(uploaded)) {}

  /// The token's name if `authorization` is "Bearer <live token>". Errors: error::unauthorized.
  [[nodiscard]] result<std::string> authenticate(std::string_view authorization);

  /// Starts an upload. `content_length` is the declared body size when known. Errors:
  /// error::unsupported_media_type (not multipart/form-data), error::payload_too_large.
  [[nodiscard]] result<std::unique_ptr<ImageUpload>> begin_upload(
      std::string_view content_type, std::optional<std::uint64_t> content_length);

  /// Every other admin route. `path` is below /api/v1 ("/images/3"), `query` the decoded query
  /// parameters. Unknown routes are 404, known routes with another method 405.
  [[nodiscard]] ApiResponse handle(std::string_view method, std::string_view path,
                                   const std::map<std::string, std::string>& query,
                                   std::string_view body, std::int64_t now);

 private:
  ApiResponse list_images();
  ApiResponse get_image(std::int64_t id);
  ApiResponse delete_image(std::int64_t id);
  ApiResponse list_devices(const std::map<std::string, std::string>& query);
  ApiResponse get_device(std::string_view id);
  ApiResponse device_events(std::string_view id, const std::map<std::string, std::string>& q);
  ApiResponse put_psk(std::string_view device_id, std::string_view body, std::int64_t now);
  ApiResponse delete_psk(std::string_view device_id);
  ApiResponse create_deployment(std::string_view body, std::int64_t now);
  ApiResponse list_deployments();
  ApiResponse cancel_deployment(std::int64_t id, std::int64_t now);
  ApiResponse get_deployment(std::int64_t id);
  ApiResponse fleet_stats();

  Backend& backend_;
  std::vector<PublicKey> trusted_keys_;
  std::size_t threshold_;
  AdminLimits limits_;
  Uploaded uploaded_;
};

}  // namespace fwdepot::server
