"""Constant-rate latency for `make bench` (imported by bench.py; standard library only).

Debian's wrk is closed-loop: it sends the next request when the last one answered, so a stall
delays the requests behind it and they are never measured (coordinated omission). Here requests
are due at a fixed rate on one kept-alive connection, and each latency counts from when the
request was due, not from when it could be sent: a 5 ms stall at 1,000 req/s shows as five
late requests, as a user would see them.
"""

import ctypes
import gc
import socket
import time

from bench_stream import percentile

PR_SET_TIMERSLACK = 29


def precise_sleeps() -> None:
    """Linux rounds sleeps up by 50 µs (timer slack); 1 ns makes the schedule hold to ~10 µs."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def read_response(sock: socket.socket, pending: bytes) -> tuple:
    """One HTTP/1.1 response with a Content-Length body; returns (status, bytes after it)."""
    while b"\r\n\r\n" not in pending:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the target closed the connection")
        pending += data
    head, rest = pending.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in lines[1:]
                   if line.lower().startswith(b"content-length:")), None)
    if length is None:
        raise ValueError(f"no content-length in {lines[0]!r}")
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("the target closed the connection mid-body")
        rest += data
    return int(lines[0].split()[1]), rest[length:]


def request_bytes(port: int, path: str, body: bytes, token: str) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"{auth}Content-Length: {len(body)}\r\n\r\n").encode() + body


def run(port: int, path: str, body: bytes, token: str, rate: float, seconds: float) -> dict:
    """RATE requests a second for SECONDS; latencies (µs) from each request's due time."""
    precise_sleeps()
    request = request_bytes(port, path, body, token)
    count = int(rate * seconds)
    latencies = [0.0] * count
    errors, pending = 0, b""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        gc.disable()  # a collector pause here would be charged to the target
        try:
            start = time.perf_counter() + 0.01
            for index in range(count):
                due = start + index / rate
                wait = due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                sock.sendall(request)
                status, pending = read_response(sock, pending)
                latencies[index] = (time.perf_counter() - due) * 1e6
                errors += status != 200
        finally:
            gc.enable()
    return summary(latencies, errors)


def summary(latencies: list, errors: int) -> dict:
    at = lambda share: percentile(latencies, share)
    return {"p50": at(0.50), "p99": at(0.99), "p999": at(0.999), "max": max(latencies),
            "requests": len(latencies), "errors": errors}
