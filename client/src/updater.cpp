// SPDX-License-Identifier: Apache-2.0
#include "fwdepot/client/updater.hpp"

#include "fwdepot/core/ids.hpp"
#include "fwdepot/core/verifier.hpp"
#include "offer.hpp"
#include "state.hpp"
#include "transport.hpp"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <random>
#include <thread>

namespace fwdepot::client {
namespace {

namespace json = boost::json;
constexpr std::size_t kChunkBytes = 64 * 1024;

}  // namespace

struct Updater::Impl {
  UpdaterOptions options;
  UpdateHandler& handler;
  std::unique_ptr<Transport> transport;
  std::string scheme;  // of the server URI: the transport, and which offer URL to use
  std::string checkin_url;
  PersistentState state;
  std::mt19937_64 rng{std::random_device{}()};

  Impl(UpdaterOptions o, UpdateHandler& h) : options(std::move(o)), handler(h) {}

  // --- retries -------------------------------------------------------------------------------

  void backoff(unsigned attempt) {
    auto wait = options.retry.initial;
    for (unsigned i = 1; i < attempt && wait < options.retry.max; ++i) {
      wait *= 2;
    }
    wait = std::min(wait, options.retry.max);
    std::uniform_int_distribution<std::int64_t> jitter(wait.count() / 2, wait.count());
    std::this_thread::sleep_for(std::chrono::milliseconds(jitter(rng)));
  }

  template <class F>
  auto with_retries(F&& step) -> decltype(step()) {
    for (unsigned attempt = 1;; ++attempt) {
      auto r = step();
      if (r || !is_transient(r.error()) || attempt >= options.retry.attempts) {
        return r;
      }
      backoff(attempt);
    }
  }

  // --- reporting -----------------------------------------------------------------------------

  result<std::string> checkin(const Version& version, std::string_view lwm2m_state) {
    json::object body{
        {"model", options.model}, {"version", version.to_string()}, {"state", lwm2m_state}};
    if (state.last_result) {
      body["result"] = *state.last_result;
    }
    if (state.last_message) {
      body["message"] = state.last_message->substr(0, 1024);
    }
    const std::string text = json::serialize(body);
    return with_retries([&] { return transport->checkin(checkin_url, text); });
  }

  result<void> save() { return save_state(options.state_dir, state); }

  void set_result(std::string_view result, std::string message = {}) {
    state.last_result = std::string(result);
    if (message.empty()) {
      state.last_message.reset();
    } else {
      state.last_message = std::move(message);
    }
  }

  // Tells the server, as best it can: a report that cannot be delivered is not a reason to
  // stop, and the persisted result goes out again with the next check-in.
  void report(const Version& version, std::string_view lwm2m_state) {
    (void)checkin(version, lwm2m_state);
  }

  CycleReport fail(CycleReport report, const Version& current, Error e) {
    set_result(lwm2m_result(e), e.message());
    (void)save();
    this->report(current, "idle");
    report.outcome = Outcome::failed;
    report.version = current;
    report.error = std::move(e);
    return report;
  }

  // --- the offer -----------------------------------------------------------------------------

  // --- the download --------------------------------------------------------------------------

  class Sink final : public DownloadSink {
   public:
    Sink(Impl& impl, const Offer& offer, ImageVerifier& verifier, std::uint64_t& written)
        : impl_(impl), offer_(offer), verifier_(verifier), written_(written) {}

    result<void> begin(std::uint64_t offset, std::uint64_t total, std::string_view etag) override {
      if (etag != offer_.transfer_etag || total != offer_.info.size) {
        return Error(error::image_changed, "the server sends another payload than the offer");
      }
      if (offset == 0 && written_ > 0) {
        // The server sent everything again: start over.
        auto r = impl_.restart(offer_, verifier_);
        if (!r) {
          return r;
        }
        written_ = 0;
      }
      return {};
    }

    result<void> data(std::string_view bytes) override {
      if (auto r = verifier_.update(bytes); !r) {
        return Error(error::integrity_failure, r.error().message());
      }
      if (auto r = impl_.handler.stream_write(bytes); !r) {
        return r;
      }
      written_ += bytes.size();
      if (impl_.options.on_progress) {
        impl_.options.on_progress(written_, offer_.info.size);
      }
      return {};
    }

