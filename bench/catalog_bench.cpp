// SPDX-License-Identifier: Apache-2.0
// What the admin API and the web UI ask of the catalog, with 100,000 devices in a real SQLite
// file: device pages (first, deep, sorted, searched, filtered), fleet statistics, deployment
// progress and a device's newest history.
//
//   build/bench/fwdepot-catalog-bench [--devices=N] [--benchmark_filter=...]
#include "fwdepot/storage/sqlite_catalog.hpp"

#include <benchmark/benchmark.h>
#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

namespace fwdepot::storage {
namespace {

int g_devices = 100000;
constexpr int kEvents = 5000;  // history of device dev-0000000

std::filesystem::path g_db;
std::unique_ptr<SqliteCatalog> g_catalog;

void exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::cerr << "seed: " << (err ? err : "?") << "\n";
    std::exit(1);
  }
}

// Seeds the fleet in one transaction straight into the catalog's own schema: 10 models, 5
// versions, the four states, one device in 50 failed, last_seen spread over a day.
void seed() {
  g_db = std::filesystem::temp_directory_path() / ("fwdepot-bench-" + std::to_string(::getpid()));
  std::filesystem::create_directories(g_db);
  g_catalog = SqliteCatalog::open(g_db / "fwdepot.db").value();
  sqlite3* db = nullptr;
  sqlite3_open((g_db / "fwdepot.db").c_str(), &db);
  exec(db, "BEGIN");
  exec(db, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < " +
               std::to_string(g_devices - 1) +
               ") INSERT INTO devices(id, model, version, state, last_result, last_message, "
               "first_seen, last_seen) SELECT printf('dev-%07d', i), 'model-' || (i % 10), "
               "'1.' || (i % 5) || '.0', CASE i % 4 WHEN 0 THEN 'idle' WHEN 1 THEN "
               "'downloading' WHEN 2 THEN 'downloaded' ELSE 'updating' END, CASE WHEN i % 50 = 0 "
               "THEN 'integrity_failure' ELSE 'success' END, NULL, 1000, 1000 + (i * 7919) % "
               "86400 FROM n");
  exec(db, "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < " +
               std::to_string(kEvents - 1) +
               ") INSERT INTO device_events(device_id, at, kind, state, version) SELECT "
               "'dev-0000000', 1000 + i, 'checkin', 'idle', '1.0.0' FROM n");
  exec(db, "COMMIT");
  sqlite3_close(db);
  NewImage image;
  image.name = "fw";
  image.version = "1.4.0";
  image.models = {"model-3"};
  image.size_bytes = 1;
  image.envelope = "{}";
  image.created_at = 1;
  // The image row only needs to exist for the deployment; its payload is never read here.
  const auto id = g_catalog->insert_image(image).value();
  NewDeployment deployment;
  deployment.image_id = id;
  deployment.models = {"model-3"};
  (void)g_catalog->create_deployment(deployment).value();
}

void run(benchmark::State& state, const DeviceQuery& q) {
  for (auto _ : state) {
    auto page = g_catalog->list_devices(q);
    if (!page || page->devices.empty()) {
      state.SkipWithError("no page");
      return;
    }
    benchmark::DoNotOptimize(page);
  }
}

void BM_DevicesFirstPage(benchmark::State& s) { run(s, DeviceQuery{}); }
void BM_DevicesLastPage(benchmark::State& s) {
  DeviceQuery q;
  q.offset = static_cast<std::size_t>(g_devices - 50);
  run(s, q);
}
void BM_DevicesByLastSeenDesc(benchmark::State& s) {
  DeviceQuery q;
  q.sort = DeviceQuery::Sort::last_seen;
  q.descending = true;
  run(s, q);
}
void BM_DevicesSearchPrefix(benchmark::State& s) {
  DeviceQuery q;
  q.id_prefix = "dev-00423";
  run(s, q);
}
void BM_DevicesModelByVersion(benchmark::State& s) {
  DeviceQuery q;
  q.model = "model-7";
  q.sort = DeviceQuery::Sort::version;
  run(s, q);
}

void BM_FleetStats(benchmark::State& state) {
  for (auto _ : state) {
    auto stats = g_catalog->fleet_stats(20);
    if (!stats || stats->devices != g_devices) {
      state.SkipWithError("wrong stats");
      return;
    }
  }
}

void BM_DeploymentProgress(benchmark::State& state) {
  for (auto _ : state) {
    auto p = g_catalog->deployment_progress(1);
    if (!p || p->targeted != g_devices / 10) {
      state.SkipWithError("wrong progress");
      return;
    }
  }
}

void BM_NewestEvents(benchmark::State& state) {
  for (auto _ : state) {
    auto e = g_catalog->list_events("dev-0000000", {.newest_first = true, .limit = 200});
    if (!e || e->size() != 200) {
      state.SkipWithError("wrong events");
      return;
    }
  }
}

BENCHMARK(BM_DevicesFirstPage)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DevicesLastPage)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DevicesByLastSeenDesc)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DevicesSearchPrefix)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DevicesModelByVersion)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FleetStats)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_DeploymentProgress)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_NewestEvents)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace fwdepot::storage

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]).starts_with("--devices=")) {
      fwdepot::storage::g_devices = std::atoi(argv[i] + 10);
    }
  }
  benchmark::Initialize(&argc, argv);
  fwdepot::storage::seed();
  benchmark::RunSpecifiedBenchmarks();
  fwdepot::storage::g_catalog.reset();
  std::filesystem::remove_all(fwdepot::storage::g_db);
  return 0;
}
