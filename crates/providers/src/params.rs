//! What a chat request may carry: the OpenAI chat-completions parameters, each with the type
//! OpenAI documents, and the models a request can reach.
//!
//! LiteLLM treats many body fields as its own controls (`fallbacks`, `num_retries`, `api_base`,
//! `mock_response`, `metadata.tags`, …). A service that forwards requests on behalf of others
//! should therefore pass only [`chat_parameters`] and refuse the rest unless its policy opts in
//! ([`validate_chat_body`] reports them as [`ChatBody::extra_parameters`]).

use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// Body fields no policy may allow: they let a caller choose the credentials, endpoint or
/// deployments LiteLLM uses.
pub const NEVER_ALLOWED_PARAMS: [&str; 9] = [
    "api_key",
    "api_base",
    "base_url",
    "api_version",
    "model_list",
    "litellm_params",
    "user_config",
    "extra_headers",
    "organization",
];

/// Longest model name accepted, in bytes. Model names become labels and report rows, so a
/// longer one is refused before anything else looks at it.
pub const MAX_MODEL_NAME_BYTES: usize = 256;

/// Body fields beyond the OpenAI parameters that a caller may send: LiteLLM controls an
/// operator opted into (`num_retries`, `fallbacks`, …). Never one of [`NEVER_ALLOWED_PARAMS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParameterAllowList(BTreeSet<String>);

/// A field that no allow-list may hold ([`NEVER_ALLOWED_PARAMS`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` cannot be allowed: it lets a caller choose LiteLLM's credentials, endpoint or deployments"
)]
pub struct ForbiddenParameter(pub String);

/// A body field that is neither an OpenAI parameter nor allowed for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unsupported parameter `{0}`: only the OpenAI chat-completions parameters are forwarded (an operator can allow more with `allow_params`)"
)]
pub struct UnsupportedParameter(pub String);

impl ParameterAllowList {
    /// An allow-list of `names`, refusing any of [`NEVER_ALLOWED_PARAMS`].
    pub fn new<S: Into<String>>(
        names: impl IntoIterator<Item = S>,
    ) -> Result<Self, ForbiddenParameter> {
        let mut allowed = BTreeSet::new();
        for name in names {
            let name = name.into();
            if NEVER_ALLOWED_PARAMS.contains(&name.as_str()) {
                return Err(ForbiddenParameter(name));
            }
            allowed.insert(name);
        }
        Ok(Self(allowed))
    }

    /// Adds what `other` allows.
    pub fn extend(&mut self, other: &Self) {
        self.0.extend(other.0.iter().cloned());
    }

    /// `Ok` if every one of `extra_parameters` is allowed, else the first that is not.
    pub fn check(&self, extra_parameters: &[String]) -> Result<(), UnsupportedParameter> {
        match extra_parameters.iter().find(|name| !self.0.contains(*name)) {
            Some(name) => Err(UnsupportedParameter(name.clone())),
            None => Ok(()),
        }
    }
}

/// How one OpenAI parameter is checked. `null` is accepted for every optional parameter.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Check {
    /// A non-empty string.
    Text,
    /// `true` / `false`.
    Bool,
    /// A number within `[min, max]`.
    Number(f64, f64),
    /// An integer within `[min, max]`.
    Integer(i64, i64),
    /// A JSON object.
    Object,
    /// An array of JSON objects.
    Objects,
    /// An array of strings.
    Strings,
    /// A string or a JSON object.
    TextOrObject,
    /// A string or an array of at most 4 strings.
    Stop,
    /// The conversation.
    Messages,
    /// `stream_options`: `include_usage`, `include_obfuscation` booleans.
    StreamOptions,
    /// OpenAI's metadata: at most 16 string pairs, keys ≤ 64 and values ≤ 512 characters.
    Metadata,
}

/// Largest token limit accepted (no model comes near it; it only stops nonsense).
const MAX_TOKEN_LIMIT: i64 = 10_000_000;

