#!/usr/bin/env bash
# `make test-e2e`: the real bff binary between the real Open WebUI and LiteLLM (tests/e2e/).
source "$(dirname "$0")/lib.sh"
ensure_openwebui
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  echo "the monitoring page's browser tests need Debian's chromium and chromium-driver:" \
    "apt-get install chromium chromium-driver (.ci/run installs them)" >&2
  exit 1
fi
cargo build --quiet -p bff-api --bin bff
litellm_offline_env
export BFF_BIN
cd "$ROOT"
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/e2e "$@"
