"""Fixtures for the end-to-end suite: a real LiteLLM proxy, the real bff binary and a real
Open WebUI 0.12.4 in front of it.

`make test-e2e` runs this with the project virtualenv (scripts/e2e.sh). Every process runs on
loopback on a free port and is stopped at the end of the session.
"""

import os
import pathlib
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
BFF_BIN = pathlib.Path(os.environ.get("BFF_BIN", ROOT / "target" / "debug" / "bff"))
OPENWEBUI_BIN = ROOT / ".venv-openwebui" / "bin" / "open-webui"

sys.path.insert(0, str(ROOT / "scripts"))
import openwebui_admin  # noqa: E402  (scripts/ is not a package)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ok(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


@dataclass
class LiteLlm:
    url: str
    key: str


@dataclass
class Bff:
    url: str
    service_key: str
    user_jwt: str
    log: pathlib.Path

    @property
    def headers(self) -> dict:
        """A trusted caller (service key) vouching for an admin user with a signed token."""
        return {"Authorization": f"Bearer {self.service_key}", "X-OpenWebUI-User-Jwt": self.user_jwt}


@pytest.fixture(scope="session")
def litellm(tmp_path_factory):
    work = tmp_path_factory.mktemp("litellm")
    port, key = free_port(), f"sk-e2e-{secrets.token_hex(16)}"
    config = work / "litellm.yaml"
    # Only the keyless development models: provider keys of the machine are not used here. The
    # `vllm` entry (any OpenAI-compatible server) points at this LiteLLM itself, serving mock-gpt.
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    clean.pop("LANGFUSE_PUBLIC_KEY", None)
    clean.update(
        VLLM_API_BASE=f"http://127.0.0.1:{port}/v1", VLLM_MODEL="hosted_vllm/mock-gpt", VLLM_API_KEY=key
    )
    subprocess.run(
        [sys.executable, ROOT / "scripts" / "litellm_config.py", ROOT / "config" / "litellm.yaml", config],
        check=True,
        env=clean,
    )
    log = open(work / "litellm.log", "w", encoding="utf-8")
    process = subprocess.Popen(
        [VENV / "bin" / "litellm", "--config", config, "--host", "127.0.0.1", "--port", str(port)],
        env={**clean, "LITELLM_MASTER_KEY": key},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ok(f"http://127.0.0.1:{port}/health/liveliness", 120)
    except RuntimeError:
        process.kill()
        raise RuntimeError((work / "litellm.log").read_text()[-4000:])
    yield LiteLlm(url=f"http://127.0.0.1:{port}", key=key)
    process.terminate()
    process.wait(timeout=15)


def start_bff(work: pathlib.Path, litellm_url: str, litellm_key: str, port: int | None = None, **settings):
    """The bff binary with the e2e settings, overridden or extended by SETTINGS."""
    port = port or free_port()
    service_key = f"sk-bff-e2e-{secrets.token_hex(16)}"
    env = {
        "PATH": os.environ.get("PATH", ""),
        "BFF_BIND": f"127.0.0.1:{port}",
        "LITELLM_URL": litellm_url,
        "LITELLM_API_KEY": litellm_key,
        "WEBUI_SECRET_KEY": secrets.token_hex(32),
        "AUTH_SERVICE_KEYS": f"e2e={service_key}",
        "OPENWEBUI_FORWARD_JWT_SECRET": secrets.token_hex(32),
        "RBAC_POLICY_FILE": str(ROOT / "config" / "rbac.toml"),
        "TELEMETRY_SPOOL_DIR": "off",
        "LITELLM_MAX_ATTEMPTS": "1",
        "LOG_FORMAT": "json",
        # The reports are written this far behind the chats (default 1 s).
        "USAGE_FLUSH_INTERVAL_MS": "50",
        **settings,
    }
    log_path = work / f"bff-{port}.log"
    log = open(log_path, "w", encoding="utf-8")
    process = subprocess.Popen([BFF_BIN, "serve"], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    wait_ok(f"http://127.0.0.1:{port}/health", 60)
    token = subprocess.run(
        [BFF_BIN, "token", "--user", "e2e-user", "--role", "admin"],
        env=env,
        cwd=work,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return process, Bff(url=f"http://127.0.0.1:{port}", service_key=service_key, user_jwt=token, log=log_path)


@pytest.fixture(scope="session")
def bff(litellm, tmp_path_factory):
    process, app = start_bff(tmp_path_factory.mktemp("bff"), litellm.url, litellm.key)
    yield app
    process.terminate()
    process.wait(timeout=40)


@pytest.fixture(scope="session")
def bff_without_litellm(tmp_path_factory):
    """bff pointed at a port where nothing listens."""
    process, app = start_bff(tmp_path_factory.mktemp("bff-down"), f"http://127.0.0.1:{free_port()}", "sk-none")
    yield app
    process.terminate()
    process.wait(timeout=40)


def openwebui_env(data: pathlib.Path) -> dict:
    """scripts/openwebui.env (the settings `make run` uses too) plus this run's data folder."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(data), "DATA_DIR": str(data)}
    for line in (ROOT / "scripts" / "openwebui.env").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


@dataclass
class Account:
    """An Open WebUI account and its session."""

    id: str
    name: str
    email: str
    password: str
    token: str

    @classmethod
    def from_session(cls, session: dict, password: str) -> "Account":
        return cls(
            id=session["id"],
            name=session["name"],
            email=session["email"],
            password=password,
            token=session["token"],
        )


@dataclass
class Stack:
    """Open WebUI in front of bff in front of LiteLLM, as `make run` starts them."""

    openwebui: str
    bff: Bff
    forward_secret: str
    webui_secret: str
    cache_ttl: int
    admin: Account

    def add_user(self, name: str, role: str) -> Account:
        """An account the admin creates with ROLE, signed in."""
        password = secrets.token_urlsafe(12)
        email = f"{name}-{secrets.token_hex(4)}@bff.localhost"
        body = {"name": name, "email": email, "password": password, "role": role}
        openwebui_admin.expect(
            openwebui_admin.call(self.openwebui, "POST", "/api/v1/auths/add", self.admin.token, body), "add user"
        )
        return Account.from_session(openwebui_admin.sign_in(self.openwebui, email, password), password)

    def create_group(self, name: str) -> str:
        """An Open WebUI group, made by the admin; returns its id."""
        body = {"name": name, "description": f"{name} (e2e)"}
        created = openwebui_admin.call(self.openwebui, "POST", "/api/v1/groups/create", self.admin.token, body)
        return openwebui_admin.expect(created, f"group {name}")["id"]

    def set_members(self, group_id: str, action: str, *accounts: "Account") -> None:
        """Adds (`add`) or removes (`remove`) ACCOUNTS from the group."""
        body = {"user_ids": [account.id for account in accounts]}
        path = f"/api/v1/groups/id/{group_id}/users/{action}"
        openwebui_admin.expect(openwebui_admin.call(self.openwebui, "POST", path, self.admin.token, body), action)

    def connect(self, auth_type: str) -> None:
        """Points Open WebUI's connection at bff in mode 1 (`session`) or 2 (`bearer`)."""
        key = self.bff.service_key if auth_type == "bearer" else ""
        openwebui_admin.connect_bff(self.openwebui, self.admin.token, self.bff.url, auth_type, key)
        # Open WebUI routes a chat only to models its last model-list refresh found.
        openwebui_admin.expect(openwebui_admin.call(self.openwebui, "GET", "/api/models", self.admin.token), "models")


@pytest.fixture(scope="session")
def stack(litellm, tmp_path_factory):
    """One Open WebUI for every scenario; its connection is switched between them."""
    work = tmp_path_factory.mktemp("stack")
    bff_port, openwebui_port = free_port(), free_port()
    openwebui = f"http://127.0.0.1:{openwebui_port}"
    webui_secret, forward_secret, cache_ttl = secrets.token_hex(32), secrets.token_hex(32), 3
    env = {
        **openwebui_env(work / "openwebui"),
        "WEBUI_SECRET_KEY": webui_secret,
        "FORWARD_USER_INFO_HEADER_JWT_SECRET": forward_secret,
        "OPENAI_API_BASE_URLS": f"http://127.0.0.1:{bff_port}/v1",
    }
    (work / "openwebui").mkdir()
    log = open(work / "openwebui.log", "w", encoding="utf-8")
    openwebui_process = subprocess.Popen(
        [OPENWEBUI_BIN, "serve", "--host", "127.0.0.1", "--port", str(openwebui_port)],
        env=env,
        cwd=work / "openwebui",
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    bff_process, bff = start_bff(
        work,
        litellm.url,
        litellm.key,
        port=bff_port,
        OPENWEBUI_URL=openwebui,
        WEBUI_SECRET_KEY=webui_secret,
        OPENWEBUI_FORWARD_JWT_SECRET=forward_secret,
        AUTH_CACHE_TTL_SECONDS=str(cache_ttl),
        RBAC_POLICY_FILE=str(ROOT / "tests" / "e2e" / "rbac.toml"),
    )
    try:
        wait_ok(f"{openwebui}/health", 180)
        password = secrets.token_urlsafe(12)
        session = openwebui_admin.sign_up(openwebui, "e2e admin", "admin@bff.localhost", password)
    except (RuntimeError, openwebui_admin.OpenWebUiError):
        for process in (openwebui_process, bff_process):
            process.kill()
        raise RuntimeError((work / "openwebui.log").read_text()[-4000:])
    assert session["role"] == "admin", "the first account of a fresh Open WebUI is its admin"
    yield Stack(
        openwebui=openwebui,
        bff=bff,
        forward_secret=forward_secret,
        webui_secret=webui_secret,
        cache_ttl=cache_ttl,
        admin=Account.from_session(session, password),
    )
    for process in (openwebui_process, bff_process):
        process.terminate()
        process.wait(timeout=40)


SCREENSHOTS = ROOT / "target" / "screenshots"


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium, headless, driven through Debian's chromium-driver (no downloads)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1100"):
        options.add_argument(flag)
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(options=options, service=service)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture(scope="session")
def bff_dependencies_down(stack, tmp_path_factory):
    """A second bff beside the stack's, for the same Open WebUI, whose LiteLLM and Langfuse do
    not answer."""
    process, app = start_bff(
        tmp_path_factory.mktemp("bff-dependencies-down"),
        f"http://127.0.0.1:{free_port()}",
        "sk-none",
        OPENWEBUI_URL=stack.openwebui,
        WEBUI_SECRET_KEY=stack.webui_secret,
        LANGFUSE_HOST=f"http://127.0.0.1:{free_port()}",
        LANGFUSE_PUBLIC_KEY="pk-lf-e2e",
        LANGFUSE_SECRET_KEY="sk-lf-e2e",
    )
    yield app
    process.terminate()
    process.wait(timeout=40)
