//! Journal in a local directory, fsynced before any delete is sent.
//!
//! Crash safety: objects are written (temporary file, fsync, rename) before
//! the index line; the index line is appended under an advisory lock
//! (`index.lock`, shared by every process using the directory) after making
//! sure the index ends with a newline, so a line torn by a crash never glues
//! itself to the next entry. Reading skips a torn or corrupt line with a
//! warning naming the file and line; [`LocalJournal::open`] repairs the index
//! (the valid lines kept, the others moved to `index.rejected`).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use tokio::sync::Mutex;

use super::{Damage, JournalEntry, JournalError, OBJECT_KINDS};
use crate::ports::Journal;

/// [`Journal`] in a local directory (layout in the [module docs](super)):
/// every write is fsynced before [`Journal::record`] returns. For a single
/// replica; several replicas share an [`super::S3Journal`] instead.
pub struct LocalJournal {
    dir: PathBuf,
    /// Serialises appends to the index within this process (the file lock
    /// does it between processes).
    lock: Mutex<()>,
}

impl LocalJournal {
    /// Opens (creating if needed, mode 0700: node JSON can hold secrets) the
    /// journal directory, and repairs a torn or corrupt index.
    pub fn open(dir: &Path) -> Result<Self, JournalError> {
        let objects = dir.join("objects");
        fs::create_dir_all(&objects)
            .map_err(|source| io_err(dir, "cannot create the journal directory", source))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for d in [dir, objects.as_path()] {
                fs::set_permissions(d, fs::Permissions::from_mode(0o700))
                    .map_err(|source| io_err(d, "cannot restrict permissions", source))?;
            }
            // An index written by an older version may be world-readable.
            let index = index_path(dir);
            if index.exists() {
                fs::set_permissions(&index, fs::Permissions::from_mode(0o600))
                    .map_err(|source| io_err(&index, "cannot restrict permissions", source))?;
            }
        }
        repair(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            lock: Mutex::new(()),
        })
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    async fn blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(PathBuf) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || f(dir))
            .await
            .map_err(|e| io_err(&self.dir, what, std::io::Error::other(e.to_string())))?
    }
}

fn index_path(dir: &Path) -> PathBuf {
    dir.join("index.jsonl")
}

fn object_path(dir: &Path, id: &str, kind: &str) -> PathBuf {
    dir.join("objects").join(format!("{id}.{kind}.json"))
}

/// Options for a journal file: owner-only (0600).
fn private_file() -> OpenOptions {
    let mut o = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o
}

/// An exclusive advisory lock on `index.lock`, released on drop.
struct DirLock {
    _file: File,
}

impl DirLock {
    fn acquire(dir: &Path) -> Result<Self, JournalError> {
        let path = dir.join("index.lock");
        let file = private_file()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| io_err(&path, "cannot open the lock file", source))?;
        // std's File::lock is flock(LOCK_EX) on Unix; retried on EINTR.
        loop {
            match file.lock() {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_err(&path, "cannot lock", e)),
            }
        }
        Ok(Self { _file: file })
    }
}

/// Objects first, then the index line: an index line normally has its objects.
fn write_durably(dir: &Path, entry: &JournalEntry) -> Result<(), JournalError> {
    for (kind, object) in entry.stored_objects() {
        let path = object_path(dir, &entry.id, kind);
        let bytes = serde_json::to_vec_pretty(&object)
            .map_err(|e| io_err(&path, "cannot encode", e.into()))?;
        write_file_synced(&path, &bytes)?;
    }
    sync_dir(&dir.join("objects"))?;
    let index = index_path(dir);
    let mut line = serde_json::to_vec(&entry.summary())
        .map_err(|e| io_err(&index, "cannot encode", e.into()))?;
    line.push(b'\n');
    let (_lock, mut f, torn) = open_index_for_append(dir)?;
    // A line torn by a crash has no newline: end it, so it stays one bad
    // line instead of swallowing this entry.
    if torn {
        line.insert(0, b'\n');
    }
    f.write_all(&line)
        .map_err(|source| io_err(&index, "cannot append", source))?;
    f.sync_all()
        .map_err(|source| io_err(&index, "cannot fsync", source))?;
    sync_dir(dir)
}

