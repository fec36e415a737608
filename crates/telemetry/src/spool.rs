//! The on-disk spool: where records wait when a sink is down or its queue is full.
//!
//! One folder per sink, holding append-only segment files `<sequence>.jsonl` (one JSON record per
//! line). Each append is one batch followed by `fsync`. Segments are read back oldest first; a
//! segment is deleted once all its records are delivered, or atomically rewritten (temp file +
//! rename) with the ones still pending, so a record delivered from the spool is not sent again.
//! The total size is capped: a batch that does not fit is refused and the caller counts it.

use crate::record::LlmRecord;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;

/// A spool operation failed.
#[derive(Debug, thiserror::Error)]
#[error("telemetry spool {path}: {source}")]
pub struct SpoolError {
    path: String,
    #[source]
    source: std::io::Error,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError {
        path: path.display().to_string(),
        source,
    }
}

/// Files only their owner may read: spooled records hold prompts. Unix only: elsewhere the
/// crate has no way to ensure it, so opening a spool fails with a clear error (run with
/// `spool_dir: None`, and records a sink cannot take are counted as dropped).
#[cfg(unix)]
mod private {
    use std::fs::{self, File, OpenOptions};
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
    use std::path::Path;

    /// Creates `dir` (and its parents), owner-only (0700), also if it existed.
    pub(super) fn create_dir(dir: &Path) -> std::io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
    }

    /// Opens `path` with `options`, a file it creates being owner-only (0600).
    pub(super) fn open(options: &mut OpenOptions, path: &Path) -> std::io::Result<File> {
        options.mode(0o600).open(path)
    }
}

#[cfg(not(unix))]
mod private {
    use std::fs::{File, OpenOptions};
    use std::path::Path;

    fn unsupported() -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "the telemetry spool holds prompts in owner-only files, which bff-telemetry ensures on Unix only; set spool_dir to None",
        )
    }

    pub(super) fn create_dir(_: &Path) -> std::io::Result<()> {
        Err(unsupported())
    }

    pub(super) fn open(_: &mut OpenOptions, _: &Path) -> std::io::Result<File> {
        Err(unsupported())
    }
}

/// Records read back from one segment.
#[derive(Debug)]
pub struct Segment {
    /// The segment's sequence number.
    pub sequence: u64,
    /// Its records, in the order they were written.
    pub records: Vec<LlmRecord>,
    /// Lines that could not be read (a torn write from a crash), already skipped.
    pub unreadable_lines: u64,
}

/// One sink's spool folder.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    total_bytes: u64,
    /// The segment being appended to: sequence, file, size.
    open: Option<(u64, File, u64)>,
    next_sequence: u64,
}

