# The few commands a person types. `make help` lists them.
#
# Everything installs itself: the contract toolchain from npm (pinned in contracts/package.json),
# the Rust dependencies through cargo. CARGO_TARGET_DIR is honoured (CI keeps one outside the clone).

SHELL := /bin/bash
# Wherever cargo builds: CARGO_TARGET_DIR, a configured target-dir, or ./target.
TARGET_DIR := $(shell cargo metadata --format-version 1 --no-deps 2>/dev/null | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
CONTRACTS := contracts
# The measured enclave is a workspace of its own; it builds into the same target directory, so
# its binary sits beside `strongroom`.
ENCLAVE_MANIFEST := --manifest-path services/enclave/Cargo.toml
# The binaries look anvil up when they run (STRONGROOM_ANVIL, else PATH); point them at the
# toolchain this checkout installs.
export STRONGROOM_ANVIL ?= $(CURDIR)/$(CONTRACTS)/node_modules/.bin/anvil
FORGE := node_modules/.bin/forge
SOL_SOURCES := $(shell find $(CONTRACTS)/src -name '*.sol' 2>/dev/null)

.PHONY: help demo test bench bench-gas bench-e2e bench-query lint tcb tcb-check contracts build test-contracts test-rust clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

demo: build ## Install, build, and run the whole flow once on a fresh local stack
	$(TARGET_DIR)/debug/strongroom demo

test: build tcb-check test-contracts test-rust ## Install, build, and run every test (forge + cargo)

bench: build bench-gas bench-e2e bench-query ## Every benchmark: gas, the flow under load, encrypted-scan overhead, one whole rental
	$(TARGET_DIR)/debug/strongroom demo | tail -n 1

bench-gas: contracts ## Gas of rent + submitResult (ten SQL tasks, an app task, a refund) on anvil
	cargo run -q -p strongroom-e2e --bin bench-gas

bench-e2e: build ## The whole flow under load: 8 analysts, 200 SQL tasks, one worker host (latency, throughput, gas)
	cargo run -q -p strongroom-e2e --bin bench-e2e

bench-query: contracts ## TPC-H on plain vs column-encrypted Parquet (SF=1; STRONGROOM_TPCH_SF to change)
	cargo run -q -p strongroom-e2e --bin bench-query

lint: contracts ## rustfmt and clippy, warnings as errors
	cargo fmt --all -- --check
	cargo fmt $(ENCLAVE_MANIFEST) -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy $(ENCLAVE_MANIFEST) --target-dir $(TARGET_DIR) --all-targets -- -D warnings

tcb: build ## The enclave's trusted computing base: crates, lines of our own code, binary size
	scripts/tcb

# Fails if the enclave's dependency tree holds a network, TLS, chain-provider or cloud crate.
tcb-check:
	scripts/tcb --check

contracts: $(CONTRACTS)/out/sources.sha256 ## Install the contract toolchain and compile the contracts

build: contracts ## Build every Rust binary (strongroom, strongroom-enclave)
	cargo build --workspace --bins
	cargo build $(ENCLAVE_MANIFEST) --target-dir $(TARGET_DIR)

test-contracts: contracts
	cd $(CONTRACTS) && $(FORGE) test

test-rust: build
	cargo test --workspace
	cargo test $(ENCLAVE_MANIFEST) --target-dir $(TARGET_DIR)
	@# The licence behaviour table (policies/tests/*.slt) again, for its count of cases.
	@cargo test -q --workspace --test it -- --exact behaviour::the_behaviour_table_holds --nocapture 2>/dev/null \
		| grep '^behaviour table:'


$(CONTRACTS)/node_modules/.installed: $(CONTRACTS)/package.json $(CONTRACTS)/package-lock.json
	cd $(CONTRACTS) && npm ci --no-audit --no-fund
	touch $@

# The stamp lets the Rust build refuse a stale artifact (services/chain/build.rs).
$(CONTRACTS)/out/sources.sha256: $(CONTRACTS)/node_modules/.installed $(SOL_SOURCES) $(CONTRACTS)/foundry.toml
	cd $(CONTRACTS) && $(FORGE) build
	cd $(CONTRACTS) && find src -name '*.sol' | LC_ALL=C sort | xargs cat | sha256sum > out/sources.sha256

clean: ## Remove build outputs
	rm -rf $(CONTRACTS)/out $(CONTRACTS)/cache
	cargo clean
