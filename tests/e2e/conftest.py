"""Fixtures for the end-to-end suite: a real LiteLLM proxy and the real bff binary.

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

    @property
    def headers(self) -> dict:
        """A trusted caller (service key) vouching for an admin user with a signed token."""
        return {"Authorization": f"Bearer {self.service_key}", "X-OpenWebUI-User-Jwt": self.user_jwt}


@pytest.fixture(scope="session")
def litellm(tmp_path_factory):
    work = tmp_path_factory.mktemp("litellm")
    port, key = free_port(), f"sk-e2e-{secrets.token_hex(16)}"
    config = work / "litellm.yaml"
    # Only the keyless development models: provider keys of the machine are not used here.
    clean = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    clean.pop("LANGFUSE_PUBLIC_KEY", None)
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


def start_bff(work: pathlib.Path, litellm_url: str, litellm_key: str):
    port = free_port()
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
    }
    log = open(work / f"bff-{port}.log", "w", encoding="utf-8")
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
    return process, Bff(url=f"http://127.0.0.1:{port}", service_key=service_key, user_jwt=token)


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
