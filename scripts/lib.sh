#!/usr/bin/env bash
# Shared by run.sh and e2e.sh: the project virtualenv and a real LiteLLM proxy on loopback.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
# Where cargo puts the binary (honours CARGO_TARGET_DIR and .cargo/config).
BFF_BIN="$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/debug/bff"

OPENWEBUI_VENV="$ROOT/.venv-openwebui"
UV_VERSION=0.9.5

# Installs scripts/requirements.txt into .venv/ unless this exact list is already installed.
# uv does the installing: Open WebUI's 217 pinned packages take seconds with it, minutes with pip.
ensure_venv() {
  local stamp
  stamp="$VENV/.installed-$( (cat "$ROOT/scripts/requirements.txt"; echo "uv==$UV_VERSION") | sha256sum | cut -c1-16)"
  if [[ -f "$stamp" ]]; then
    return
  fi
  echo "installing the pinned LiteLLM proxy into .venv/ (first run only) ..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "uv==$UV_VERSION"
  "$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" -r "$ROOT/scripts/requirements.txt"
  touch "$stamp"
}

# Installs Open WebUI (scripts/requirements-openwebui.txt, a full lock) into .venv-openwebui/.
ensure_openwebui() {
  local stamp
  ensure_venv
  stamp="$OPENWEBUI_VENV/.installed-$(sha256sum "$ROOT/scripts/requirements-openwebui.txt" | cut -c1-16)"
  if [[ -f "$stamp" ]]; then
    return
  fi
  echo "installing Open WebUI 0.12.4 into .venv-openwebui/ (first run only, about 1 GB) ..." >&2
  python3 -m venv --clear --without-pip "$OPENWEBUI_VENV"
  "$VENV/bin/uv" pip install --quiet --python "$OPENWEBUI_VENV/bin/python" --no-deps \
    -r "$ROOT/scripts/requirements-openwebui.txt"
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
  wait_started LiteLLM "http://127.0.0.1:$port/health/liveliness" 120 "$VENV/litellm.log"
}

# wait_started NAME URL SECONDS LOG: waits for URL; if it never answers, shows LOG's tail.
wait_started() {
  if ! wait_for "$2" "$3"; then
    echo "$1 did not start; its log ($4):" >&2
    tail -n 40 "$4" >&2
    return 1
  fi
}

# require_free_port NAME PORT VARIABLE: stops with a sentence when something already listens on
# PORT (say, a LiteLLM from an earlier run), instead of talking to the wrong process later.
require_free_port() {
  if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then
    echo "port $2, wanted for $1, is already in use (an earlier run still going?);" \
      "stop that process or choose another port with $3=..." >&2
    exit 1
  fi
}

# start_openwebui PORT DATA_DIR: starts Open WebUI in the background with scripts/openwebui.env
# plus the caller's exported settings; sets OPENWEBUI_PID.
start_openwebui() {
  local port=$1 data=$2
  mkdir -p "$data"
  (
    set -a
    # shellcheck source=openwebui.env
    source "$ROOT/scripts/openwebui.env"
    set +a
    export DATA_DIR="$data"
    cd "$data"
    exec "$OPENWEBUI_VENV/bin/open-webui" serve --host 127.0.0.1 --port "$port"
  ) >"$data/openwebui.log" 2>&1 &
  OPENWEBUI_PID=$!
  wait_started "Open WebUI" "http://127.0.0.1:$port/health" 180 "$data/openwebui.log"
}
