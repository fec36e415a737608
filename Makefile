# bff — developer commands. `make test` is what CI runs.
CARGO ?= cargo

.PHONY: test test-e2e run run-lite lint fmt fmt-check standalone unit bench bench-record help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

test: fmt-check lint standalone unit ## everything CI checks: formatting, clippy, all tests

test-e2e: ## the real bff binary between the real Open WebUI and LiteLLM (installed once into .venv*/)
	bash scripts/e2e.sh

run: ## Open WebUI + bff + LiteLLM (development models) on loopback, installed on first use; Ctrl-C stops all
	bash scripts/run.sh

run-lite: ## LiteLLM + bff only (no Open WebUI): callers use a service key; prints a curl to try
	bash scripts/run.sh --lite

standalone: ## each library crate builds on its own features alone (they are reused elsewhere)
	for crate in bff-auth bff-providers bff-telemetry bff-quota; do $(CARGO) check -p $$crate --locked || exit 1; done

unit: ## all unit, wiremock and black-box tests (offline; installs redis-server for the Redis tests, or says to)
	bash scripts/need.sh redis-server
	BFF_REQUIRE_REDIS=1 $(CARGO) test --workspace --all-features --locked
	$(CARGO) test -p bff-auth --no-default-features --locked

lint: ## clippy on every target, warnings are errors
	$(CARGO) clippy --workspace --all-targets --all-features --locked -- -D warnings
	$(CARGO) clippy -p bff-auth --all-targets --no-default-features --locked -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

fmt-check: ## fail if the code is not formatted
	$(CARGO) fmt --all -- --check

bench: ## bff vs an instant upstream and a reference proxy (nginx + wrk, loopback); writes BENCHMARKS.md
	python3 scripts/bench.py

bench-record: ## criterion benchmarks: telemetry's record() and Helicone body, session-token checks (results in the crates' READMEs)
	$(CARGO) bench -p bff-telemetry -p bff-auth
