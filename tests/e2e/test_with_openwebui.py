"""bff between the real Open WebUI 0.12.4 and the real LiteLLM: identity as users meet it.

One Open WebUI serves every test (the `stack` fixture); tests that need its connection in a
given mode set it first. Each test makes its own accounts, so tests do not depend on each other.
"""

import json
import secrets
import subprocess
import time
import uuid

import httpx
import jwt
import pytest
from conftest import BFF_BIN, ROOT, Account, Stack, openwebui_admin
from wire import MOCK_ANSWER, chat, content_of, sse_events


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def bff_chat(stack: Stack, token: str, stream: bool) -> httpx.Response:
    return httpx.post(
        f"{stack.bff.url}/v1/chat/completions", headers=bearer(token), json=chat(stream=stream), timeout=60
    )


def answer_of(response: httpx.Response, stream: bool) -> str:
    assert response.status_code == 200, response.text
    if stream:
        return content_of(sse_events(response))
    return response.json()["choices"][0]["message"]["content"]


def openwebui_chat(stack: Stack, account: Account, stream: bool, **extra) -> httpx.Response:
    """A chat through Open WebUI's own endpoint, as its browser client sends it."""
    return httpx.post(
        f"{stack.openwebui}/api/chat/completions",
        headers=bearer(account.token),
        json=chat(stream=stream, **extra),
        timeout=60,
    )


