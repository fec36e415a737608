//! OpenAI chat wire types.
//!
//! The fields bff reads are typed; every other field lands in `extra` (a JSON object that keeps
//! insertion order) and is written back untouched, so tools, `response_format`, `logprobs` and
//! vendor fields pass through in both directions. Fields that may be `null` on the wire and that
//! bff types keep the difference between `null` and absent.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Deserializes a present field, even `null`, as `Some`, so absent and `null` stay distinct.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

/// A chat completion request (`POST /v1/chat/completions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// Model (a LiteLLM model group name).
    pub model: String,
    /// The conversation.
    pub messages: Vec<ChatMessage>,
    /// Whether the answer is streamed as SSE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options (`include_usage`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// End-user id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The caller's metadata; the client replaces it with bff's own and keeps the caller's only
    /// under `metadata.client_metadata`. Never forwarded to the model provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// Every other field, untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// A request for `model` with `messages`, nothing else set.
    pub fn new(model: impl Into<String>, messages: Vec<ChatMessage>) -> Self {
        Self {
            model: model.into(),
            messages,
            stream: None,
            stream_options: None,
            user: None,
            metadata: None,
            extra: Map::new(),
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Ask for a final usage chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Every other option, untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One message of a conversation (request) or a choice's message (response).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, …
    pub role: String,
    /// A string, an array of content parts, or `null` (e.g. with tool calls).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub content: Option<Value>,
    /// Every other field (`name`, `tool_calls`, `tool_call_id`, …), untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatMessage {
    /// A message of `role` whose content is `text`.
    pub fn new(role: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: Some(Value::String(text.into())),
            extra: Map::new(),
        }
    }

    /// The text of `content`: the string itself, or the `text` parts joined.
    pub fn text(&self) -> Option<String> {
        match self.content.as_ref()? {
            Value::String(text) => Some(text.clone()),
            Value::Array(parts) => Some(
                parts
                    .iter()
                    .filter_map(|part| part.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(""),
            ),
            _ => None,
        }
    }
}

/// A non-streaming chat completion response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Completion id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The model that answered (LiteLLM echoes the model group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The choices.
    #[serde(default)]
    pub choices: Vec<Choice>,
    /// Token usage (and LiteLLM's `cost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Every other field, untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatResponse {
    /// The first choice's message text, if any.
    pub fn output_text(&self) -> Option<String> {
        self.choices.first()?.message.as_ref()?.text()
    }

    /// The first choice's finish reason, if any.
    pub fn finish_reason(&self) -> Option<&str> {
        self.choices.first()?.finish_reason.as_deref()
    }
}

/// One choice of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Position.
    #[serde(default)]
    pub index: u32,
    /// The message (non-streaming).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<ChatMessage>,
    /// Why generation stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Every other field (`logprobs`, `provider_specific_fields`, …), untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Token usage. LiteLLM adds `cost` (USD) on streams.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Input tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<u64>,
    /// Output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens: Option<u64>,
    /// Total tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_tokens: Option<u64>,
    /// Cost in USD, when LiteLLM reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Every other field (`prompt_tokens_details`, `completion_tokens_details`, …), untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One streamed chunk (`chat.completion.chunk`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    /// Completion id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The choice deltas.
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    /// Usage, on the final usage chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Every other field, untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatChunk {
    /// A chunk that only carries usage: OpenAI sends `choices: []`, LiteLLM
    /// `choices: [{"index":0,"delta":{}}]`.
    pub fn is_usage_only(&self) -> bool {
        self.usage.is_some()
            && self.choices.iter().all(|choice| {
                choice.finish_reason.is_none()
                    && choice.delta.as_ref().is_none_or(|delta| {
                        delta.as_object().is_none_or(|fields| {
                            fields.values().all(|value| match value {
                                Value::Null => true,
                                Value::String(text) => text.is_empty(),
                                _ => false,
                            })
                        })
                    })
            })
    }
}

/// One choice of a streamed chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Position.
    #[serde(default)]
    pub index: u32,
    /// What this chunk adds (`content`, `role`, `tool_calls`, …), kept as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<Value>,
    /// Why generation stopped, on the last content chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    /// Every other field, untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChunkChoice {
    /// The text this delta adds, if any.
    pub fn content(&self) -> Option<&str> {
        self.delta.as_ref()?.get("content")?.as_str()
    }

    /// Whether the delta carries output (text or tool calls): the "first token" signal.
    pub fn has_output(&self) -> bool {
        self.content().is_some_and(|text| !text.is_empty())
            || self
                .delta
                .as_ref()
                .and_then(|delta| delta.get("tool_calls"))
                .is_some_and(|calls| !calls.is_null())
    }
}

/// `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelList {
    /// The models.
    pub data: Vec<Model>,
    /// Every other field (`object`), untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One model of [`ModelList`]; `id` is the LiteLLM model group name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    /// Model id.
    pub id: String,
    /// Every other field (`object`, `created`, `owned_by`, `max_input_tokens`, …), untouched.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_keeps_unknown_fields_in_order_and_null_content() {
        let text = r#"{"model":"fake-gpt","messages":[{"role":"system","content":"be brief"},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c1","content":"42"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"response_format":{"type":"json_object"},"logprobs":true,"top_logprobs":2,"x_vendor":{"a":1},"temperature":0.2}"#;
        let request: ChatRequest = serde_json::from_str(text).unwrap();
        assert_eq!(request.messages[1].content, Some(Value::Null));
        assert_eq!(request.messages[0].content, Some(json!("be brief")));
        let keys: Vec<&str> = request.extra.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "tools",
                "response_format",
                "logprobs",
                "top_logprobs",
                "x_vendor",
                "temperature"
            ]
        );
        let back = serde_json::to_string(&request).unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&back).unwrap(),
            serde_json::from_str::<Value>(text).unwrap()
        );
        // Unknown fields keep their relative order (typed ones are written first).
        let positions: Vec<usize> = keys
            .iter()
            .map(|key| back.find(&format!("\"{key}\"")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{back}");
    }

    #[test]
    fn usage_only_chunks_in_both_shapes() {
        let litellm: ChatChunk = serde_json::from_value(
            json!({"choices":[{"index":0,"delta":{}}],"usage":{"total_tokens":3}}),
        )
        .unwrap();
        let openai: ChatChunk =
            serde_json::from_value(json!({"choices":[],"usage":{"total_tokens":3}})).unwrap();
        let last: ChatChunk = serde_json::from_value(json!({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"total_tokens":3}})).unwrap();
        let content: ChatChunk =
            serde_json::from_value(json!({"choices":[{"index":0,"delta":{"content":"hi"}}]}))
                .unwrap();
        assert!(litellm.is_usage_only());
        assert!(openai.is_usage_only());
        assert!(!last.is_usage_only());
        assert!(!content.is_usage_only());
    }

    #[test]
    fn message_text_from_string_or_parts() {
        let parts: ChatMessage = serde_json::from_value(json!({"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"x"}},{"type":"text","text":"b"}]})).unwrap();
        assert_eq!(parts.text().as_deref(), Some("ab"));
        let plain: ChatMessage =
            serde_json::from_value(json!({"role":"user","content":"hi"})).unwrap();
        assert_eq!(plain.text().as_deref(), Some("hi"));
    }
}