/// What every append to the index starts with (a backup, and the probe):
/// the directory lock (`index.lock` opened for writing), then `index.jsonl`
/// opened for appending; true when its last line has no newline (torn).
fn open_index_for_append(dir: &Path) -> Result<(DirLock, File, bool), JournalError> {
    let index = index_path(dir);
    let lock = DirLock::acquire(dir)?;
    let mut f = private_file()
        .create(true)
        .read(true)
        .append(true)
        .open(&index)
        .map_err(|source| io_err(&index, "cannot open for appending", source))?;
    let torn =
        !ends_with_newline(&mut f).map_err(|source| io_err(&index, "cannot read", source))?;
    Ok((lock, f, torn))
}

/// Does what a backup does, leaving nothing a reader could take for an
/// entry: writes, fsyncs and removes `objects/.probe.json` like an entry's
/// objects, then takes the lock and opens the index for appending like
/// [`write_durably`], and fsyncs it with nothing appended. An error names
/// the file that cannot be written.
fn probe(dir: &Path) -> Result<(), JournalError> {
    let path = dir.join("objects").join(".probe.json");
    write_file_synced(&path, b"{}")?;
    fs::remove_file(&path).map_err(|source| io_err(&path, "cannot remove", source))?;
    sync_dir(&dir.join("objects"))?;
    let (_lock, f, _) = open_index_for_append(dir)?;
    let index = index_path(dir);
    f.sync_all()
        .map_err(|source| io_err(&index, "cannot fsync", source))?;
    sync_dir(dir)
}

fn ends_with_newline(f: &mut File) -> std::io::Result<bool> {
    let len = f.metadata()?.len();
    if len == 0 {
        return Ok(true);
    }
    f.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    f.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

/// One line of the index, parsed or not.
enum Line {
    Entry(Box<JournalEntry>),
    Bad(String),
    Blank,
}

/// One index line: 1-based number, raw text, parsed.
type IndexLine = (usize, String, Line);

/// The index's lines; `torn` is true when the file does not end with a newline.
fn read_index(dir: &Path) -> Result<(Vec<IndexLine>, bool), JournalError> {
    let index = index_path(dir);
    let bytes = match fs::read(&index) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), false)),
        Err(source) => return Err(io_err(&index, "cannot read", source)),
    };
    let torn = !bytes.is_empty() && !bytes.ends_with(b"\n");
    let text = String::from_utf8_lossy(&bytes);
    let lines = text
        .split_terminator('\n')
        .enumerate()
        .map(|(n, raw)| {
            let parsed = if raw.trim().is_empty() {
                Line::Blank
            } else {
                match serde_json::from_str::<JournalEntry>(raw) {
                    Ok(e) => Line::Entry(Box::new(e)),
                    Err(e) => Line::Bad(format!("expected a JSON journal entry: {e}")),
                }
            };
            (n + 1, raw.to_string(), parsed)
        })
        .collect();
    Ok((lines, torn))
}