def logged_request(stack: Stack, **fields) -> dict:
    """bff's "request finished" log line whose fields include FIELDS (waits for the writer)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in stack.bff.log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("message") == "request finished" and fields.items() <= entry.items():
                return entry
        time.sleep(0.2)
    raise AssertionError(f"no request log line with {fields}")


def wait_for_status(request, status: int, seconds: float) -> float:
    """Repeats REQUEST until it answers STATUS; returns how long that took."""
    started = time.monotonic()
    while True:
        answered = request().status_code
        elapsed = time.monotonic() - started
        if answered == status:
            return elapsed
        assert elapsed < seconds, f"still {answered} after {elapsed:.1f} s, expected {status}"
        time.sleep(0.2)


@pytest.mark.parametrize("stream", [False, True])
def test_admin_and_user_sessions_chat_and_a_pending_account_is_refused(stack, stream):
    user = stack.add_user("alice", "user")
    for account in (stack.admin, user):
        assert answer_of(bff_chat(stack, account.token, stream), stream) == MOCK_ANSWER
    # Open WebUI closes sign-up once its admin exists, so the admin adds the waiting account.
    pending = stack.add_user("pat", "pending")
    refused = bff_chat(stack, pending.token, stream)
    assert refused.status_code == 403, refused.text
    assert "pending approval" in refused.json()["error"]["message"]
    line = logged_request(stack, user_id=user.id)
    assert (line["role"], line["auth"]) == ("user", "session")


def test_an_open_webui_api_key_is_accepted_with_its_owners_role(stack):
    owner = stack.add_user("key-owner", "user")
    created = openwebui_admin.call(stack.openwebui, "POST", "/api/v1/auths/api_key", owner.token)
    key = openwebui_admin.expect(created, "API key")["api_key"]
    assert key.startswith("sk-")
    assert answer_of(bff_chat(stack, key, stream=False), stream=False) == MOCK_ANSWER
    quota = httpx.get(f"{stack.bff.url}/observability/quota", headers=bearer(key), timeout=30)
    assert quota.status_code == 200, quota.text
    assert (quota.json()["user_id"], quota.json()["role"]) == (owner.id, "user")
    assert logged_request(stack, user_id=owner.id, auth="api_key")["role"] == "user"


def test_revocation_and_demotion_take_effect_within_the_cache_ttl(stack):
    revoked, demoted = stack.add_user("revoked", "user"), stack.add_user("demoted", "user")

    def models(account: Account):
        return lambda: httpx.get(f"{stack.bff.url}/v1/models", headers=bearer(account.token), timeout=30)

    for account in (revoked, demoted):
        assert models(account)().status_code == 200  # now in bff's cache
    admin = stack.admin.token
    revoke = f"/api/v1/users/{revoked.id}/sessions/revoke"
    openwebui_admin.expect(openwebui_admin.call(stack.openwebui, "POST", revoke, admin), "revoke")
    update = f"/api/v1/users/{demoted.id}/update"
    openwebui_admin.expect(openwebui_admin.call(stack.openwebui, "POST", update, admin, {"role": "pending"}), "demote")
    # The cache may answer for at most AUTH_CACHE_TTL_SECONDS; two more seconds for the polling
    # and Open WebUI's answer on a busy CI machine.
    limit = stack.cache_ttl + 2
    assert wait_for_status(models(revoked), 401, limit) <= limit
    assert wait_for_status(models(demoted), 403, limit) <= limit


@pytest.mark.parametrize("mode, credential", [("session", "session"), ("bearer", "forwarded_jwt")])
def test_a_chat_through_open_webui_is_the_users_in_both_connection_modes(stack, mode, credential):
    """Mode 1: Open WebUI sends the user's own token. Mode 2: bff's service key plus the user
    token Open WebUI signs with FORWARD_USER_INFO_HEADER_JWT_SECRET."""
    stack.connect(mode)
    user = stack.add_user(f"{mode}-user", "user")
    for stream in (False, True):
        assert answer_of(openwebui_chat(stack, user, stream), stream) == MOCK_ANSWER
    saved = openwebui_admin.call(
        stack.openwebui, "POST", "/api/v1/chats/new", user.token, {"chat": {"title": "e2e", "messages": []}}
    )
    chat_id = openwebui_admin.expect(saved, "new chat")["id"]
    in_chat = openwebui_chat(stack, user, stream=False, chat_id=chat_id, id=str(uuid.uuid4()))
    assert answer_of(in_chat, stream=False) == MOCK_ANSWER
    line = logged_request(stack, session_id=chat_id)
    assert line["user_id"] == user.id
    assert (line["role"], line["auth"], line["openwebui_auth"]) == ("user", credential, "jwt")
    assert (line["route"], line["status"], line["outcome"]) == ("/v1/chat/completions", 200, "ok")


def test_a_forwarded_user_token_signed_with_another_secret_is_refused(stack):
    now = int(time.time())
    claims = {"sub": stack.admin.id, "email": stack.admin.email, "name": "e2e admin", "role": "admin"}
    claims |= {"iss": "open-webui", "iat": now, "exp": now + 300}
    for secret, status in ((stack.forward_secret, 200), ("not-" + stack.forward_secret, 401)):
        headers = {**bearer(stack.bff.service_key), "X-OpenWebUI-User-Jwt": jwt.encode(claims, secret, "HS256")}
        response = httpx.get(f"{stack.bff.url}/v1/models", headers=headers, timeout=30)
        assert response.status_code == status, response.text


def test_check_config_tells_whether_bffs_secret_is_open_webuis(stack):
    def check(secret: str) -> subprocess.CompletedProcess:
        env = {
            "WEBUI_SECRET_KEY": secret,
            "OPENWEBUI_URL": stack.openwebui,
            "LITELLM_URL": "http://127.0.0.1:9",
            "LITELLM_API_KEY": "sk-unused",
            "RBAC_POLICY_FILE": str(ROOT / "config" / "rbac.toml"),
        }
        return subprocess.run([BFF_BIN, "check-config"], env=env, capture_output=True, text=True, timeout=60)

    matching = check(stack.webui_secret)
    assert matching.returncode == 0, matching.stdout + matching.stderr
    assert "WEBUI_SECRET_KEY matches Open WebUI's" in matching.stdout
    wrong = check(secrets.token_hex(32))
    assert wrong.returncode == 1
    assert "WEBUI_SECRET_KEY does not match Open WebUI's" in wrong.stdout
