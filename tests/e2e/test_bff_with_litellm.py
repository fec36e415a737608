"""The real bff binary against the real LiteLLM 1.108.7 proxy (mock_response models)."""

import json
import uuid

import httpx
import openai
import pytest

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


def test_ready_when_litellm_answers(bff):
    response = httpx.get(f"{bff.url}/ready", timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"


def test_non_streaming_chat_and_litellm_adopts_the_request_id(bff):
    request_id = f"e2e-{uuid.uuid4()}"
    response = httpx.post(
        f"{bff.url}/v1/chat/completions",
        headers={**bff.headers, "X-Request-Id": request_id},
        json=chat(),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"] == MOCK_ANSWER
    assert body["usage"]["total_tokens"] > 0
    assert response.headers["x-request-id"] == request_id
    assert response.headers["x-litellm-call-id"] == request_id


@pytest.mark.parametrize("route", ["/v1/chat/completions", "/chat/stream"])
def test_streaming_chat_without_usage_requested(bff, route):
    response = httpx.post(f"{bff.url}{route}", headers=bff.headers, json=chat(stream=True), timeout=60)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    assert content_of(events) == MOCK_ANSWER
    assert not [event for event in events[:-1] if json.loads(event).get("usage")], events


def test_streaming_chat_with_usage_requested(bff):
    response = httpx.post(
        f"{bff.url}/v1/chat/completions",
        headers=bff.headers,
        json=chat(stream=True, stream_options={"include_usage": True}),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    events = sse_events(response)
    usage = [json.loads(e)["usage"] for e in events[:-1] if json.loads(e).get("usage")]
    assert len(usage) == 1 and usage[0]["total_tokens"] > 0, events
    assert content_of(events) == MOCK_ANSWER


def test_unknown_model_is_a_404_in_openai_shape(bff):
    response = httpx.post(f"{bff.url}/v1/chat/completions", headers=bff.headers, json=chat("no-such-model"), timeout=60)
    assert response.status_code == 404, response.text
    error = response.json()["error"]
    assert error["code"] == "model_not_found"
    assert "no-such-model" in error["message"]
    assert error["request_id"] == response.headers["x-request-id"]


def test_models_lists_the_development_models(bff):
    response = httpx.get(f"{bff.url}/v1/models", headers=bff.headers, timeout=30)
    assert response.status_code == 200, response.text
    ids = [model["id"] for model in response.json()["data"]]
    assert "mock-gpt" in ids


def test_litellm_unreachable_makes_ready_and_chat_503(bff_without_litellm):
    ready = httpx.get(f"{bff_without_litellm.url}/ready", timeout=30)
    assert ready.status_code == 503
    assert ready.json()["down"] == ["litellm"]
    response = httpx.post(
        f"{bff_without_litellm.url}/v1/chat/completions", headers=bff_without_litellm.headers, json=chat(), timeout=60
    )
    assert response.status_code == 503, response.text
    assert response.json()["error"]["code"] == "upstream_unavailable"


def test_the_official_openai_client_works_unchanged(bff):
    client = openai.OpenAI(
        base_url=f"{bff.url}/v1",
        api_key=bff.service_key,
        default_headers={"X-OpenWebUI-User-Jwt": bff.user_jwt},
        max_retries=0,
    )
    completion = client.chat.completions.create(model="mock-gpt", messages=[{"role": "user", "content": "Hello"}])
    assert completion.choices[0].message.content == MOCK_ANSWER

    stream = client.chat.completions.create(
        model="mock-gpt", messages=[{"role": "user", "content": "Hello"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == MOCK_ANSWER

    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "Hello"}])
