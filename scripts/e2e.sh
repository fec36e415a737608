#!/usr/bin/env bash
# `make test-e2e`: the real bff binary between the real Open WebUI and LiteLLM (tests/e2e/).
source "$(dirname "$0")/lib.sh"
ensure_openwebui
cargo build --quiet -p bff-api --bin bff
litellm_offline_env
export BFF_BIN
cd "$ROOT"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/e2e "$@"