impl Spool {
    /// Opens (creating if needed) the spool at `dir`, capped at `max_bytes` in all.
    /// The folder is made readable by its owner only (0700), and so is every file (0600):
    /// spooled records hold prompts.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        private::create_dir(dir).map_err(io_error(dir))?;
        let mut spool = Self {
            dir: dir.to_owned(),
            max_bytes,
            total_bytes: 0,
            open: None,
            next_sequence: 0,
        };
        for (sequence, path) in spool.segments()? {
            spool.total_bytes += fs::metadata(&path).map_err(io_error(&path))?.len();
            spool.next_sequence = spool.next_sequence.max(sequence + 1);
        }
        Ok(spool)
    }

    /// Bytes on disk.
    #[cfg(test)]
    fn bytes(&self) -> u64 {
        self.total_bytes
    }

    /// Whether nothing is waiting.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.total_bytes == 0
    }

    /// Existing segments, oldest first.
    fn segments(&self) -> Result<Vec<(u64, PathBuf)>, SpoolError> {
        let mut segments: Vec<(u64, PathBuf)> = fs::read_dir(&self.dir)
            .map_err(io_error(&self.dir))?
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let path = entry.path();
                let sequence = path
                    .file_name()?
                    .to_str()?
                    .strip_suffix(".jsonl")?
                    .parse::<u64>()
                    .ok()?;
                Some((sequence, path))
            })
            .collect();
        segments.sort_unstable_by_key(|(sequence, _)| *sequence);
        Ok(segments)
    }

    fn path_of(&self, sequence: u64) -> PathBuf {
        self.dir.join(format!("{sequence:020}.jsonl"))
    }

    /// Appends records and fsyncs. Returns `Ok(false)` without writing anything if the batch
    /// would exceed the size cap.
    pub fn append<'a>(
        &mut self,
        records: impl IntoIterator<Item = &'a LlmRecord>,
    ) -> Result<bool, SpoolError> {
        let mut buffer = Vec::new();
        for record in records {
            // A record always serializes: it holds only strings, numbers and JSON values.
            if serde_json::to_writer(&mut buffer, record).is_ok() {
                buffer.push(b'\n');
            }
        }
        if buffer.is_empty() {
            return Ok(true);
        }
        let added = buffer.len() as u64;
        if self.total_bytes + added > self.max_bytes {
            return Ok(false);
        }
        if self
            .open
            .as_ref()
            .is_none_or(|(_, _, size)| *size >= SEGMENT_BYTES)
        {
            let sequence = self.next_sequence;
            self.next_sequence += 1;
            let path = self.path_of(sequence);
            let file = private::open(OpenOptions::new().create(true).append(true), &path)
                .map_err(io_error(&path))?;
            // Make the new file's directory entry durable too.
            if let Ok(dir) = File::open(&self.dir) {
                let _ = dir.sync_all();
            }
            self.open = Some((sequence, file, 0));
        }
        if let Some((sequence, file, size)) = self.open.as_mut() {
            let path = self.dir.join(format!("{sequence:020}.jsonl"));
            file.write_all(&buffer).map_err(io_error(&path))?;
            file.sync_data().map_err(io_error(&path))?;
            *size += added;
        }
        self.total_bytes += added;
        Ok(true)
    }

    /// Reads the oldest segment, if any. The segment being appended to is closed first, so
    /// new records go to a newer segment while this one is replayed.
    pub fn oldest(&mut self) -> Result<Option<Segment>, SpoolError> {
        let Some((sequence, path)) = self.segments()?.into_iter().next() else {
            return Ok(None);
        };
        if self
            .open
            .as_ref()
            .is_some_and(|(open, _, _)| *open == sequence)
        {
            self.open = None;
        }
        let file = File::open(&path).map_err(io_error(&path))?;
        let mut records = Vec::new();
        let mut unreadable_lines = 0;
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(io_error(&path))?;
            if line.is_empty() {
                continue;
            }
            match serde_json::from_slice::<LlmRecord>(&line) {
                Ok(record) => records.push(record),
                Err(_) => unreadable_lines += 1,
            }
        }
        Ok(Some(Segment {
            sequence,
            records,
            unreadable_lines,
        }))
    }

    /// Marks a segment as replayed: deleted if nothing is `pending`, otherwise atomically
    /// rewritten to hold only `pending`.
    pub fn finish(&mut self, sequence: u64, pending: &[&LlmRecord]) -> Result<(), SpoolError> {
        let path = self.path_of(sequence);
        let old_size = fs::metadata(&path).map_err(io_error(&path))?.len();
        if pending.is_empty() {
            fs::remove_file(&path).map_err(io_error(&path))?;
            self.total_bytes = self.total_bytes.saturating_sub(old_size);
            return Ok(());
        }
        let temporary = self.dir.join(format!("{sequence:020}.tmp"));
        let mut buffer = Vec::new();
        for record in pending {
            if serde_json::to_writer(&mut buffer, record).is_ok() {
                buffer.push(b'\n');
            }
        }
        let mut file = private::open(
            OpenOptions::new().write(true).create(true).truncate(true),
            &temporary,
        )
        .map_err(io_error(&temporary))?;
        file.write_all(&buffer).map_err(io_error(&temporary))?;
        file.sync_all().map_err(io_error(&temporary))?;
        fs::rename(&temporary, &path).map_err(io_error(&path))?;
        self.total_bytes = self.total_bytes.saturating_sub(old_size) + buffer.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> LlmRecord {
        LlmRecord::new("ab".repeat(16), id, "/chat", "m")
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bff-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn appends_replays_in_order_and_survives_reopen() {
        let dir = temp_dir("order");
        let mut spool = Spool::open(&dir, 1 << 20).unwrap();
        assert!(spool.is_empty());
        assert!(spool.append([&record("a"), &record("b")]).unwrap());
        assert!(spool.append([&record("c")]).unwrap());
        drop(spool);

        let mut spool = Spool::open(&dir, 1 << 20).unwrap();
        assert!(!spool.is_empty());
        let segment = spool.oldest().unwrap().unwrap();
        let ids: Vec<&str> = segment
            .records
            .iter()
            .map(|r| r.request_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        // New appends go to a newer segment while this one is replayed.
        assert!(spool.append([&record("d")]).unwrap());
        let pending = [&segment.records[2]];
        spool.finish(segment.sequence, &pending).unwrap();
        let again = spool.oldest().unwrap().unwrap();
        assert_eq!(again.records.len(), 1);
        assert_eq!(again.records[0].request_id, "c");
        spool.finish(again.sequence, &[]).unwrap();
        let last = spool.oldest().unwrap().unwrap();
        assert_eq!(last.records[0].request_id, "d");
        spool.finish(last.sequence, &[]).unwrap();
        assert!(spool.oldest().unwrap().is_none());
        assert!(spool.is_empty());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn only_the_owner_can_read_spooled_prompts() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = temp_dir("modes");
        let mut spool = Spool::open(&dir, 1 << 20).unwrap();
        spool.append([&record("a")]).unwrap();
        let mode = |path: &Path| fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let files: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert!(!files.is_empty());
        for file in files {
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
    }

    #[test]
    fn refuses_what_exceeds_the_cap() {
        let dir = temp_dir("cap");
        let mut spool = Spool::open(&dir, 600).unwrap();
        assert!(spool.append([&record("a")]).unwrap());
        let before = spool.bytes();
        assert!(!spool.append([&record("b"), &record("c")]).unwrap());
        assert_eq!(spool.bytes(), before);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn torn_lines_are_skipped_and_counted() {
        let dir = temp_dir("torn");
        let mut spool = Spool::open(&dir, 1 << 20).unwrap();
        spool.append([&record("a")]).unwrap();
        let path = spool.path_of(0);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"trace_id\":\"ab").unwrap();
        let segment = spool.oldest().unwrap().unwrap();
        assert_eq!(segment.records.len(), 1);
        assert_eq!(segment.unreadable_lines, 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
