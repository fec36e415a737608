# bff — developer commands. `make test` is what CI runs.
CARGO ?= cargo

.PHONY: test test-e2e run run-lite lint fmt fmt-check standalone unit examples package bench bench-record help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

test: fmt-check lint standalone unit examples package ## everything CI checks: formatting, clippy, all tests, the examples, each library's package

test-e2e: ## the real bff binary between the real Open WebUI and LiteLLM (installed once into .venv*/)
	bash scripts/e2e.sh

run: ## Open WebUI + bff + LiteLLM (development models) on loopback, installed on first use; Ctrl-C stops all
	bash scripts/run.sh

run-lite: ## LiteLLM + bff only (no Open WebUI): callers use a service key; prints a curl to try
	bash scripts/run.sh --lite

# Each library crate with no feature, then each feature alone: `crate:feature,feature`.
LIBRARIES = bff-auth: bff-auth:actix bff-auth:tower bff-providers: bff-quota: bff-quota:redis \
	bff-telemetry: bff-telemetry:langfuse bff-telemetry:helicone bff-telemetry:logging

standalone: ## each library crate builds and passes clippy on each of its features alone (they are reused elsewhere)
	for spec in $(LIBRARIES); do \
		crate=$${spec%%:*}; features=$${spec#*:}; \
		$(CARGO) clippy -q -p $$crate --lib --no-default-features --features "$$features" --locked -- -D warnings || exit 1; \
	done

unit: ## all unit, wiremock and black-box tests (offline; installs redis-server for the Redis tests, or says to)
	bash scripts/need.sh redis-server
	BFF_REQUIRE_REDIS=1 $(CARGO) test --workspace --all-features --locked

examples: ## run every example (offline: local stand-ins of LiteLLM, Langfuse, Helicone, Open WebUI)
	$(CARGO) run -q --locked -p bff-auth --example check_token
	$(CARGO) run -q --locked -p bff-providers --example chat
	$(CARGO) run -q --locked -p bff-telemetry --features langfuse --example never_lost
	$(CARGO) run -q --locked -p bff-quota --example team_budget
	$(CARGO) run -q --locked -p bff-examples --example chat_service
	$(CARGO) run -q --locked -p bff-examples --example batch_job

package: ## each library crate packages on its own (nothing read from outside it), as `cargo publish` would
	$(CARGO) package --locked --allow-dirty -p bff-auth -p bff-providers -p bff-quota -p bff-telemetry

lint: ## clippy on every target, warnings are errors; the library crates' docs build without a warning
	$(CARGO) clippy --workspace --all-targets --all-features --locked -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --no-deps --all-features --locked -p bff-auth -p bff-providers -p bff-quota -p bff-telemetry

fmt: ## format the code
	$(CARGO) fmt --all

fmt-check: ## fail if the code is not formatted
	$(CARGO) fmt --all -- --check

bench: ## bff vs an instant upstream and a reference proxy (nginx + wrk, loopback); writes BENCHMARKS.md
	python3 scripts/bench.py

bench-record: ## criterion benchmarks: telemetry's record() and Helicone body, session-token checks (results in the crates' READMEs); connection pools per runtime shape
	$(CARGO) bench -p bff-telemetry -p bff-auth
	$(CARGO) bench -p bff-providers --bench pools
