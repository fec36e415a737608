"""Open WebUI's admin API for `make run` and the e2e suite (standard library only).

Two jobs: the first account (Open WebUI makes it the admin) and bff as Open WebUI's one model
connection. `make run` calls the command line below; tests/e2e imports the functions.
"""

import argparse
import json
import os
import pathlib
import secrets
import sys
import urllib.error
import urllib.request


class OpenWebUiError(RuntimeError):
    """Open WebUI answered something other than what the step needs."""


def call(base: str, method: str, path: str, token: str | None = None, body: dict | None = None):
    """One JSON call; returns (status, parsed body)."""
    request = urllib.request.Request(base.rstrip("/") + path, method=method)
    request.add_header("Accept", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, data=data, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            return error.code, json.loads(text)
        except ValueError:
            return error.code, text.decode(errors="replace")


def expect(status_and_body, what: str):
    status, body = status_and_body
    if status != 200:
        raise OpenWebUiError(f"{what}: Open WebUI answered {status} {body}")
    return body


def sign_up(base: str, name: str, email: str, password: str) -> dict:
    """Creates an account; Open WebUI makes the first one admin, later ones DEFAULT_USER_ROLE."""
    body = {"name": name, "email": email, "password": password}
    return expect(call(base, "POST", "/api/v1/auths/signup", body=body), f"sign-up of {email}")


def sign_in(base: str, email: str, password: str) -> dict:
    """Returns the session: `token`, `id`, `role`, ..."""
    body = {"email": email, "password": password}
    return expect(call(base, "POST", "/api/v1/auths/signin", body=body), f"sign-in of {email}")


def admin_session(base: str, credentials: pathlib.Path) -> tuple[dict, bool]:
    """Signs in with the admin kept in CREDENTIALS, creating that admin on first start.

    Returns the session and whether the account was created now.
    """
    if credentials.exists():
        saved = json.loads(credentials.read_text())
        return sign_in(base, saved["email"], saved["password"]), False
    saved = {"name": "bff admin", "email": "admin@bff.localhost", "password": secrets.token_urlsafe(18)}
    session = sign_up(base, **saved)
    if session.get("role") != "admin":
        raise OpenWebUiError(
            f"Open WebUI already has an admin, but {credentials} is missing: "
            "delete data/openwebui/ to start over"
        )
    credentials.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(credentials, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump(saved, file)
    return session, True


def connect_bff(base: str, admin_token: str, bff_url: str, auth_type: str, key: str = "") -> None:
    """Makes bff Open WebUI's only OpenAI connection.

    `auth_type` "session": Open WebUI sends each user's own token to bff (mode 1), and bff asks
    Open WebUI for the user's role and groups.
    "bearer": it sends KEY, a bff service key, and the signed user header (mode 2), which has no
    groups: the connection sends them in X-OpenWebUI-User-Groups / -Group-Ids.
    Either way X-OpenWebUI-Task says which requests Open WebUI makes on its own (titles, tags,
    follow-ups), so bff counts them apart.
    """
    headers = {"X-OpenWebUI-Task": "{{TASK}}"}
    if auth_type == "bearer":
        headers |= {"X-OpenWebUI-User-Groups": "{{USER_GROUPS}}", "X-OpenWebUI-User-Group-Ids": "{{USER_GROUP_IDS}}"}
    config = {
        "ENABLE_OPENAI_API": True,
        "OPENAI_API_BASE_URLS": [bff_url.rstrip("/") + "/v1"],
        "OPENAI_API_KEYS": [key],
        "OPENAI_API_CONFIGS": {"0": {"enable": True, "auth_type": auth_type, "headers": headers}},
    }
    expect(call(base, "POST", "/openai/config/update", admin_token, config), "connection update")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True, help="Open WebUI's address")
    parser.add_argument("--bff", required=True, help="bff's address, as Open WebUI reaches it")
    parser.add_argument("--credentials", required=True, type=pathlib.Path)
    args = parser.parse_args()
    try:
        session, created = admin_session(args.url, args.credentials)
        connect_bff(args.url, session["token"], args.bff, "session")
    except OpenWebUiError as error:
        print(error, file=sys.stderr)
        return 1
    if created:
        saved = json.loads(args.credentials.read_text())
        print(
            f"Created the Open WebUI admin {saved['email']} with password {saved['password']} "
            f"(kept in {args.credentials}).",
            file=sys.stderr,
        )
    print(session["token"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