/// The OpenAI chat-completions request parameters (reference checked 2026-11), with their
/// checks: the one list of what a caller may send without an operator opting in.
const PARAMETERS: [(&str, Check); 36] = [
    ("model", Check::Text),
    ("messages", Check::Messages),
    ("stream", Check::Bool),
    ("stream_options", Check::StreamOptions),
    ("temperature", Check::Number(0.0, 2.0)),
    ("top_p", Check::Number(0.0, 1.0)),
    ("n", Check::Integer(1, 128)),
    ("stop", Check::Stop),
    ("max_tokens", Check::Integer(1, MAX_TOKEN_LIMIT)),
    ("max_completion_tokens", Check::Integer(1, MAX_TOKEN_LIMIT)),
    ("presence_penalty", Check::Number(-2.0, 2.0)),
    ("frequency_penalty", Check::Number(-2.0, 2.0)),
    ("logit_bias", Check::Object),
    ("logprobs", Check::Bool),
    ("top_logprobs", Check::Integer(0, 20)),
    ("seed", Check::Integer(i64::MIN, i64::MAX)),
    ("response_format", Check::Object),
    ("tools", Check::Objects),
    ("tool_choice", Check::TextOrObject),
    ("parallel_tool_calls", Check::Bool),
    ("user", Check::Text),
    ("modalities", Check::Strings),
    ("audio", Check::Object),
    ("reasoning_effort", Check::Text),
    ("prediction", Check::Object),
    ("service_tier", Check::Text),
    ("store", Check::Bool),
    ("metadata", Check::Metadata),
    ("verbosity", Check::Text),
    ("web_search_options", Check::Object),
    ("prompt_cache_key", Check::Text),
    ("safety_identifier", Check::Text),
    // Deprecated by OpenAI but still sent by older clients.
    ("functions", Check::Objects),
    ("function_call", Check::TextOrObject),
    // Not OpenAI's, but sampling parameters Open WebUI's chat settings send; LiteLLM passes
    // them to the model and does not act on them itself.
    ("min_p", Check::Number(0.0, 1.0)),
    ("top_k", Check::Integer(0, 100_000)),
];

/// The names of the chat parameters a caller may send without an operator opting in: the
/// OpenAI chat-completions parameters (and two sampling parameters Open WebUI sends).
pub fn chat_parameters() -> impl Iterator<Item = &'static str> {
    PARAMETERS.iter().map(|(name, _)| *name)
}

/// Message roles OpenAI accepts.
const MESSAGE_ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

/// Parameters that name models a request can be routed to, besides `model`.
const MODEL_ROUTING_PARAMETERS: [&str; 2] = ["fallbacks", "context_window_fallback_dict"];

/// A request body that breaks a documented type; names the parameter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{param}`: {message}")]
pub struct InvalidParameter {
    /// The parameter (`messages[2].role` for nested ones).
    pub param: String,
    /// What is wrong, in words.
    pub message: String,
}

impl InvalidParameter {
    fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            param: param.into(),
            message: message.into(),
        }
    }
}

/// A chat body that passed [`validate_chat_body`].
#[derive(Debug, Clone, PartialEq)]
pub struct ChatBody {
    /// The body's top-level fields, OpenAI parameters type-checked.
    pub fields: Map<String, Value>,
    /// Top-level fields that are not OpenAI parameters, in body order: refuse them unless a
    /// policy allows them.
    pub extra_parameters: Vec<String>,
}

/// Type-checks every OpenAI parameter of a chat body and lists the fields that are not OpenAI
/// parameters. The checks follow OpenAI's reference: message roles and content shapes, ranges
/// of sampling parameters, positive token limits.
pub fn validate_chat_body(fields: Map<String, Value>) -> Result<ChatBody, InvalidParameter> {
    if let Some(model) = fields.get("model").and_then(Value::as_str) {
        check_model_name("model", model)?;
    }
    for required in ["model", "messages"] {
        if !fields.contains_key(required) {
            return Err(InvalidParameter::new(required, "is required"));
        }
    }
    let mut extra_parameters = Vec::new();
    for (name, value) in &fields {
        match PARAMETERS.iter().find(|(known, _)| known == name) {
            Some((_, check)) => check_value(name, *check, value)?,
            None => extra_parameters.push(name.clone()),
        }
    }
    Ok(ChatBody {
        fields,
        extra_parameters,
    })
}

