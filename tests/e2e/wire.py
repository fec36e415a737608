"""What the e2e suites send and read: chat bodies and SSE events."""

import json

import httpx

MOCK_ANSWER = "Hello from LiteLLM mock_response"


def chat(model: str = "mock-gpt", **extra) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "Hello"}], **extra}


def sse_events(response: httpx.Response) -> list:
    """The `data:` payloads of an SSE body, `[DONE]` included."""
    return [line[len("data: "):] for line in response.text.splitlines() if line.startswith("data: ")]


def content_of(events: list) -> str:
    text = ""
    for event in events:
        if event == "[DONE]":
            continue
        for choice in json.loads(event).get("choices", []):
            text += (choice.get("delta") or {}).get("content") or ""
    return text
