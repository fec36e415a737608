#!/usr/bin/env python3
"""`make bench`: bff against an instant upstream and a logic-free reference proxy, on loopback.

Starts nginx twice — an instant OpenAI-compatible upstream (chat JSON, Open WebUI's identity
lookup, Langfuse OTLP and Helicone logs all answered at once) and a reference proxy
(`proxy_pass` with upstream keep-alive) — and bff as deployed: release build, a real signed
Open WebUI session token (identity cache warm), RBAC, both telemetry sinks, JSON logs at info.
wrk drives each target at 64 and 256 connections, and bench_open_loop at a constant rate on one
connection (latency without coordinated omission), in alternating rounds (A B A B) so drift
cancels. A second bff in front of
a pacing SSE upstream (bench_stream.py) gives the streaming figures, disconnect time and memory.
The tables go to BENCHMARKS.md (between the BENCH markers) and to stdout. Loopback only.
"""

import json
import os
import pathlib
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import bench_open_loop
import bench_stream

ROOT = pathlib.Path(__file__).resolve().parents[1]
DURATION = os.environ.get("BENCH_DURATION", "8s")
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
LITELLM_CONNECTIONS = (1, 16)
RATE = float(os.environ.get("BENCH_RATE", "1000"))  # requests a second in the latency runs
CHAT = {"model": "bench-model", "messages": [{"role": "user", "content": "Say hello in one sentence."}]}
# A realistic non-streaming answer (~700 bytes), the shape LiteLLM 1.108.7 returns.
ANSWER = json.dumps({
    "id": "chatcmpl-bench", "created": 1795550564, "model": "bench-model", "object": "chat.completion",
    "system_fingerprint": "fp_bench",
    "choices": [{"finish_reason": "stop", "index": 0, "message": {
        "content": "Hello! This is an instant answer from the benchmark upstream, long enough to be realistic.",
        "role": "assistant"}, "provider_specific_fields": {}, "logprobs": None}],
    "usage": {"completion_tokens": 21, "prompt_tokens": 14, "total_tokens": 35,
              "completion_tokens_details": {"reasoning_tokens": 0}, "prompt_tokens_details": {"cached_tokens": 0}},
})
USER = json.dumps({"id": "bench-user", "name": "Bench", "email": "bench@example.com", "role": "user",
                   "profile_image_url": "/user.png", "token": "x", "token_type": "Bearer", "expires_at": None,
                   "permissions": {}})
WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = [[%s]]
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("BENCH {\\"requests\\": %%d, \\"rps\\": %%f, \\"p50\\": %%d, \\"p99\\": %%d, \\"p999\\": %%d, \\"errors\\": %%d}\\n",
    summary.requests, summary.requests / (summary.duration / 1e6), latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), summary.errors.status + summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_tools() -> None:
    tools = ("nginx", "wrk", "perf") if os.environ.get("BENCH_PROFILE") else ("nginx", "wrk")
    missing = [tool for tool in tools if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}")]
    if missing:
        package = {"nginx": "nginx-light", "perf": "linux-perf"}
        packages = [package.get(tool, tool) for tool in missing]
        print(f"installing {', '.join(packages)} from Debian ...", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True)


