//! Shared keys that identify trusted callers (Open WebUI's backend, internal jobs).

use crate::secret::Secret;
use ring::digest::{SHA256, digest};
use subtle::ConstantTimeEq;

/// The configured service keys, compared in constant time.
///
/// Keys are stored as SHA-256 digests, so comparison time depends neither on where a presented
/// value first differs nor on its length, and every key is compared on every check.
#[derive(Clone, Default)]
pub struct ServiceKeys {
    keys: Vec<(String, [u8; 32])>,
}

impl std::fmt::Debug for ServiceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.keys.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("ServiceKeys")
            .field("names", &names)
            .finish()
    }
}

impl ServiceKeys {
    /// Builds the set from `(name, key)` pairs; the name becomes the service principal's id.
    pub fn new(keys: impl IntoIterator<Item = (String, Secret)>) -> Self {
        Self {
            keys: keys
                .into_iter()
                .map(|(name, key)| (name, sha256(key.expose().as_bytes())))
                .collect(),
        }
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The names of the configured keys (safe to log).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(name, _)| name.as_str())
    }

    /// The name of the key equal to `presented`, if any.
    pub fn identify(&self, presented: &str) -> Option<&str> {
        let presented = sha256(presented.as_bytes());
        let mut found = None;
        for (name, key) in &self.keys {
            if bool::from(key.ct_eq(&presented)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

/// SHA-256 of `bytes`, as an array.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0_u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_the_matching_key_by_name() {
        let keys = ServiceKeys::new([
            (
                "openwebui".to_owned(),
                Secret::new("sk-bff-connection-key-0001"),
            ),
            (
                "batch".to_owned(),
                Secret::new("sk-bff-batch-key-000000002"),
            ),
        ]);
        assert_eq!(keys.identify("sk-bff-batch-key-000000002"), Some("batch"));
        assert_eq!(
            keys.identify("sk-bff-connection-key-0001"),
            Some("openwebui")
        );
        assert_eq!(keys.identify("sk-bff-connection-key-0002"), None);
        assert_eq!(keys.identify(""), None);
        assert!(!format!("{keys:?}").contains("sk-bff"));
    }
}