fn check_value(name: &str, check: Check, value: &Value) -> Result<(), InvalidParameter> {
    let optional = !matches!(check, Check::Messages) && name != "model";
    if value.is_null() && optional {
        return Ok(());
    }
    let fail = |expected: &str| Err(InvalidParameter::new(name, format!("must be {expected}")));
    match check {
        Check::Text => match value.as_str() {
            Some(text) if !text.trim().is_empty() => Ok(()),
            _ => fail("a non-empty string"),
        },
        Check::Bool if value.is_boolean() => Ok(()),
        Check::Bool => fail("true or false"),
        Check::Number(min, max) => match value.as_f64() {
            Some(number) if (min..=max).contains(&number) => Ok(()),
            _ => fail(&format!("a number from {min} to {max}")),
        },
        Check::Integer(min, max) => match value.as_i64() {
            Some(number) if (min..=max).contains(&number) => Ok(()),
            _ if min == i64::MIN => fail("an integer"),
            _ => fail(&format!("an integer from {min} to {max}")),
        },
        Check::Object if value.is_object() => Ok(()),
        Check::Object => fail("a JSON object"),
        Check::Objects => match value.as_array() {
            Some(items) if items.iter().all(Value::is_object) => Ok(()),
            _ => fail("an array of JSON objects"),
        },
        Check::Strings => match value.as_array() {
            Some(items) if items.iter().all(Value::is_string) => Ok(()),
            _ => fail("an array of strings"),
        },
        Check::TextOrObject if value.is_string() || value.is_object() => Ok(()),
        Check::TextOrObject => fail("a string or a JSON object"),
        Check::Stop => check_stop(value),
        Check::Messages => check_messages(value),
        Check::StreamOptions => check_stream_options(value),
        Check::Metadata => check_metadata(value),
    }
}

fn check_stop(value: &Value) -> Result<(), InvalidParameter> {
    let valid = match value {
        Value::String(_) => true,
        Value::Array(items) => items.len() <= 4 && items.iter().all(Value::is_string),
        _ => false,
    };
    valid
        .then_some(())
        .ok_or_else(|| InvalidParameter::new("stop", "must be a string or up to 4 strings"))
}

fn check_stream_options(value: &Value) -> Result<(), InvalidParameter> {
    let Some(options) = value.as_object() else {
        return Err(InvalidParameter::new(
            "stream_options",
            "must be a JSON object",
        ));
    };
    for (key, option) in options {
        let param = format!("stream_options.{key}");
        if !matches!(key.as_str(), "include_usage" | "include_obfuscation") {
            return Err(InvalidParameter::new(param, "is not a stream option"));
        }
        if !option.is_boolean() && !option.is_null() {
            return Err(InvalidParameter::new(param, "must be true or false"));
        }
    }
    Ok(())
}

fn check_metadata(value: &Value) -> Result<(), InvalidParameter> {
    let invalid = || {
        InvalidParameter::new(
            "metadata",
            "must be an object of at most 16 string values (keys up to 64 characters, values up to 512)",
        )
    };
    let pairs = value.as_object().ok_or_else(invalid)?;
    let valid = pairs.len() <= 16
        && pairs.iter().all(|(key, value)| {
            key.chars().count() <= 64 && value.as_str().is_some_and(|v| v.chars().count() <= 512)
        });
    valid.then_some(()).ok_or_else(invalid)
}

fn check_messages(value: &Value) -> Result<(), InvalidParameter> {
    let messages = match value.as_array() {
        Some(messages) if !messages.is_empty() => messages,
        _ => {
            return Err(InvalidParameter::new(
                "messages",
                "must be a non-empty array of messages",
            ));
        }
    };
    for (index, message) in messages.iter().enumerate() {
        check_message(index, message)?;
    }
    Ok(())
}

fn check_message(index: usize, message: &Value) -> Result<(), InvalidParameter> {
    let at = |field: &str| format!("messages[{index}]{field}");
    let Some(fields) = message.as_object() else {
        return Err(InvalidParameter::new(at(""), "must be a JSON object"));
    };
    match fields.get("role").and_then(Value::as_str) {
        Some(role) if MESSAGE_ROLES.contains(&role) => {}
        _ => {
            return Err(InvalidParameter::new(
                at(".role"),
                format!("must be one of {}", MESSAGE_ROLES.join(", ")),
            ));
        }
    }
    let content_ok = match fields.get("content") {
        None | Some(Value::Null | Value::String(_)) => true,
        Some(Value::Array(parts)) => parts.iter().all(|part| {
            part.as_object()
                .and_then(|part| part.get("type"))
                .is_some_and(Value::is_string)
        }),
        Some(_) => false,
    };
    if !content_ok {
        return Err(InvalidParameter::new(
            at(".content"),
            "must be a string, an array of content parts (objects with a `type`), or null",
        ));
    }
    Ok(())
}

