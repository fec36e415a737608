#!/usr/bin/env bash
# `make run`: a real LiteLLM proxy (development models, no provider key needed) and bff in
# front of it, on loopback. Ctrl-C stops both.
source "$(dirname "$0")/lib.sh"

LITELLM_PORT="${LITELLM_PORT:-4000}"
BFF_PORT="${BFF_PORT:-8080}"

ensure_venv
cargo build --quiet -p bff-api --bin bff

master_key="sk-dev-$(random_hex 16)"
service_key="sk-bff-dev-$(random_hex 16)"

# Background jobs of a script ignore Ctrl-C, so stop them here (SIGTERM: graceful for both).
cleanup() {
  trap - EXIT INT TERM
  if [[ -n "${BFF_PID:-}" ]]; then kill "$BFF_PID" 2>/dev/null; wait "$BFF_PID" 2>/dev/null || true; fi
  if [[ -n "${LITELLM_PID:-}" ]]; then kill "$LITELLM_PID" 2>/dev/null; wait "$LITELLM_PID" 2>/dev/null || true; fi
  echo "stopped bff and LiteLLM" >&2
}
trap cleanup EXIT
trap 'cleanup; exit 0' INT TERM

echo "starting LiteLLM on 127.0.0.1:$LITELLM_PORT (log: .venv/litellm.log) ..." >&2
start_litellm "$LITELLM_PORT" "$master_key"

# Development identity: no Open WebUI here, so callers use a service key plus a signed
# forwarded-user token that carries the role (see the README, "Who may do what").
export BFF_BIND="127.0.0.1:$BFF_PORT"
export LITELLM_URL="http://127.0.0.1:$LITELLM_PORT" LITELLM_API_KEY="$master_key"
export WEBUI_SECRET_KEY="dev-$(random_hex 32)"
export AUTH_SERVICE_KEYS="dev=$service_key" OPENWEBUI_FORWARD_JWT_SECRET="dev-$(random_hex 32)"
export RBAC_POLICY_FILE="$ROOT/config/rbac.toml" TELEMETRY_SPOOL_DIR="$ROOT/data/telemetry-spool"
export LOG_FORMAT="${LOG_FORMAT:-pretty}"

"$BFF_BIN" serve &
BFF_PID=$!
if ! wait_for "http://127.0.0.1:$BFF_PORT/ready" 60; then
  echo "bff did not become ready" >&2
  exit 1
fi
user_jwt="$("$BFF_BIN" token --user dev-user --role admin --ttl 8h 2>/dev/null)"

cat <<BANNER

bff is ready on http://127.0.0.1:$BFF_PORT, in front of LiteLLM on http://127.0.0.1:$LITELLM_PORT.
Models: $("$VENV/bin/python" -c 'import yaml,sys; print(", ".join(m["model_name"] for m in yaml.safe_load(open(sys.argv[1]))["model_list"]))' "$VENV/litellm.yaml")

A streaming chat (paste it into another terminal):

curl -N http://127.0.0.1:$BFF_PORT/v1/chat/completions \\
  -H 'Authorization: Bearer $service_key' \\
  -H 'X-OpenWebUI-User-Jwt: $user_jwt' \\
  -H 'Content-Type: application/json' \\
  -d '{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"Hello"}]}'

Ctrl-C stops both.
BANNER
wait "$BFF_PID"
