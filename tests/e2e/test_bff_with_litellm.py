"""The real bff binary against the real LiteLLM 1.108.7 proxy (mock_response models)."""

import json
import uuid

import httpx
import openai
import pytest
from wire import MOCK_ANSWER, chat, content_of, sse_events


def test_ready_when_litellm_answers(bff):
    response = httpx.get(f"{bff.url}/ready", timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"


def test_an_openai_compatible_server_is_a_model_when_its_address_is_set(bff):
    """config/litellm.yaml's `vllm` entry, here pointed at an OpenAI-compatible server (LiteLLM)."""
    models = httpx.get(f"{bff.url}/v1/models", headers=bff.headers, timeout=30).json()
    assert "vllm" in [model["id"] for model in models["data"]]
    response = httpx.post(f"{bff.url}/v1/chat/completions", headers=bff.headers, json=chat("vllm"), timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == MOCK_ANSWER


def test_non_streaming_chat_and_litellm_adopts_bffs_request_id(bff):
    client_id = f"e2e-{uuid.uuid4()}"
    response = httpx.post(
        f"{bff.url}/v1/chat/completions",
        headers={**bff.headers, "X-Request-Id": client_id},
        json=chat(),
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"] == MOCK_ANSWER
    assert body["usage"]["total_tokens"] > 0
    # bff mints the id LiteLLM and the sinks key on; a caller's id is only an attribute.
    request_id = response.headers["x-request-id"]
    assert request_id != client_id
    assert uuid.UUID(request_id).version == 7
    assert response.headers["x-litellm-call-id"] == request_id


@pytest.mark.parametrize(
    "field, value",
    [
        ("fallbacks", ["no-such-model"]),
        ("num_retries", 10),
        ("api_base", "http://127.0.0.1:9"),
        ("mock_response", "free"),
        ("metadata", {"tags": ["x"]}),
    ],
)
def test_litellm_controls_in_the_body_are_refused(bff, field, value):
    response = httpx.post(
        f"{bff.url}/v1/chat/completions", headers=bff.headers, json=chat(**{field: value}), timeout=60
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == field


def test_a_wrong_content_type_is_refused_at_once(bff):
    response = httpx.post(
        f"{bff.url}/v1/chat/completions",
        headers={**bff.headers, "Content-Type": "text/plain"},
        content=json.dumps(chat()),
        timeout=10,
    )
    assert response.status_code == 415, response.text


def test_a_wrong_type_is_a_400_not_a_502(bff):
    response = httpx.post(
        f"{bff.url}/v1/chat/completions",
        headers=bff.headers,
        json={"model": "mock-gpt", "messages": [{"role": "user", "content": 5}]},
        timeout=10,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "messages[0].content"


def test_what_open_webui_sends_passes_unchanged(bff):
    """Open WebUI 0.12.4's body for a chat with the parameters its chat settings set."""
    body = chat(
        stream=True,
        temperature=0.7,
        top_p=0.9,
        min_p=0.05,
        max_tokens=256,
        frequency_penalty=0.1,
        presence_penalty=0.1,
        seed=42,
        stop=["###"],
        reasoning_effort="low",
    )
    response = httpx.post(f"{bff.url}/v1/chat/completions", headers=bff.headers, json=body, timeout=60)
    assert response.status_code == 200, response.text
    assert content_of(sse_events(response)) == MOCK_ANSWER


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

    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
    completion = client.chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": "Hello"}],
        tools=tools,
        tool_choice="auto",
        response_format={"type": "json_object"},
        metadata={"purpose": "e2e"},
        max_completion_tokens=64,
    )
    assert completion.choices[0].message.content == MOCK_ANSWER

    stream = client.chat.completions.create(
        model="mock-gpt",
        messages=[{"role": "user", "content": "Hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert [chunk.usage for chunk in chunks if chunk.usage][0].total_tokens > 0

    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "Hello"}], extra_body={"fallbacks": ["x"]}
        )