/// Every readable entry with its objects, and what is damaged.
fn read_all(dir: &Path) -> Result<(Vec<JournalEntry>, Vec<Damage>), JournalError> {
    let index = index_path(dir);
    let location = index.display().to_string();
    let (lines, _) = read_index(dir)?;
    let mut out = Vec::new();
    let mut damage = Vec::new();
    for (n, _, line) in lines {
        let mut entry = match line {
            Line::Blank => continue,
            Line::Bad(problem) => {
                tracing::warn!(file = %location, line = n, "journal: skipping a damaged index line: {problem}");
                damage.push(Damage {
                    location: location.clone(),
                    line: Some(n),
                    entry_id: None,
                    problem,
                });
                continue;
            }
            Line::Entry(e) => *e,
        };
        // Entries written before `objects` existed: look for node and client.
        let expected: Vec<String> = if entry.objects.is_empty() {
            Vec::new()
        } else {
            entry.objects.clone()
        };
        let look_for: Vec<&str> = if expected.is_empty() {
            vec!["node", "client"]
        } else {
            OBJECT_KINDS.to_vec()
        };
        for kind in look_for {
            let path = object_path(dir, &entry.id, kind);
            let listed = expected.iter().any(|k| k == kind);
            let problem = match fs::read(&path) {
                Ok(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(value) => entry.set_object(kind, value).err(),
                    Err(e) => Some(format!("expected the {kind} JSON: {e}")),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    listed.then(|| format!("the {kind} object is missing"))
                }
                Err(e) => Some(format!("cannot read: {e}")),
            };
            if let Some(problem) = problem {
                tracing::warn!(file = %path.display(), entry = %entry.id, "journal: {problem}");
                entry.damage.push(format!("{}: {problem}", path.display()));
                damage.push(Damage {
                    location: path.display().to_string(),
                    line: None,
                    entry_id: Some(entry.id.clone()),
                    problem,
                });
            }
        }
        out.push(entry);
    }
    Ok((out, damage))
}

/// Repairs the index: damaged lines (a torn last line, a corrupt line) are
/// moved to `index.rejected` and the valid lines kept, in order.
fn repair(dir: &Path) -> Result<(), JournalError> {
    let index = index_path(dir);
    // Cheap check first, without the lock.
    let (lines, torn) = read_index(dir)?;
    if !torn && !lines.iter().any(|(_, _, l)| matches!(l, Line::Bad(_))) {
        return Ok(());
    }
    let _lock = DirLock::acquire(dir)?;
    let (lines, torn) = read_index(dir)?;
    let bad: Vec<_> = lines
        .iter()
        .filter(|(_, _, l)| matches!(l, Line::Bad(_)))
        .collect();
    if bad.is_empty() && !torn {
        return Ok(());
    }
    if !bad.is_empty() {
        let rejected = dir.join("index.rejected");
        let mut f = private_file()
            .create(true)
            .append(true)
            .open(&rejected)
            .map_err(|source| io_err(&rejected, "cannot open", source))?;
        for (n, raw, line) in &bad {
            if let Line::Bad(problem) = line {
                tracing::warn!(
                    file = %index.display(), line = n,
                    "journal: removed a damaged index line ({problem}); kept in {}", rejected.display()
                );
            }
            let record = serde_json::json!({
                "repaired_at": Utc::now(),
                "file": index.display().to_string(),
                "line": n,
                "text": raw,
            });
            writeln!(f, "{record}").map_err(|source| io_err(&rejected, "cannot write", source))?;
        }
        f.sync_all()
            .map_err(|source| io_err(&rejected, "cannot fsync", source))?;
    }
    let mut kept = Vec::new();
    for (_, raw, line) in &lines {
        if let Line::Entry(_) = line {
            kept.extend_from_slice(raw.as_bytes());
            kept.push(b'\n');
        }
    }
    replace_index(dir, &kept)
}

/// Atomically replaces the index (temporary file, fsync, rename, fsync dir).
/// Callers hold the directory lock.
fn replace_index(dir: &Path, content: &[u8]) -> Result<(), JournalError> {
    write_file_synced(&index_path(dir), content)?;
    sync_dir(dir)
}

/// The time in an entry id (`20261125T101500.123Z-...`).
pub(crate) fn id_time(id: &str) -> Option<DateTime<Utc>> {
    let stamp = id.get(..20)?;
    NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%.3fZ")
        .ok()
        .map(|t| t.and_utc())
}

