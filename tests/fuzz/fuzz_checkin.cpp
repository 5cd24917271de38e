// SPDX-License-Identifier: Apache-2.0
// Check-in bodies through DeviceService against a real SQLite catalog: any body gets 200 or a
// 4xx, never a 5xx, and an accepted one is on record as the device's state.
#include "fuzz_target.hpp"
#include "fwdepot/storage/blob_store.hpp"
#include "fwdepot/storage/sqlite_catalog.hpp"
#include "service/api.hpp"
#include "service/device_service.hpp"
#include "service/metrics.hpp"

#include <unistd.h>

#include <filesystem>
#include <memory>

using namespace fwdepot;

namespace {

struct World {
  std::filesystem::path dir;
  std::unique_ptr<server::Backend> backend;
  server::Metrics metrics;
  std::unique_ptr<server::DeviceService> devices;

  World() {
    dir = std::filesystem::temp_directory_path() /
          ("fwdepot-fuzz-checkin-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    auto catalog = storage::SqliteCatalog::open(dir / "fwdepot.db").value();
    auto blobs = storage::FileBlobStore::open(dir / "blobs").value();
    backend = std::make_unique<server::Backend>(std::move(catalog), std::move(blobs));
    devices = std::make_unique<server::DeviceService>(*backend, metrics);
  }
  ~World() {
    devices.reset();
    backend.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World world;
  const certs::DeviceIdentity who{"dev-fuzz", size % 2 == 0 ? "m1" : "", "01"};
  const server::ApiResponse r =
      world.devices->checkin(who, fuzz::text(data, size), "https://127.0.0.1:8443",
                             "coaps://127.0.0.1:5684", 1'800'000'000);
  fuzz::check(r.status == 200 || (r.status >= 400 && r.status < 500), "200 or a 4xx, never 5xx");
  if (r.status == 200) {
    auto d = world.backend->with_catalog(
        [&](storage::Catalog& c) { return c.find_device(who.device_id); });
    fuzz::check(static_cast<bool>(d), "an accepted check-in is on record");
  }
  return 0;
}
