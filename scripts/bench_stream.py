"""Streaming half of `make bench` (imported by bench.py; standard library only).

An asyncio upstream streams SSE chunks at a fixed pace, and the client side measures, for the
upstream directly and through bff, in alternating runs: time to first token, the gap between
chunks, how long bff takes to close the upstream request after a client leaves (while the model
thinks before its first byte, and during a paused stream), and bff's memory idle and with many
slow streams open at once. Loopback only.
"""

import asyncio
import json
import os
import statistics
import time

CHUNKS = int(os.environ.get("BENCH_STREAM_CHUNKS", "20"))
PACE_MS = float(os.environ.get("BENCH_STREAM_PACE_MS", "10"))
STREAMS = int(os.environ.get("BENCH_STREAMS", "60"))
OPEN_STREAMS = int(os.environ.get("BENCH_OPEN_STREAMS", "1000"))
EVENT = b'data: {"id":"c","object":"chat.completion.chunk","model":"bench-model","choices":[{"index":0,"delta":{"content":"tick "}}]}\n\n'
USAGE = b'data: {"id":"c","object":"chat.completion.chunk","model":"bench-model","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":20,"total_tokens":25}}\n\n'


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Upstream:
    """SSE chat completions: `pace_ms` between chunks; a prompt "pause" sends one chunk and then
    nothing, and a prompt "think" nothing at all (a model before its first token), each recording
    when the caller closed the request (`closed_at`)."""

    def __init__(self):
        self.closed_at: list = []
        self.thinking = 0  # "think" requests received
        self.active = 0  # streams being sent

    async def handle(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = json.loads(await reader.readexactly(length)) if length else {}
                await self.respond(body, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # an idle keep-alive connection when the measurements end
        finally:
            writer.close()

    async def respond(self, body: dict, reader, writer):
        self.active += 1
        try:
            await self.stream(body, reader, writer)
        finally:
            self.active -= 1

    async def stream(self, body: dict, reader, writer):
        prompt = body.get("messages", [{}])[-1].get("content", "")
        if prompt.startswith("think"):
            self.thinking += 1
            await reader.read()  # no answer yet: only the caller closing ends this
            self.closed_at.append(time.monotonic())
            raise ConnectionError
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        pace = float(prompt.split("pace=")[1]) / 1000 if "pace=" in prompt else PACE_MS / 1000
        if prompt.startswith("pause"):
            writer.write(chunk(EVENT))
            await writer.drain()
            await reader.read()  # nothing more is sent: only the caller closing ends this
            self.closed_at.append(time.monotonic())
            raise ConnectionError
        for _ in range(CHUNKS):
            writer.write(chunk(EVENT))
            await writer.drain()
            await asyncio.sleep(pace)
        writer.write(chunk(USAGE) + chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()


async def send_chat(reader, writer, token: str, prompt: str, keep_alive: bool = False) -> float:
    """Sends a streaming chat on an open connection and reads the response head; returns when
    it was sent."""
    body = json.dumps({"model": "bench-model", "stream": True,
                       "messages": [{"role": "user", "content": prompt}]}).encode()
    auth = f"Authorization: Bearer {token}\r\n".encode() if token else b""
    close = b"" if keep_alive else b"Connection: close\r\n"
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                 + auth + b"Content-Length: %d\r\n" % len(body) + close + b"\r\n" + body)
    sent = time.monotonic()
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(head.decode(errors="replace"))
    return sent


async def open_stream(port: int, token: str, prompt: str):
    """Sends a streaming chat on a new connection; returns (reader, writer, time sent)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sent = await send_chat(reader, writer, token, prompt)
    return reader, writer, sent


async def read_ticks(reader, sent: float) -> tuple:
    """Reads a chunked SSE answer to its last chunk: (time to first chunk, gaps between chunks),
    in microseconds."""
    arrivals = []
    while True:
        line = await reader.readline()
        if not line or line == b"0\r\n":
            break
        if line.startswith(b"data: ") and b"tick" in line:
            arrivals.append(time.monotonic())
    first = (arrivals[0] - sent) * 1e6
    gaps = [(b - a) * 1e6 for a, b in zip(arrivals, arrivals[1:])]
    return first, gaps


async def timed_stream(port: int, token: str) -> tuple:
    """One whole stream on a new connection, as a browser's first request: (time to first
    chunk, gaps between chunks), in microseconds."""
    reader, writer, sent = await open_stream(port, token, "hello")
    result = await read_ticks(reader, sent)
    writer.close()
    return result


async def kept_alive_firsts(ports: dict, token: str) -> dict:
    """Time to first chunk (µs) over one kept-alive connection per target, as Open WebUI's
    connection pool sends them; short fast streams, alternating targets."""
    connections = {name: await asyncio.open_connection("127.0.0.1", port) for name, port in ports.items()}
    firsts = {name: [] for name in ports}
    for _ in range(STREAMS):
        for name, (reader, writer) in connections.items():
            sent = await send_chat(reader, writer, token if name == "bff" else "", "hello pace=1", keep_alive=True)
            first, _ = await read_ticks(reader, sent)
            await reader.readline()  # the blank line that ends the chunked body
            firsts[name].append(first)
    for _, writer in connections.values():
        writer.close()
    return firsts


async def disconnect_delay(port: int, token: str, upstream: Upstream) -> float:
    """Milliseconds from a client leaving a paused stream to the upstream request closing."""
    before = len(upstream.closed_at)
    reader, writer, _ = await open_stream(port, token, "pause")
    while b"tick" not in await reader.readline():
        pass
    writer.close()
    left = time.monotonic()
    deadline = left + 10
    while len(upstream.closed_at) == before and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    return (upstream.closed_at[-1] - left) * 1000 if len(upstream.closed_at) > before else float("inf")


async def first_byte_delay(port: int, token: str, upstream: Upstream, stream: bool) -> float:
    """Milliseconds from a client leaving while the model has not answered yet (the upstream
    holds the request, silent) to the upstream request closing."""
    before, thinking = len(upstream.closed_at), upstream.thinking
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = json.dumps({"model": "bench-model", "stream": stream,
                       "messages": [{"role": "user", "content": "think"}]}).encode()
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                 + f"Authorization: Bearer {token}\r\n".encode()
                 + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    await writer.drain()
    deadline = time.monotonic() + 10
    while upstream.thinking == thinking and time.monotonic() < deadline:
        await asyncio.sleep(0.001)  # until the upstream has the request
    writer.close()
    left = time.monotonic()
    while len(upstream.closed_at) == before and time.monotonic() < left + 10:
        await asyncio.sleep(0.001)
    return (upstream.closed_at[-1] - left) * 1000 if len(upstream.closed_at) > before else float("inf")


def rss_kib(pid: int) -> tuple:
    """(VmRSS, VmHWM) of a process, in KiB."""
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status", encoding="utf-8"))
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def many_open(port: int, token: str, pid: int) -> int:
    """RSS (KiB) of bff while OPEN_STREAMS slow streams are open at once."""
    streams = await asyncio.gather(*(open_stream(port, token, "hello pace=1000") for _ in range(OPEN_STREAMS)))
    for reader, _, _ in streams:  # every stream has started before measuring
        while b"tick" not in await reader.readline():
            pass
    rss, _ = rss_kib(pid)
    for _, writer, _ in streams:
        writer.close()
    return rss


def percentile(values: list, share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def measure(ports: dict, token: str, pid: int, upstream: Upstream) -> dict:
    idle, _ = rss_kib(pid)
    firsts = {name: [] for name in ports}
    gaps = {name: [] for name in ports}
    for _ in range(STREAMS):  # alternating, so drift cancels
        for name, port in ports.items():
            first, between = await timed_stream(port, token if name == "bff" else "")
            firsts[name].append(first)
            gaps[name].extend(between)
    kept = await kept_alive_firsts(ports, token)
    delays = [await disconnect_delay(ports["bff"], token, upstream) for _ in range(10)]
    early = [await first_byte_delay(ports["bff"], token, upstream, stream) for stream in (True, False) * 5]
    loaded = await many_open(ports["bff"], token, pid)
    return {"firsts": firsts, "kept": kept, "gaps": gaps, "delays": delays, "early": early,
            "idle_kib": idle, "loaded_kib": loaded}


def run(ports: dict, token: str, pid: int) -> dict:
    """Serves the upstream on PORTS["direct"] and measures every target, on one event loop."""
    upstream = Upstream()

    async def main():
        server = await asyncio.start_server(upstream.handle, "127.0.0.1", ports["direct"], backlog=4096)
        async with server:
            results = await measure(ports, token, pid, upstream)
            deadline = time.monotonic() + 10  # the slow streams' upstream requests end as bff closes them
            while upstream.active and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return results
    return asyncio.run(main())


def report_lines(results: dict) -> list:
    us = lambda value: f"{value:.0f} µs" if value < 1000 else f"{value / 1000:.2f} ms"
    first, kept, gap = results["firsts"], results["kept"], results["gaps"]
    added = lambda series, name, share: percentile(series[name], share) - percentile(series["direct"], share)
    delays = results["delays"]
    rows = []
    for label, series in (("time to first chunk, new connection", first),
                          ("time to first chunk, kept-alive connection", kept), ("gap between chunks", gap)):
        for name in ("reference proxy", "bff"):
            rows.append(f"| {label}, {name} | {us(percentile(series['direct'], .5))} | {us(percentile(series[name], .5))} "
                        f"| **{us(added(series, name, .5))}** | {us(added(series, name, .99))} |")
    return [
        f"Streaming ({STREAMS} streams per target, alternating; {CHUNKS} chunks {PACE_MS:g} ms apart, each on a new "
        f"connection; then {STREAMS} short streams per target over one kept-alive connection each; "
        "reference proxy: nginx with `proxy_buffering off`):",
        "",
        "| | direct p50 | through it p50 | added p50 | added p99 |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"- Client leaves a paused stream → upstream request closed: median **{statistics.median(delays):.1f} ms**, "
        f"max {max(delays):.1f} ms over {len(delays)} tries (target ≤ 100 ms).",
        f"- Client leaves before the first byte (streaming or not) → upstream request closed: median "
        f"**{statistics.median(results['early']):.1f} ms**, max {max(results['early']):.1f} ms over "
        f"{len(results['early'])} tries (target ≤ 100 ms).",
        f"- bff RSS idle: **{results['idle_kib'] / 1024:.1f} MB**; with {OPEN_STREAMS} slow streams open: "
        f"**{results['loaded_kib'] / 1024:.1f} MB** (targets ≤ 20 MB, ≤ 100 MB).",
    ]