fn check_model_name(param: &str, model: &str) -> Result<(), InvalidParameter> {
    if model.len() > MAX_MODEL_NAME_BYTES {
        return Err(InvalidParameter::new(
            param,
            format!(
                "is a model name of {} bytes; model names are at most {MAX_MODEL_NAME_BYTES}",
                model.len()
            ),
        ));
    }
    Ok(())
}

/// Every model a request can be answered by: `model`, and the models named by LiteLLM's
/// routing parameters (`fallbacks` in its list, dict and object forms,
/// `context_window_fallback_dict`). A routing parameter in a form this does not understand
/// is an error, so no model can hide in it.
pub fn reachable_models(fields: &Map<String, Value>) -> Result<Vec<&str>, InvalidParameter> {
    let mut models: Vec<&str> = fields
        .get("model")
        .and_then(Value::as_str)
        .into_iter()
        .collect();
    for name in MODEL_ROUTING_PARAMETERS {
        let Some(value) = fields.get(name) else {
            continue;
        };
        let before = models.len();
        let understood = match value {
            Value::Null => true,
            Value::Array(entries) => entries
                .iter()
                .all(|entry| collect_fallback(entry, &mut models)),
            Value::Object(_) => collect_fallback(value, &mut models),
            _ => false,
        };
        if !understood || (models.len() == before && !value.is_null() && !is_empty(value)) {
            return Err(InvalidParameter::new(
                name,
                "must name models as strings: a list of model names, or objects mapping a model to a list of models",
            ));
        }
        for model in models.get(before..).unwrap_or_default() {
            check_model_name(name, model)?;
        }
    }
    Ok(models)
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    }
}