def nginx_config(work: pathlib.Path, upstream: int, reference: int, streams: tuple) -> pathlib.Path:
    """STREAMS is (the SSE upstream's port, the port of the reference proxy in front of it)."""
    answer = ANSWER.replace("'", "\\'")
    user = USER.replace("'", "\\'")
    config = f"""
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  upstream instant {{ server 127.0.0.1:{upstream}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{upstream};
    default_type application/json;
    location = /v1/chat/completions {{ add_header x-litellm-response-cost 0.0000231; return 200 '{answer}'; }}
    location = /health/readiness {{ return 200 '{{"status":"healthy","db":"Not connected"}}'; }}
    location = /api/v1/auths/ {{ return 200 '{user}'; }}
    location = /api/v1/users/groups {{ return 200 '[{{"id":"g-bench","name":"bench-team"}}]'; }}
    location = /health {{ return 200 '{{"status":true}}'; }}
    location = /api/public/otel/v1/traces {{ return 200 '{{}}'; }}
    location = /custom/v1/log {{ default_type text/plain; return 200 'ok'; }}
  }}
  server {{
    listen 127.0.0.1:{reference};
    location / {{
      proxy_pass http://instant;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
  upstream paced {{ server 127.0.0.1:{streams[0]}; keepalive 256; }}
  server {{
    listen 127.0.0.1:{streams[1]};
    location / {{
      proxy_pass http://paced;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
}}
"""
    path = work / "nginx.conf"
    path.write_text(config)
    return path


