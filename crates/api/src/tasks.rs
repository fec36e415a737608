//! Open WebUI's background tasks: the requests the UI makes on its own around a message a person
//! typed (a title, tags, follow-up suggestions, search queries, …).
//!
//! Open WebUI strips its own metadata from the body, so the only way to tell them apart is the
//! header `X-OpenWebUI-Task: {{TASK}}` that the admin sets on the connection (empty for the
//! person's own chat). Any caller can send it: it only moves a request from the requests bucket
//! to the tasks bucket (both limited, spend limits count both), so it is taken as a label, and
//! only as one of a fixed list of names.

use actix_web::HttpRequest;

/// The header Open WebUI fills with `{{TASK}}`.
pub const TASK_HEADER: &str = "x-openwebui-task";

/// The tasks Open WebUI 0.12.4 names (`open_webui.constants.TASKS`).
const KNOWN: [&str; 9] = [
    "title_generation",
    "follow_up_generation",
    "tags_generation",
    "emoji_generation",
    "query_generation",
    "image_prompt_generation",
    "autocomplete_generation",
    "function_calling",
    "moa_response_generation",
];

/// What any other non-empty value counts as, so a label never comes from the caller's bytes.
pub const OTHER_TASK: &str = "other_task";

/// The task a request says it serves: `None` for a person's own request (no header, or empty).
pub fn task_of(request: &HttpRequest) -> Option<&'static str> {
    let value = request.headers().get(TASK_HEADER)?.as_bytes().trim_ascii();
    if value.is_empty() {
        return None;
    }
    Some(
        KNOWN
            .iter()
            .find(|known| value.eq_ignore_ascii_case(known.as_bytes()))
            .copied()
            .unwrap_or(OTHER_TASK),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn task(value: Option<&[u8]>) -> Option<&'static str> {
        let mut request = TestRequest::default();
        if let Some(value) = value {
            request = request.insert_header((TASK_HEADER, value));
        }
        task_of(&request.to_http_request())
    }

    #[test]
    fn known_names_are_kept_anything_else_is_one_label() {
        assert_eq!(task(None), None);
        assert_eq!(task(Some(b"")), None);
        assert_eq!(task(Some(b"  ")), None);
        assert_eq!(task(Some(b"title_generation")), Some("title_generation"));
        assert_eq!(task(Some(b"Tags_Generation")), Some("tags_generation"));
        assert_eq!(task(Some(b"my-own-label")), Some(OTHER_TASK));
        assert_eq!(task(Some(&[b'x'; 100_000])), Some(OTHER_TASK));
        // Not text: a task all the same (it said it was one), under the one label.
        assert_eq!(task(Some(b"\xff\xfe")), Some(OTHER_TASK));
    }
}
