//! What every call carries: who asked, which trace it belongs to, and until when.

use ring::rand::{SecureRandom, SystemRandom};
use std::fmt;
use tokio::time::Instant;

/// A W3C trace id: 32 lowercase hex characters, not all zero.
///
/// LiteLLM's Langfuse logging keeps a 32-hex `metadata.trace_id` as is, so the id bff records is
/// the id Langfuse shows.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceId(String);

impl TraceId {
    /// Parses a 32-hex id (upper case is lowered). `None` for anything else or all zeros.
    pub fn parse(text: &str) -> Option<Self> {
        let valid = text.len() == 32
            && text.bytes().all(|b| b.is_ascii_hexdigit())
            && text.bytes().any(|b| b != b'0');
        valid.then(|| Self(text.to_ascii_lowercase()))
    }

    /// Takes the trace id from a W3C `traceparent` header (`00-<trace>-<span>-<flags>`).
    pub fn from_traceparent(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let well_formed = version.len() == 2
            && version != "ff"
            && span.len() == 16
            && span.bytes().all(|b| b.is_ascii_hexdigit())
            && flags.len() == 2;
        if !well_formed || (version == "00" && parts.next().is_some()) {
            return None;
        }
        Self::parse(trace)
    }

    /// A fresh random id.
    pub fn random() -> Self {
        Self(random_hex::<16>())
    }

    /// The 32 hex characters.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({})", self.0)
    }
}

/// `N` random bytes as lowercase hex, never all zero.
pub(crate) fn random_hex<const N: usize>() -> String {
    let mut bytes = [0_u8; N];
    loop {
        if SystemRandom::new().fill(&mut bytes).is_err() {
            // The OS RNG failing is not recoverable in any useful way; fall back to time-based
            // bytes so ids stay unique enough for tracing (they are not secrets).
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |elapsed| elapsed.as_nanos());
            for (index, byte) in bytes.iter_mut().enumerate() {
                *byte = (nanos >> ((index % 16) * 8)) as u8 ^ index as u8;
            }
        }
        if bytes.iter().any(|b| *b != 0) {
            return bytes.iter().map(|b| format!("{b:02x}")).collect();
        }
    }
}

/// A random fraction in `[0, 1)`, for backoff jitter.
pub(crate) fn random_fraction() -> f64 {
    let mut bytes = [0_u8; 8];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1_u64 << 53) as f64
}

/// Per-request context passed to every [`crate::LiteLlm`] call.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// bff's request id; sent as `x-litellm-call-id`, which LiteLLM adopts as its call id.
    pub request_id: String,
    /// The trace this call belongs to; sent as `metadata.trace_id` and in `traceparent`.
    pub trace_id: TraceId,
    /// The authenticated user; sent as `user` and `metadata.trace_user_id`.
    pub user_id: Option<String>,
    /// Chat or session id; sent as `metadata.session_id`.
    pub session_id: Option<String>,
    /// Tags; added to `metadata.tags`.
    pub tags: Vec<String>,
    /// The caller's deadline: no call, retry or stream outlives it.
    pub deadline: Option<Instant>,
}

impl RequestContext {
    /// A context with a request id and a trace id and nothing else.
    pub fn new(request_id: impl Into<String>, trace_id: TraceId) -> Self {
        Self {
            request_id: request_id.into(),
            trace_id,
            user_id: None,
            session_id: None,
            tags: Vec::new(),
            deadline: None,
        }
    }

    /// A W3C `traceparent` for one outgoing call: this trace, a fresh span id, sampled.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, random_hex::<8>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_are_32_lowercase_hex() {
        assert_eq!(
            TraceId::parse("0AF7651916CD43DD8448EB211C80319C")
                .unwrap()
                .as_str(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert!(TraceId::parse("0af7651916cd43dd8448eb211c80319").is_none());
        assert!(TraceId::parse("0af7651916cd43dd8448eb211c80319g").is_none());
        assert!(TraceId::parse(&"0".repeat(32)).is_none());
        let random = TraceId::random();
        assert!(TraceId::parse(random.as_str()).is_some());
        assert_ne!(random, TraceId::random());
    }

    #[test]
    fn traceparent_round_trip() {
        let context = RequestContext::new("req-1", TraceId::random());
        let header = context.traceparent();
        assert_eq!(header.len(), 55);
        assert_eq!(TraceId::from_traceparent(&header), Some(context.trace_id));
        assert!(
            TraceId::from_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
                .is_some()
        );
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-xyz-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
        ] {
            assert!(TraceId::from_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn jitter_fraction_is_in_range() {
        for _ in 0..1000 {
            let fraction = random_fraction();
            assert!((0.0..1.0).contains(&fraction));
        }
    }
}
