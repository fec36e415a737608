#!/usr/bin/env bash
# `make run`: the stack users meet, on loopback. Open WebUI 0.12.4 (offline) uses bff as its
# model connection with each user's own session (mode 1 of the README); bff sits in front of a
# real LiteLLM proxy with the development models (no provider key needed).
# `make run-lite` (`run.sh --lite`): LiteLLM and bff only; callers bring a service key and a
# signed user token. Ctrl-C stops everything this started.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

LITE=false
if [[ "${1:-}" == "--lite" ]]; then LITE=true; fi
LITELLM_PORT="${LITELLM_PORT:-4000}"
BFF_PORT="${BFF_PORT:-8080}"
OPENWEBUI_PORT="${OPENWEBUI_PORT:-3000}"
BFF_URL="http://127.0.0.1:$BFF_PORT"
OPENWEBUI_URL="http://127.0.0.1:$OPENWEBUI_PORT"

require_free_port LiteLLM "$LITELLM_PORT" LITELLM_PORT
require_free_port bff "$BFF_PORT" BFF_PORT
$LITE || require_free_port "Open WebUI" "$OPENWEBUI_PORT" OPENWEBUI_PORT

ensure_venv
$LITE || ensure_openwebui
echo "building bff (the first build compiles every dependency: about 3 to 5 minutes on 2 cores; later builds take seconds) ..." >&2
cargo build -p bff-api --bin bff

# Background jobs of a script ignore Ctrl-C, so stop them here (SIGTERM: graceful for all).
cleanup() {
  trap - EXIT INT TERM
  for pid in "${OPENWEBUI_PID:-}" "${BFF_PID:-}" "${LITELLM_PID:-}"; do
    if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; fi
  done
  echo "stopped everything make run started" >&2
}
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM

# Secrets of this development stack, kept so that Open WebUI sign-ins survive a restart.
mkdir -p data
if [[ ! -f data/dev-secrets.env ]]; then
  (umask 077 && printf 'WEBUI_SECRET_KEY=dev-%s\nFORWARD_SECRET=dev-%s\n' \
    "$(random_hex 32)" "$(random_hex 32)" >data/dev-secrets.env)
fi
source data/dev-secrets.env
master_key="sk-dev-$(random_hex 16)"
service_key="sk-bff-dev-$(random_hex 16)"

echo "starting LiteLLM on 127.0.0.1:$LITELLM_PORT (log: .venv/litellm.log) ..." >&2
start_litellm "$LITELLM_PORT" "$master_key"

export BFF_BIND="127.0.0.1:$BFF_PORT" WEBUI_SECRET_KEY
export LITELLM_URL="http://127.0.0.1:$LITELLM_PORT" LITELLM_API_KEY="$master_key"
export RBAC_POLICY_FILE="$ROOT/config/rbac.toml" TELEMETRY_SPOOL_DIR="$ROOT/data/telemetry-spool"
export LOG_FORMAT="${LOG_FORMAT:-pretty}"
if $LITE; then
  # No Open WebUI: a service key plus a signed forwarded-user token that carries the role.
  export AUTH_SERVICE_KEYS="dev=$service_key" OPENWEBUI_FORWARD_JWT_SECRET="$FORWARD_SECRET"
else
  # Open WebUI's own sessions: bff verifies them with the shared secret and asks Open WebUI
  # for the role.
  export OPENWEBUI_URL
fi
"$BFF_BIN" serve &
BFF_PID=$!
if ! wait_for "$BFF_URL/health" 60; then
  echo "bff did not start" >&2
  exit 1
fi
models="$("$VENV/bin/python" -c 'import yaml,sys; print(", ".join(m["model_name"] for m in yaml.safe_load(open(sys.argv[1]))["model_list"]))' "$VENV/litellm.yaml")"

if $LITE; then
  user_jwt="$("$BFF_BIN" token --user dev-user --role admin --ttl 8h 2>/dev/null)"
  cat <<BANNER

bff is ready on $BFF_URL, in front of LiteLLM on http://127.0.0.1:$LITELLM_PORT.
Models: $models

A streaming chat (paste it into another terminal):

curl -N $BFF_URL/v1/chat/completions \\
  -H 'Authorization: Bearer $service_key' \\
  -H 'X-OpenWebUI-User-Jwt: $user_jwt' \\
  -H 'Content-Type: application/json' \\
  -d '{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"Hello"}]}'

Ctrl-C stops both.
BANNER
  wait "$BFF_PID"
  exit
fi

echo "starting Open WebUI on 127.0.0.1:$OPENWEBUI_PORT (log: data/openwebui/openwebui.log, about 30 s) ..." >&2
export OPENAI_API_BASE_URLS="$BFF_URL/v1" OPENAI_API_KEYS="" CORS_ALLOW_ORIGIN="$OPENWEBUI_URL"
start_openwebui "$OPENWEBUI_PORT" "$ROOT/data/openwebui"
admin_token="$("$VENV/bin/python" scripts/openwebui_admin.py --url "$OPENWEBUI_URL" --bff "$BFF_URL" \
  --credentials data/openwebui-admin.json)"

cat <<BANNER

Open WebUI:  $OPENWEBUI_URL   sign in as $(python3 -c 'import json; print(json.load(open("data/openwebui-admin.json"))["email"])') (password in data/openwebui-admin.json)
Monitoring:  $BFF_URL/monitoring   (your Open WebUI sign-in works there: same host, 127.0.0.1)
bff:         $BFF_URL, in front of LiteLLM on http://127.0.0.1:$LITELLM_PORT
Models:      $models

A streaming chat with the admin's Open WebUI session token (paste it into another terminal):

curl -N $BFF_URL/v1/chat/completions \\
  -H 'Authorization: Bearer $admin_token' \\
  -H 'Content-Type: application/json' \\
  -d '{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"Hello"}]}'

Ctrl-C stops Open WebUI, bff and LiteLLM.
BANNER
wait -n "$BFF_PID" "$OPENWEBUI_PID" "$LITELLM_PID"
echo "a process of the stack stopped on its own; see its log" >&2