/// Removes index lines recorded before `cutoff`, then their objects (and
/// objects left without an index line by a crash, when older than `cutoff`).
fn remove_before(dir: &Path, cutoff: DateTime<Utc>) -> Result<usize, JournalError> {
    let _lock = DirLock::acquire(dir)?;
    let (lines, _) = read_index(dir)?;
    let mut kept = Vec::new();
    let mut keep_ids = HashSet::new();
    let mut removed = 0usize;
    for (_, raw, line) in &lines {
        match line {
            Line::Entry(e) if e.recorded_at < cutoff => removed += 1,
            Line::Entry(e) => {
                keep_ids.insert(e.id.clone());
                kept.extend_from_slice(raw.as_bytes());
                kept.push(b'\n');
            }
            // A damaged line is not ours to judge here: keep it for repair.
            Line::Bad(_) => {
                kept.extend_from_slice(raw.as_bytes());
                kept.push(b'\n');
            }
            Line::Blank => {}
        }
    }
    if removed > 0 {
        replace_index(dir, &kept)?;
    }
    let objects = dir.join("objects");
    let listing =
        fs::read_dir(&objects).map_err(|source| io_err(&objects, "cannot list", source))?;
    for item in listing.flatten() {
        let name = item.file_name().to_string_lossy().to_string();
        let Some(id) = name
            .strip_suffix(".json")
            .and_then(|s| s.rsplit_once('.'))
            .map(|(id, _)| id.to_string())
        else {
            continue;
        };
        if keep_ids.contains(&id) {
            continue;
        }
        if id_time(&id).is_some_and(|t| t < cutoff) {
            let path = item.path();
            fs::remove_file(&path).map_err(|source| io_err(&path, "cannot remove", source))?;
        }
    }
    sync_dir(&objects)?;
    Ok(removed)
}

fn io_err(path: &Path, detail: &str, source: std::io::Error) -> JournalError {
    JournalError::Io {
        location: path.display().to_string(),
        detail: detail.into(),
        source,
    }
}

/// Writes `path` whole or not at all: a temporary file beside it (`<name>.tmp`),
/// fsynced, then renamed into place. Callers fsync the directory.
fn write_file_synced(path: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = private_file()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|source| io_err(&tmp, "cannot create", source))?;
    f.write_all(bytes)
        .map_err(|source| io_err(&tmp, "cannot write", source))?;
    f.sync_all()
        .map_err(|source| io_err(&tmp, "cannot fsync", source))?;
    fs::rename(&tmp, path).map_err(|source| io_err(path, "cannot rename into place", source))
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| io_err(dir, "cannot fsync directory", source))
}

#[async_trait]
impl Journal for LocalJournal {
    /// Exercises a backup's every write (see [`probe`]): the objects
    /// directory, `index.lock` and `index.jsonl`.
    async fn probe(&self) -> Result<(), JournalError> {
        let _guard = self.lock.lock().await;
        self.blocking("journal probe task failed", |dir| probe(&dir))
            .await
    }

    async fn record(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        let _guard = self.lock.lock().await;
        let entry = entry.clone();
        self.blocking("journal writer task failed", move |dir| {
            write_durably(&dir, &entry)
        })
        .await
    }

    async fn entries(&self) -> Result<Vec<JournalEntry>, JournalError> {
        self.blocking("journal reader task failed", |dir| {
            read_all(&dir).map(|(e, _)| e)
        })
        .await
    }

    async fn verify(&self) -> Result<Vec<Damage>, JournalError> {
        self.blocking("journal reader task failed", |dir| {
            let (_, mut damage) = read_all(&dir)?;
            let (_, torn) = read_index(&dir)?;
            if torn {
                damage.push(Damage {
                    location: index_path(&dir).display().to_string(),
                    line: None,
                    entry_id: None,
                    problem: "the last line has no newline (an append cut short)".into(),
                });
            }
            Ok(damage)
        })
        .await
    }