/// One fallback entry: `"B"`, `{"A": ["B", "C"]}`, `{"A": "B"}` or `{"model": "B", …}`.
fn collect_fallback<'a>(entry: &'a Value, models: &mut Vec<&'a str>) -> bool {
    match entry {
        Value::String(model) => {
            models.push(model);
            true
        }
        Value::Object(fields) => match fields.get("model") {
            Some(Value::String(model)) => {
                models.push(model);
                true
            }
            Some(_) => false,
            None => fields.iter().all(|(from, to)| {
                models.push(from);
                match to {
                    Value::String(model) => {
                        models.push(model);
                        true
                    }
                    Value::Array(targets) => targets.iter().all(|target| match target {
                        Value::String(model) => {
                            models.push(model);
                            true
                        }
                        _ => false,
                    }),
                    _ => false,
                }
            }),
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(fields) => fields,
            _ => unreachable!("tests pass objects"),
        }
    }

    fn base() -> Value {
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    }

    fn with(field: &str, value: Value) -> Map<String, Value> {
        let mut fields = body(base());
        fields.insert(field.into(), value);
        fields
    }

    #[test]
    fn the_openai_sdk_shapes_pass_and_unknown_fields_are_listed() {
        let request = body(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "c", "content": "42"}
            ],
            "stream": true, "stream_options": {"include_usage": true}, "temperature": 0.2,
            "top_p": 1, "n": 1, "stop": ["\n"], "max_tokens": 5, "seed": -3,
            "response_format": {"type": "json_object"}, "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "auto", "parallel_tool_calls": false, "user": "u", "metadata": {"k": "v"},
            "reasoning_effort": "low", "fallbacks": ["x"], "num_retries": 3
        }));
        let checked = validate_chat_body(request).unwrap();
        assert_eq!(checked.extra_parameters, ["fallbacks", "num_retries"]);
    }

    #[test]
    fn wrong_types_name_the_parameter() {
        let cases = [
            (
                "messages",
                json!([{"role": "user", "content": 5}]),
                "messages[0].content",
            ),
            (
                "messages",
                json!([{"role": "wizard", "content": "x"}]),
                "messages[0].role",
            ),
            ("messages", json!([]), "messages"),
            (
                "messages",
                json!([{"role": "user", "content": [{"text": "no type"}]}]),
                "messages[0].content",
            ),
            ("temperature", json!(3), "temperature"),
            ("temperature", json!("hot"), "temperature"),
            ("max_tokens", json!(0), "max_tokens"),
            ("max_completion_tokens", json!(-1), "max_completion_tokens"),
            ("n", json!(1000), "n"),
            ("stream", json!("yes"), "stream"),
            ("stop", json!(["a", "b", "c", "d", "e"]), "stop"),
            (
                "stream_options",
                json!({"include_usage": "yes"}),
                "stream_options.include_usage",
            ),
            (
                "stream_options",
                json!({"mystery": true}),
                "stream_options.mystery",
            ),
            ("metadata", json!({"tags": ["routing"]}), "metadata"),
            ("tools", json!("all"), "tools"),
            ("model", json!(""), "model"),
            ("model", json!(null), "model"),
        ];
        for (field, value, param) in cases {
            let error = validate_chat_body(with(field, value.clone())).unwrap_err();
            assert_eq!(error.param, param, "{field} = {value}");
        }
        let missing = validate_chat_body(body(json!({"model": "m"}))).unwrap_err();
        assert_eq!(missing.param, "messages");
    }

    #[test]
    fn null_is_accepted_for_optional_parameters() {
        let checked = validate_chat_body(with("temperature", Value::Null)).unwrap();
        assert!(checked.extra_parameters.is_empty());
    }

    #[test]
    fn every_fallback_form_reveals_its_models() {
        let cases = [
            (json!(["b", "c"]), vec!["m", "b", "c"]),
            (json!([{"m": ["b"]}]), vec!["m", "m", "b"]),
            (json!([{"m": "b"}]), vec!["m", "m", "b"]),
            (json!({"m": ["b"]}), vec!["m", "m", "b"]),
            (
                json!([{"model": "b", "messages": [{"role": "user", "content": "x"}]}]),
                vec!["m", "b"],
            ),
        ];
        for (fallbacks, expected) in cases {
            let fields = with("fallbacks", fallbacks.clone());
            assert_eq!(reachable_models(&fields).unwrap(), expected, "{fallbacks}");
        }
        let window = with("context_window_fallback_dict", json!({"m": "big"}));
        assert_eq!(reachable_models(&window).unwrap(), ["m", "m", "big"]);
        for hidden in [
            json!([1]),
            json!("b"),
            json!([{"m": {"deep": "b"}}]),
            json!([{"model": 7}]),
        ] {
            let error = reachable_models(&with("fallbacks", hidden.clone())).unwrap_err();
            assert_eq!(error.param, "fallbacks", "{hidden}");
        }
    }

    #[test]
    fn the_list_holds_openais_parameters_and_no_litellm_controls() {
        let names: Vec<&str> = chat_parameters().collect();
        assert!(names.contains(&"max_completion_tokens") && names.contains(&"tools"));
        for control in [
            "fallbacks",
            "num_retries",
            "api_base",
            "mock_response",
            "timeout",
        ] {
            assert!(!names.contains(&control), "{control}");
        }
    }
}

#[cfg(test)]
mod allow_list_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn credential_fields_cannot_be_allowed_and_others_must_be() {
        assert_eq!(
            ParameterAllowList::new(["num_retries", "api_base"]),
            Err(ForbiddenParameter("api_base".into()))
        );
        let mut allowed = ParameterAllowList::new(["num_retries"]).unwrap();
        assert!(allowed.check(&["num_retries".into()]).is_ok());
        assert_eq!(
            allowed.check(&["fallbacks".into()]),
            Err(UnsupportedParameter("fallbacks".into()))
        );
        allowed.extend(&ParameterAllowList::new(["fallbacks"]).unwrap());
        assert!(
            allowed
                .check(&["fallbacks".into(), "num_retries".into()])
                .is_ok()
        );
    }

    #[test]
    fn a_model_name_past_the_limit_is_refused_before_anything_else() {
        let long = "m".repeat(MAX_MODEL_NAME_BYTES + 1);
        // Even with other problems in the body, the model name is what is reported.
        let fields = json!({"model": long, "temperature": 9})
            .as_object()
            .unwrap()
            .clone();
        let error = validate_chat_body(fields).unwrap_err();
        assert_eq!(error.param, "model");
        assert!(error.message.contains("at most 256"), "{error}");
        let fields = json!({"model": "a", "fallbacks": ["b", long]})
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(reachable_models(&fields).unwrap_err().param, "fallbacks");
        let ok = "m".repeat(MAX_MODEL_NAME_BYTES);
        let fields = json!({"model": ok, "messages": [{"role": "user", "content": "hi"}]});
        assert!(validate_chat_body(fields.as_object().unwrap().clone()).is_ok());
    }
}
