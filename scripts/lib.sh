#!/usr/bin/env bash
# Shared by run.sh and e2e.sh: the project virtualenv and a real LiteLLM proxy on loopback.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
# Where cargo puts the binary (honours CARGO_TARGET_DIR and .cargo/config).
BFF_BIN="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug/bff"

# Installs scripts/requirements.txt into .venv/ unless this exact list is already installed.
ensure_venv() {
  local stamp
  stamp="$VENV/.installed-$(sha256sum "$ROOT/scripts/requirements.txt" | cut -c1-16)"
  if [[ -f "$stamp" ]]; then
    return
  fi
  echo "installing the pinned LiteLLM proxy into .venv/ (first run only, about a minute) ..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/scripts/requirements.txt"
  touch "$stamp"
}

random_hex() {
  python3 -c 'import secrets, sys; print(secrets.token_hex(int(sys.argv[1])))' "$1"
}

# Waits until URL answers 2xx, for at most SECONDS.
wait_for() {
  python3 - "$1" "$2" <<'PY'
import sys, time, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            if 200 <= response.status < 300:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.5)
sys.exit(1)
PY
}

# The environment LiteLLM needs to start offline (no price map, no blog posts from the network).
litellm_offline_env() {
  export LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS=True
  export LITELLM_LOCAL_POLICY_TEMPLATES=True LITELLM_LOCAL_BLOG_POSTS=True
  export LITELLM_LOCAL_AUTOROUTER_PRESETS=True
}

# start_litellm PORT MASTER_KEY: starts the proxy in the background; sets LITELLM_PID.
start_litellm() {
  local port=$1 key=$2
  "$VENV/bin/python" "$ROOT/scripts/litellm_config.py" "$ROOT/config/litellm.yaml" "$VENV/litellm.yaml"
  (
    litellm_offline_env
    export LITELLM_MASTER_KEY="$key"
    exec "$VENV/bin/litellm" --config "$VENV/litellm.yaml" --host 127.0.0.1 --port "$port"
  ) >"$VENV/litellm.log" 2>&1 &
  LITELLM_PID=$!
  if ! wait_for "http://127.0.0.1:$port/health/liveliness" 120; then
    echo "LiteLLM did not start; its log:" >&2
    tail -n 40 "$VENV/litellm.log" >&2
    return 1
  fi
}