    async fn remove_before(&self, cutoff: DateTime<Utc>) -> Result<usize, JournalError> {
        let _guard = self.lock.lock().await;
        self.blocking("journal prune task failed", move |dir| {
            remove_before(&dir, cutoff)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(name: &str) -> JournalEntry {
        JournalEntry::new(
            "event",
            "terminated",
            Some("m-1".into()),
            Some("i-0123456789abcdef0".into()),
            name,
            Some(name.into()),
            "http://chef",
            Some(
                json!({"name": name, "automatic": {"ec2": {"instance_id": "i-0123456789abcdef0"}}}),
            ),
            Some(json!({"name": name, "public_key": "PEM"})),
        )
    }

    #[tokio::test]
    async fn records_survive_reopen_with_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = LocalJournal::open(dir.path()).expect("open");
        let mut entry = entry("web-1");
        entry.client_keys = Some(vec![crate::adapters::chef::ClientKey {
            name: "default".into(),
            public_key: "-----BEGIN PUBLIC KEY-----".into(),
            expiration_date: "infinity".into(),
        }]);
        journal.record(&entry).await.expect("record");
        let reopened = LocalJournal::open(dir.path()).expect("reopen");
        let entries = reopened.entries().await.expect("entries");
        entry.objects = vec!["node".into(), "client".into(), "keys".into()];
        assert_eq!(entries, vec![entry]);
        assert!(reopened.verify().await.expect("verify").is_empty());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = LocalJournal::open(dir.path()).expect("open");
        let e = entry("web-1");
        journal.record(&e).await.expect("record");
        for path in [
            dir.path().join("index.jsonl"),
            object_path(dir.path(), &e.id, "node"),
            object_path(dir.path(), &e.id, "client"),
        ] {
            let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", path.display());
        }
    }

    #[tokio::test]
    async fn corrupt_line_is_skipped_named_and_repaired_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = LocalJournal::open(dir.path()).expect("open");
        let first = entry("web-1");
        journal.record(&first).await.expect("record");
        let index = dir.path().join("index.jsonl");
        let mut f = OpenOptions::new().append(true).open(&index).expect("open");
        f.write_all(b"{\"id\": \"torn").expect("tear");
        drop(f);
        // Reading skips it and names file and line.
        let damage = journal.verify().await.expect("verify");
        assert!(
            damage
                .iter()
                .any(|d| d.line == Some(2) && d.location.ends_with("index.jsonl")),
            "{damage:?}"
        );
        assert_eq!(journal.entries().await.expect("entries").len(), 1);
        // An append after the torn line is not swallowed by it.
        let second = entry("web-2");
        journal.record(&second).await.expect("record");
        assert_eq!(journal.entries().await.expect("entries").len(), 2);
        // The next open repairs: valid lines kept, the torn one set aside.
        let reopened = LocalJournal::open(dir.path()).expect("reopen");
        assert!(reopened.verify().await.expect("verify").is_empty());
        let names: Vec<_> = reopened
            .entries()
            .await
            .expect("entries")
            .into_iter()
            .map(|e| e.node_name)
            .collect();
        assert_eq!(names, ["web-1", "web-2"]);
        let rejected = fs::read_to_string(dir.path().join("index.rejected")).expect("rejected");
        assert!(rejected.contains("torn"), "{rejected}");
    }

    #[tokio::test]
    async fn index_line_without_objects_is_reported_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = LocalJournal::open(dir.path()).expect("open");
        let e = entry("web-1");
        journal.record(&e).await.expect("record");
        fs::remove_file(object_path(dir.path(), &e.id, "client")).expect("rm");
        let entries = journal.entries().await.expect("entries");
        assert_eq!(entries.len(), 1);
        assert!(entries[0].node.is_some() && entries[0].client.is_none());
        assert_eq!(entries[0].damage.len(), 1, "{:?}", entries[0].damage);
        let damage = journal.verify().await.expect("verify");
        assert_eq!(damage.len(), 1);
        assert_eq!(damage[0].entry_id.as_deref(), Some(e.id.as_str()));
        assert!(damage[0].problem.contains("client object is missing"));
    }

