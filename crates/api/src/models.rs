//! The models LiteLLM is known to serve: learned from its successful answers and its model
//! list, and only these become labels and report rows (a name a caller made up never does).
//! Bounded, with moka's frequency-aware eviction.

use moka::sync::Cache;

/// Model names LiteLLM has served or listed.
pub struct KnownModels(Cache<String, ()>);

impl KnownModels {
    /// Remembers at most `capacity` names.
    pub fn new(capacity: u64) -> Self {
        Self(Cache::new(capacity))
    }

    /// LiteLLM served or listed `model`.
    pub fn learn(&self, model: &str) {
        if !self.0.contains_key(model) {
            self.0.insert(model.to_owned(), ());
        }
    }

    /// Whether LiteLLM is known to serve `model`.
    pub fn knows(&self, model: &str) -> bool {
        self.0.contains_key(model)
    }
}

impl Default for KnownModels {
    fn default() -> Self {
        Self::new(1024)
    }
}
