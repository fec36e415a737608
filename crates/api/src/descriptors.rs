//! The descriptor budget: how many connections bff can hold open without running out of file
//! descriptors, which would refuse connections and flood the log with "Too many open files".
//!
//! Each client connection holds one descriptor, and a chat in flight one more towards LiteLLM
//! (its pool reuses them). Beside those, bff needs a fixed reserve: the listener, the runtime,
//! the telemetry sinks' connections, Redis, Open WebUI lookups, its files. At start the binary
//! raises its soft limit to the hard one ([`raise_open_file_limit`]); the server then accepts at
//! most [`max_connections`] at once: past it, new connections wait in the listen backlog, and
//! the connections already open keep being served.

use std::io;

/// Descriptors kept for everything but client connections and their upstream calls.
pub const RESERVE: u64 = 64;

/// The open-file limits, as found and as left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit at start.
    pub before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises the process's soft open-file limit to its hard limit.
pub fn raise_open_file_limit() -> io::Result<OpenFiles> {
    let (before, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let soft = rlimit::increase_nofile_limit(hard)?;
    Ok(OpenFiles { before, soft, hard })
}

/// The soft open-file limit now.
pub fn open_file_limit() -> io::Result<u64> {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft)
}

/// Most client connections `limit` descriptors allow, keeping `reserve` (and one descriptor for
/// each connection's call upstream).
pub fn max_connections(limit: u64, reserve: u64) -> usize {
    usize::try_from(limit.saturating_sub(reserve) / 2)
        .unwrap_or(usize::MAX)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_connection_counts_twice_after_the_reserve() {
        assert_eq!(max_connections(1024, 80), 472);
        assert_eq!(max_connections(64, 80), 1, "always at least one");
        assert_eq!(max_connections(1_048_576, 80), 524_248);
    }
}