    #[tokio::test]
    async fn prune_removes_old_entries_and_their_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = LocalJournal::open(dir.path()).expect("open");
        let mut old = entry("old");
        old.recorded_at = Utc::now() - chrono::Duration::days(100);
        old.id = format!(
            "{}-old-00000000",
            old.recorded_at.format("%Y%m%dT%H%M%S%.3fZ")
        );
        let new = entry("new");
        journal.record(&old).await.expect("record");
        journal.record(&new).await.expect("record");
        let removed =
            crate::adapters::journal::prune(&journal, std::time::Duration::from_secs(90 * 86400))
                .await
                .expect("prune");
        assert_eq!(removed, 1);
        let left = journal.entries().await.expect("entries");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].node_name, "new");
        assert!(!object_path(dir.path(), &old.id, "node").exists());
        assert!(object_path(dir.path(), &new.id, "node").exists());
    }

    #[tokio::test]
    async fn probe_passes_and_leaves_nothing_a_reader_sees() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = LocalJournal::open(dir.path()).expect("open");
        journal.record(&entry("web-1")).await.expect("record");
        let index = dir.path().join("index.jsonl");
        let before = fs::read(&index).expect("index");
        let listing = |d: &Path| {
            let mut names: Vec<_> = fs::read_dir(d)
                .expect("list")
                .map(|e| e.expect("entry").file_name())
                .collect();
            names.sort();
            names
        };
        let objects = listing(&dir.path().join("objects"));
        journal.probe().await.expect("probe");
        assert_eq!(fs::read(&index).expect("index"), before);
        assert_eq!(listing(&dir.path().join("objects")), objects);
        assert_eq!(journal.entries().await.expect("entries").len(), 1);
        assert!(journal.verify().await.expect("verify").is_empty());
        // On an empty journal too.
        let empty = tempfile::tempdir().expect("tempdir");
        let journal = LocalJournal::open(empty.path()).expect("open");
        journal.probe().await.expect("probe");
        assert!(journal.entries().await.expect("entries").is_empty());
        assert!(journal.verify().await.expect("verify").is_empty());
    }

    /// Replaces `name` in the journal directory by a directory: opening it
    /// for writing then fails for every user. The case met in production is
    /// a root-owned 0600 `index.jsonl`/`index.lock` (left by `sudo nodereaper
    /// journal prune`) that the daemon's user cannot open (EACCES); these
    /// tests run as root, who opens any file whatever its mode
    /// (CAP_DAC_OVERRIDE), `chattr +i` is not available and a read-only bind
    /// mount would change the host's mounts. EISDIR fails the same open()
    /// call for root as well.
    fn unwritable(dir: &Path, name: &str) {
        let path = dir.join(name);
        let _ = fs::remove_file(&path);
        fs::create_dir(&path).expect("directory in the file's place");
    }

    #[tokio::test]
    async fn probe_fails_naming_the_index_when_it_cannot_be_appended() {
        for name in ["index.jsonl", "index.lock"] {
            let dir = tempfile::tempdir().expect("tempdir");
            let journal = LocalJournal::open(dir.path()).expect("open");
            journal.record(&entry("web-1")).await.expect("record");
            unwritable(dir.path(), name);
            // objects/ is still writable: only the index part can fail.
            let err = journal
                .probe()
                .await
                .expect_err("probe must fail")
                .to_string();
            assert!(err.contains(name), "{name}: {err}");
            // It fails exactly where a backup fails.
            let backup = journal.record(&entry("web-2")).await;
            assert!(
                backup.as_ref().is_err_and(|e| e.to_string().contains(name)),
                "{name}: {backup:?}"
            );
        }
    }

    /// Off root, the production case itself: an index the user may not write.
    #[cfg(unix)]
    #[tokio::test]
    async fn probe_fails_on_a_read_only_index_when_not_root() {
        use std::os::unix::fs::PermissionsExt;
        // SAFETY: geteuid has no preconditions and touches no memory.
        if unsafe { libc::geteuid() } == 0 {
            return; // root writes any file; see `unwritable` for the root case.
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = LocalJournal::open(dir.path()).expect("open");
        journal.record(&entry("web-1")).await.expect("record");
        let index = dir.path().join("index.jsonl");
        fs::set_permissions(&index, fs::Permissions::from_mode(0o400)).expect("chmod");
        let err = journal.probe().await.expect_err("probe").to_string();
        assert!(err.contains("index.jsonl"), "{err}");
    }

    #[test]
    fn entry_ids_carry_their_time() {
        let e = entry("x");
        let t = id_time(&e.id).expect("time");
        assert!((t - e.recorded_at).num_milliseconds().abs() <= 1);
    }
}
