# SPDX-License-Identifier: Apache-2.0
# The two commands of the README: `make run` and `make test`.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
DATA_DIR ?= var
WERROR ?= OFF
JOBS ?= $(shell nproc)

.PHONY: deps configure build test bench run clean

deps:
	@bash scripts/install-deps

configure: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DFWDEPOT_WERROR=$(WERROR) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j$(JOBS)

test: build
	@ctest --test-dir $(BUILD_DIR) --output-on-failure -j$(JOBS) --timeout 300

bench: build
	@$(BUILD_DIR)/bench/fwdepot-catalog-bench

run: build
	@bash scripts/run "$(BUILD_DIR)" "$(DATA_DIR)"

clean:
	rm -rf $(BUILD_DIR)