def wait_ok(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def start_bff(work: pathlib.Path, binary: pathlib.Path, upstream: int, litellm: int | None = None) -> tuple:
    """bff as deployed, every dependency on the instant upstream (LiteLLM on LITELLM if given)."""
    port = free_port()
    base = f"http://127.0.0.1:{upstream}"
    work.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "BFF_BIND": f"127.0.0.1:{port}",
        "LITELLM_URL": f"http://127.0.0.1:{litellm or upstream}", "LITELLM_API_KEY": "sk-bench-master",
        "WEBUI_SECRET_KEY": "bench-webui-secret-key-32-bytes!!", "OPENWEBUI_URL": base,
        "RBAC_POLICY_FILE": str(ROOT / "config" / "rbac.toml"),
        "LANGFUSE_HOST": base, "LANGFUSE_PUBLIC_KEY": "pk-lf-bench", "LANGFUSE_SECRET_KEY": "sk-lf-bench",
        "HELICONE_API_KEY": "sk-helicone-bench", "HELICONE_BASE_URL": base, "HELICONE_API_URL": base,
        "TELEMETRY_SPOOL_DIR": str(work / "spool"), "QUOTA_STORE_PATH": str(work / "quota.redb"),
        "LOG_FORMAT": "json", "RUST_LOG": "info",
    }
    log = open(work / "bff.log", "w", encoding="utf-8")
    process = subprocess.Popen([binary, "serve"], env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    wait_ok(f"http://127.0.0.1:{port}/health", 30)
    token = subprocess.run([binary, "token", "--user", "bench-user", "--ttl", "1h"], env=env, cwd=work,
                           check=True, capture_output=True, text=True).stdout.strip()
    return process, port, token


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(script: pathlib.Path, url: str, connections: int, token: str = "", pid: int | None = None) -> dict:
    """One wrk run; with PID, also that process's CPU time per request (µs), a figure this
    noisy VM moves far less than req/s."""
    command = ["wrk", "-t", "2" if connections > 1 else "1", "-c", str(connections), "-d", DURATION,
               "-s", str(script), url]
    if token:
        command[1:1] = ["-H", f"Authorization: Bearer {token}"]
    before = cpu_seconds(pid) if pid else 0.0
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    match = re.search(r"^BENCH (.*)$", output, re.M)
    if not match:
        raise RuntimeError(output)
    result = json.loads(match.group(1))
    if pid:
        result["cpu_us"] = (cpu_seconds(pid) - before) * 1e6 / max(result["requests"], 1)
    return result


def constant_rate(url: str, token: str = "") -> dict:
    """The latency run: RATE requests a second on one connection for DURATION (bench_open_loop)."""
    port, path = url.removeprefix("http://127.0.0.1:").split("/", 1)
    seconds = float(DURATION.removesuffix("s"))
    return bench_open_loop.run(int(port), "/" + path, json.dumps(CHAT).encode(), token, RATE, seconds)


def litellm_comparison(work: pathlib.Path, binary: pathlib.Path, script: pathlib.Path, upstream: int) -> list:
    """LiteLLM alone, and bff in front of it, on the same instant upstream (wrk, alternating).
    Only when `.venv` from `make run` holds LiteLLM; a fresh clone skips it."""
    litellm = ROOT / ".venv" / "bin" / "litellm"
    if not litellm.exists():
        return ["LiteLLM comparison skipped: no `.venv/bin/litellm` (`make run` installs it)."]
    port = free_port()
    config = work / "litellm.yaml"  # JSON is YAML
    config.write_text(json.dumps({
        "model_list": [{"model_name": "bench-model", "litellm_params": {
            "model": "openai/bench-model", "api_base": f"http://127.0.0.1:{upstream}/v1", "api_key": "sk-upstream"}}],
        "general_settings": {"master_key": "os.environ/LITELLM_MASTER_KEY"},
    }))
    offline = ("MODEL_COST_MAP", "ANTHROPIC_BETA_HEADERS", "POLICY_TEMPLATES", "BLOG_POSTS", "AUTOROUTER_PRESETS")
    env = {**os.environ, "LITELLM_MASTER_KEY": "sk-bench-master", **{f"LITELLM_LOCAL_{name}": "True" for name in offline}}
    log = open(work / "litellm.log", "w", encoding="utf-8")
    process = subprocess.Popen([litellm, "--config", config, "--host", "127.0.0.1", "--port", str(port)],
                               env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT)
    bff = None
    try:
        wait_ok(f"http://127.0.0.1:{port}/health/liveliness", 180)
        bff, bff_port, token = start_bff(work / "litellm", binary, upstream, port)
        targets = {"LiteLLM": (port, "sk-bench-master"), "bff → LiteLLM": (bff_port, token)}
        results = {(name, c): [] for name in targets for c in LITELLM_CONNECTIONS}
        for _ in range(ROUNDS):
            for connections in LITELLM_CONNECTIONS:
                for name, (target, key) in targets.items():
                    url = f"http://127.0.0.1:{target}/v1/chat/completions"
                    results[(name, connections)].append(wrk(script, url, connections, key))
        return litellm_lines(results)
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:  # optional: never costs the run
        return [f"LiteLLM comparison failed: {error} (LiteLLM's log: {work / 'litellm.log'})."]
    finally:
        for child in (bff, process):
            if child:
                child.terminate()
                child.wait(timeout=60)


def litellm_lines(results: dict) -> list:
    us = lambda value: f"{value / 1000:.1f} ms"
    rows = ["| target | " + " | ".join(f"req/s at c={c} | p50 at c={c} | p99 at c={c}" for c in LITELLM_CONNECTIONS)
            + " | errors |", "|---|" + "---|---|---|" * len(LITELLM_CONNECTIONS) + "---|"]
    for name in ("LiteLLM", "bff → LiteLLM"):
        cells = [f"{median(results[(name, c)], 'rps'):,.0f} | {us(median(results[(name, c)], 'p50'))} "
                 f"| {us(median(results[(name, c)], 'p99'))}" for c in LITELLM_CONNECTIONS]
        errors = sum(run["errors"] for c in LITELLM_CONNECTIONS for run in results[(name, c)])
        rows.append(f"| {name} | {' | '.join(cells)} | {errors} |")
    c = LITELLM_CONNECTIONS[-1]
    ratio = median(results[("bff → LiteLLM", c)], "rps") / median(results[("LiteLLM", c)], "rps")
    added = median(results[("bff → LiteLLM", 1)], "p50") - median(results[("LiteLLM", 1)], "p50")
    return ["LiteLLM proxy (`.venv`, one process) on the same instant upstream, alone and behind bff as deployed "
            "(wrk, closed loop):", "", *rows, "",
            f"- bff → LiteLLM keeps **{ratio:.0%}** of LiteLLM's throughput at c={c}; its p50 at c=1 moves by "
            f"**{added / 1000:+.1f} ms** (LiteLLM's own p50 varies by more than bff adds)."]


def telemetry(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    counts = {}
    for sink, state, value in re.findall(r'bff_telemetry_records_total\{sink="(\w+)",state="(\w+)"\} (\d+)', text):
        counts.setdefault(sink, {})[state] = int(value)
    # Exports whose answer was lost and which were sent once more (Langfuse v4 may then hold two).
    for sink, value in re.findall(r'bff_telemetry_ambiguous_retries_total\{sink="(\w+)"\} (\d+)', text):
        counts.setdefault(sink, {})["ambiguous_retries"] = int(value)
    for states in counts.values():
        states.setdefault("ambiguous_retries", 0)
    return counts


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, {platform.system()} {platform.release()}"


def main() -> None:
    ensure_tools()
    # 1,000 open streams need about 4,000 descriptors in bff and 2,000 here.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "bff-api", "--bin", "bff"], cwd=ROOT, check=True)
    target = json.loads(subprocess.run(["cargo", "metadata", "--format-version", "1", "--no-deps"], cwd=ROOT,
                                       check=True, capture_output=True, text=True).stdout)["target_directory"]
    binary = pathlib.Path(target) / "release" / "bff"
    work = pathlib.Path(tempfile.mkdtemp(prefix="bff-bench-"))
    upstream, reference = free_port(), free_port()
    streams = (free_port(), free_port())
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"
    config = nginx_config(work, upstream, reference, streams)
    nginx = subprocess.Popen([nginx_bin, "-c", str(config), "-g", "daemon off;"])
    bff = None
    try:
        wait_ok(f"http://127.0.0.1:{upstream}/health", 10)
        bff, port, token = start_bff(work, binary, upstream)
        script = work / "post.lua"
        script.write_text(WRK_SCRIPT % json.dumps(CHAT))
        targets = {
            "direct": f"http://127.0.0.1:{upstream}/v1/chat/completions",
            "reference proxy": f"http://127.0.0.1:{reference}/v1/chat/completions",
            "bff": f"http://127.0.0.1:{port}/v1/chat/completions",
        }
        if os.environ.get("BENCH_PROFILE"):
            profile(bff.pid, script, targets["bff"], token, work)
            return
        if os.environ.get("BENCH_ONLY") == "streaming":
            print("\n".join(stream(work, binary, upstream, streams)))
            return
        if os.environ.get("BENCH_ONLY") == "litellm":
            print("\n".join(litellm_comparison(work, binary, script, upstream)))
            return
        results = {(name, c): [] for name in targets for c in (1, 64, 256)}
        for _ in range(ROUNDS):  # A B A B: every target once per round
            for connections in (1, 64, 256):
                for name, url in targets.items():
                    if connections == 1:
                        run = constant_rate(url, token if name == "bff" else "")
                    else:
                        bff_only = {"token": token, "pid": bff.pid} if name == "bff" else {}
                        run = wrk(script, url, connections, **bff_only)
                    results[(name, connections)].append(run)
        sinks = telemetry(port)
        streaming = stream(work, binary, upstream, streams)
        report(results, sinks, streaming + [""] + litellm_comparison(work, binary, script, upstream))
    finally:
        if bff:
            bff.terminate()
            bff.wait(timeout=60)
        nginx.terminate()
        nginx.wait(timeout=10)


def stream(work: pathlib.Path, binary: pathlib.Path, upstream: int, streams: tuple) -> list:
    """The streaming figures: bench_stream's pacing upstream directly, through nginx (STREAMS) and
    through a fresh bff."""
    litellm, reference = streams
    bff, port, token = start_bff(work / "stream", binary, upstream, litellm)
    try:
        ports = {"direct": litellm, "reference proxy": reference, "bff": port}
        return bench_stream.report_lines(bench_stream.run(ports, token, bff.pid))
    finally:
        bff.terminate()
        bff.wait(timeout=60)


def profile(pid: int, script: pathlib.Path, url: str, token: str, work: pathlib.Path) -> None:
    """`BENCH_PROFILE=1`: where bff spends its CPU at c=64 (perf, software clock, flat).
    `BENCH_PROFILE=<symbol>`: the call chains that lead to that symbol (DWARF unwinding)."""
    data = work / "perf.data"
    wanted = os.environ.get("BENCH_PROFILE", "1")
    unwind = [] if wanted == "1" else ["--call-graph", "dwarf,16384"]
    recorder = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "499", *unwind, "-p", str(pid),
                                 "-o", str(data), "--", "sleep", "6"], stderr=subprocess.DEVNULL)
    wrk(script, url, 64, token)
    recorder.wait()
    if wanted == "1":
        command = ["--no-children", "--sort", "dso,symbol"]
    else:
        command = ["--no-children", "--symbols", wanted, "-G", "--percent-limit", "0.5"]
    report = subprocess.run(["perf", "report", "-i", str(data), "--stdio", *command],
                            capture_output=True, text=True).stdout
    lines = [" ".join(line.split()) if wanted == "1" else line.rstrip()
             for line in report.splitlines() if line.strip() and not line.startswith("#")]
    print("\n".join(lines[:60 if wanted == "1" else 200]))


