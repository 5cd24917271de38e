# SPDX-License-Identifier: Apache-2.0
# The two commands of the README: `make run` and `make test`.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
DATA_DIR ?= var
WERROR ?= OFF
JOBS ?= $(shell nproc)

.PHONY: deps configure build test test-asan test-tsan sanitized fuzz bench run clean

deps:
	@bash scripts/install-deps

SANITIZE ?=

configure: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DFWDEPOT_WERROR=$(WERROR) \
	  -DFWDEPOT_SANITIZE=$(SANITIZE) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j$(JOBS)

test: build
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -j$(JOBS) --timeout 300

# The whole suite under sanitizers, in its own build directory. Every sanitized process writes
# its reports to BUILD_DIR/sanitizer/, including the servers the shell tests stop and whose exit
# status they do not look at: any report there fails the run. Left out: the container (its
# image is built from a clean tree), the installed-package example (an unsanitized consumer
# cannot link a sanitized library) and bench/compare's quick run (a benchmark harness; the
# server paths it drives are under load_test's sanitized run).
SANITIZER_SKIP = container.podman|client.install_and_example|bench.compare_quick
test-asan:
	@$(MAKE) --no-print-directory sanitized BUILD_DIR=build-asan SANITIZE=address WERROR=OFF
test-tsan:
	@$(MAKE) --no-print-directory sanitized BUILD_DIR=build-tsan SANITIZE=thread WERROR=OFF
sanitized: build
	@rm -rf $(BUILD_DIR)/sanitizer && mkdir -p $(BUILD_DIR)/sanitizer
	@FWDEPOT_SANITIZED=$(SANITIZE) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:log_path=$(abspath $(BUILD_DIR))/sanitizer/asan \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$(abspath $(BUILD_DIR))/sanitizer/ubsan \
	  TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:log_path=$(abspath $(BUILD_DIR))/sanitizer/tsan \
	  ctest --test-dir $(BUILD_DIR) --output-on-failure -j$(JOBS) --timeout 900 -E '$(SANITIZER_SKIP)'
	@if [ -n "$$(ls -A $(BUILD_DIR)/sanitizer)" ]; then \
	  echo "sanitizer reports:"; head -50 $(BUILD_DIR)/sanitizer/*; exit 1; fi

# Every fuzz target with libFuzzer (clang, with AddressSanitizer and UndefinedBehaviorSanitizer)
# for FUZZ_SECONDS each. `make test` replays the seeds and mutations of them without libFuzzer.
FUZZ_SECONDS ?= 60
fuzz: deps
	@CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DFWDEPOT_FUZZ=ON >/dev/null
	@cmake --build build-fuzz -j$(JOBS) --target fuzz_targets
	@bash tests/fuzz/run build-fuzz $(FUZZ_SECONDS)

bench: build
	@$(BUILD_DIR)/bench/fwdepot-catalog-bench
	@bash bench/compare --build-dir $(BUILD_DIR)

run: build
	@bash scripts/run "$(BUILD_DIR)" "$(DATA_DIR)"

clean:
	rm -rf $(BUILD_DIR)