   private:
    Impl& impl_;
    const Offer& offer_;
    ImageVerifier& verifier_;
    std::uint64_t& written_;
  };

  result<void> restart(const Offer& offer, ImageVerifier& verifier) {
    handler.reset();
    auto opened = handler.stream_open(offer.info, false);
    if (!opened) {
      return opened.error();
    }
    auto fresh = ImageVerifier::create(offer.info.size, offer.info.sha256);
    if (!fresh) {
      return fresh.error();
    }
    verifier = std::move(*fresh);
    return {};
  }

  // Opens the handler for `offer` and re-hashes what it already holds. Returns the offset to
  // continue from.
  result<std::uint64_t> open_package(const Offer& offer, ImageVerifier& verifier) {
    const bool resume = state.download && state.download->image_id == offer.info.image_id &&
                        state.download->etag == offer.info.etag;
    state.download = PersistentState::Download{offer.info.image_id, offer.info.etag,
                                               offer.info.version.to_string()};
    if (auto r = save(); !r) {
      return r.error();
    }
    auto stored = handler.stream_open(offer.info, resume);
    if (!stored) {
      return stored.error();
    }
    if (*stored == 0) {
      return std::uint64_t{0};
    }
    std::vector<char> chunk(kChunkBytes);
    std::uint64_t offset = 0;
    bool sound = *stored <= offer.info.size;
    while (sound && offset < *stored) {
      const auto want =
          static_cast<std::size_t>(std::min<std::uint64_t>(*stored - offset, chunk.size()));
      auto got = handler.read_stored(offset, std::span<char>(chunk.data(), want));
      sound = got && *got == want && verifier.update(std::string_view(chunk.data(), want));
      offset += want;
    }
    if (!sound) {
      // What the handler holds cannot be trusted as a prefix: start over.
      if (auto r = restart(offer, verifier); !r) {
        return r.error();
      }
      return std::uint64_t{0};
    }
    return *stored;
  }

  result<std::uint64_t> download(const Offer& offer, ImageVerifier& verifier,
                                 std::uint64_t& resumed_from) {
    auto start = open_package(offer, verifier);
    if (!start) {
      return start.error();
    }
    resumed_from = *start;
    std::uint64_t written = *start;
    Sink sink(*this, offer, verifier, written);
    // Attempts count only failures in a row: a download that keeps making progress over a
    // flaky link keeps going.
    unsigned failures = 0;
    while (true) {
      const std::uint64_t before = written;
      auto r =
          transport->download({offer.url, written, written > 0 ? offer.transfer_etag : ""}, sink);
      if (r) {
        return written;
      }
      if (!is_transient(r.error())) {
        return r.error();
      }
      failures = written > before ? 1 : failures + 1;
      if (failures >= options.retry.attempts) {
        return r.error();
      }
      backoff(failures);
    }
  }

  // --- one cycle -----------------------------------------------------------------------------