def median(runs: list, key: str) -> float:
    return statistics.median(run[key] for run in runs)


def report(results: dict, sinks: dict, streaming: list) -> None:
    us = lambda value: f"{value:.0f} µs" if value < 1000 else f"{value / 1000:.2f} ms"
    rate = f"{RATE:,.0f}/s"
    rows = [f"| target | req/s at c=64 | p99 at c=64 | req/s at c=256 | p50 at {rate} | p99 at {rate} "
            f"| p99.9 at {rate} | max at {rate} | errors |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name in ("direct", "reference proxy", "bff"):
        hot, hotter, cold = results[(name, 64)], results[(name, 256)], results[(name, 1)]
        errors = sum(run["errors"] for run in hot + hotter + cold)
        rows.append(f"| {name} | {median(hot, 'rps'):,.0f} | {us(median(hot, 'p99'))} | {median(hotter, 'rps'):,.0f} "
                    f"| {us(median(cold, 'p50'))} | {us(median(cold, 'p99'))} | {us(median(cold, 'p999'))} "
                    f"| {us(max(run['max'] for run in cold))} | {errors} |")
    ratio = median(results[("bff", 64)], "rps") / median(results[("reference proxy", 64)], "rps")
    added = median(results[("bff", 1)], "p50") - median(results[("reference proxy", 1)], "p50")
    lines = [
        f"Machine: {machine()}. Command: `make bench` ({DURATION} per run, {ROUNDS} alternating rounds, medians; "
        f"c=64 and c=256 by wrk, latency at a constant {rate} on one connection, counted from when each "
        "request was due).",
        "",
        *rows,
        "",
        f"- bff / reference proxy throughput at c=64: **{ratio:.0%}** (target ≥ 60 %).",
        f"- bff's own CPU per request at c=64 (user + system): **{median(results[('bff', 64)], 'cpu_us'):.0f} µs**.",
        f"- bff's added p50 at {rate} on one connection over the reference proxy: **{us(added)}** (target ≤ 50 µs).",
        f"- bff from c=64 to c=256: **{median(results[('bff', 256)], 'rps') / median(results[('bff', 64)], 'rps'):.0%}** "
        "of its c=64 throughput (target: no fall).",
        f"- Telemetry during the runs: {json.dumps(sinks, sort_keys=True)} (target: 0 spooled, 0 dropped).",
        "",
        *streaming,
    ]
    table = "\n".join(lines)
    print(table)
    path = ROOT / "BENCHMARKS.md"
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    start, end = "<!-- BENCH:START -->", "<!-- BENCH:END -->"
    if start in text and end in text:
        text = text.split(start)[0] + f"{start}\n{table}\n{end}" + text.split(end, 1)[1]
    else:
        text += f"\n{start}\n{table}\n{end}\n"
    path.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