  result<CycleReport> run_once() {
    CycleReport report;
    Version current = handler.current_version();
    report.version = current;
    if (state.pending_version) {
      // An install from an earlier cycle: did it take?
      if (current.to_string() == *state.pending_version) {
        set_result("success");
      } else {
        set_result("update_failed",
                   "installed " + *state.pending_version + " but " + current.to_string() + " runs");
      }
      state.pending_version.reset();
      if (auto r = save(); !r) {
        return r.error();
      }
    }
    auto answer = checkin(current, "idle");
    if (!answer) {
      return answer.error();
    }
    auto offer =
        parse_offer(*answer, {scheme, options.trusted_keys, options.threshold, options.model});
    if (!offer) {
      return fail(report, current, offer.error());
    }
    if (!*offer) {
      if (state.download) {
        handler.reset();  // the offer was withdrawn: drop what a cut download left
        state.download.reset();
        (void)save();
      }
      return report;
    }
    const Offer& o = **offer;
    report.offered = o.info.version;
    if (o.info.version == current) {
      return report;  // already running it
    }
    if (o.info.version < current && !(o.server_allows_downgrade && options.allow_downgrade)) {
      return fail(report, current,
                  Error(error::downgrade_refused, o.info.version.to_string() + " offered, " +
                                                      current.to_string() + " running"));
    }

    set_result("initial");
    this->report(current, "downloading");
    auto verifier = ImageVerifier::create(o.info.size, o.info.sha256);
    if (!verifier) {
      return fail(report, current, verifier.error());
    }
    auto done = download(o, *verifier, report.resumed_from);
    report.tls_session_resumed = transport->last_session_resumed();
    if (!done) {
      const Error e = done.error();
      if (e == error::integrity_failure || e == error::image_changed) {
        handler.reset();
        state.download.reset();
      }
      return fail(report, current, e);
    }
    if (auto r = verifier->finish(); !r) {
      handler.reset();
      state.download.reset();
      return fail(report, current, Error(error::integrity_failure, r.error().message()));
    }
    if (auto r = handler.stream_finish(); !r) {
      handler.reset();
      state.download.reset();
      return fail(report, current, r.error());
    }
    state.download.reset();
    this->report(current, "downloaded");
    this->report(current, "updating");
    state.pending_version = o.info.version.to_string();
    if (auto r = save(); !r) {
      return r.error();
    }
    if (auto r = handler.perform_upgrade(); !r) {
      state.pending_version.reset();
      handler.reset();
      return fail(report, current, r.error());
    }
    const Version now = handler.current_version();
    report.version = now;
    if (now != o.info.version) {
      report.outcome = Outcome::upgrade_pending;  // the next cycle, after a reboot, reports
      return report;
    }
    state.pending_version.reset();
    set_result("success");
    if (auto r = save(); !r) {
      return r.error();
    }
    this->report(now, "idle");
    report.outcome = Outcome::updated;
    return report;
  }
};

Updater::Updater(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Updater::~Updater() = default;

result<std::unique_ptr<Updater>> Updater::create(UpdaterOptions options, UpdateHandler& handler) {
  if (auto ok = validate_identifier(options.model, "model"); !ok) {
    return Error(error::invalid_argument, ok.error().detail);
  }
  if (options.threshold == 0 || options.threshold > options.trusted_keys.size()) {
    return Error(error::invalid_argument, "threshold must be 1..number of trusted keys");
  }
  if (options.state_dir.empty() || options.retry.attempts == 0) {
    return Error(error::invalid_argument, "a state directory and at least one attempt are needed");
  }
  auto url = boost::urls::parse_absolute_uri(options.server_uri);
  if (!url || url->host().empty()) {
    return Error(error::invalid_uri, "server URI '" + options.server_uri + "'");
  }
  const std::string scheme(url->scheme());
  std::string base = options.server_uri;
  while (!base.empty() && base.back() == '/') {
    base.pop_back();
  }
  auto impl = std::make_unique<Impl>(std::move(options), handler);
  impl->scheme = scheme;
  impl->checkin_url = base + (scheme == "coaps" ? "/checkin" : "/api/v1/device/checkin");
  if (!impl->options.get_security_config) {
    impl->options.get_security_config = [config = impl->options.security](std::string_view) {
      return result<SecurityConfig>(config);
    };
  }
  if (impl->options.coaps_block_size < 16 || impl->options.coaps_block_size > 1024 ||
      (impl->options.coaps_block_size & (impl->options.coaps_block_size - 1)) != 0) {
    return Error(error::invalid_argument, "the CoAPS block size is a power of two, 16 to 1024");
  }
  if (impl->options.coaps_ack_timeout < std::chrono::seconds(1) ||
      impl->options.coaps_ack_timeout > std::chrono::seconds(60)) {
    return Error(error::invalid_argument, "the CoAPS ACK timeout is 1 to 60 s");
  }
  auto transport = make_transport(scheme, {.security = impl->options.get_security_config,
                                           .connect_timeout = impl->options.connect_timeout,
                                           .io_timeout = impl->options.io_timeout,
                                           .coap_block_size = impl->options.coaps_block_size,
                                           .coap_ack_timeout = impl->options.coaps_ack_timeout});
  if (!transport) {
    return transport.error();
  }
  impl->transport = std::move(*transport);
  std::error_code ec;
  std::filesystem::create_directories(impl->options.state_dir, ec);
  auto state = load_state(impl->options.state_dir);
  if (!state) {
    return state.error();
  }
  impl->state = std::move(*state);
  return std::unique_ptr<Updater>(new Updater(std::move(impl)));
}

result<CycleReport> Updater::run_once() { return impl_->run_once(); }

}  // namespace fwdepot::client
