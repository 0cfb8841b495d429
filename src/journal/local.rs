//! Journal in a local directory, fsynced before any delete is sent.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{JournalEntry, JournalError};
use crate::ports::Journal;

pub struct LocalJournal {
    dir: PathBuf,
    /// Serialises appends to the index within this process.
    lock: Mutex<()>,
}

impl LocalJournal {
    /// Opens (creating if needed, mode 0700: node JSON can hold secrets) the journal directory.
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
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            lock: Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn index_path(dir: &Path) -> PathBuf {
    dir.join("index.jsonl")
}

fn object_path(dir: &Path, id: &str, kind: &str) -> PathBuf {
    dir.join("objects").join(format!("{id}.{kind}.json"))
}

/// Objects first, then the index line: an index line always has its objects.
fn write_durably(dir: &Path, entry: &JournalEntry) -> Result<(), JournalError> {
    for (kind, object) in [("node", &entry.node), ("client", &entry.client)] {
        if let Some(object) = object {
            let path = object_path(dir, &entry.id, kind);
            let bytes = serde_json::to_vec_pretty(object)
                .map_err(|e| io_err(&path, "cannot encode", e.into()))?;
            write_file_synced(&path, &bytes)?;
        }
    }
    sync_dir(&dir.join("objects"))?;
    let index = index_path(dir);
    let mut line = serde_json::to_vec(&entry.summary())
        .map_err(|e| io_err(&index, "cannot encode", e.into()))?;
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&index)
        .map_err(|source| io_err(&index, "cannot open", source))?;
    f.write_all(&line)
        .map_err(|source| io_err(&index, "cannot append", source))?;
    f.sync_all()
        .map_err(|source| io_err(&index, "cannot fsync", source))?;
    sync_dir(dir)
}

fn read_all(dir: &Path) -> Result<Vec<JournalEntry>, JournalError> {
    let index = index_path(dir);
    let file = match File::open(&index) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(io_err(&index, "cannot open", source)),
    };
    let mut out = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| io_err(&index, "cannot read", source))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut entry: JournalEntry =
            serde_json::from_str(&line).map_err(|e| JournalError::Corrupt {
                location: index.display().to_string(),
                line: n + 1,
                detail: format!("expected a JSON journal entry: {e}"),
            })?;
        entry.node = read_object(dir, &entry.id, "node")?;
        entry.client = read_object(dir, &entry.id, "client")?;
        out.push(entry);
    }
    Ok(out)
}

fn read_object(
    dir: &Path,
    id: &str,
    kind: &str,
) -> Result<Option<serde_json::Value>, JournalError> {
    let path = object_path(dir, id, kind);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| JournalError::Corrupt {
                location: path.display().to_string(),
                line: e.line(),
                detail: format!("expected the {kind} JSON: {e}"),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(io_err(&path, "cannot read", source)),
    }
}

fn io_err(path: &Path, detail: &str, source: std::io::Error) -> JournalError {
    JournalError::Io {
        location: path.display().to_string(),
        detail: detail.into(),
        source,
    }
}

fn write_file_synced(path: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp).map_err(|source| io_err(&tmp, "cannot create", source))?;
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
    /// Writes, fsyncs and removes `objects/.probe.json` like an entry's objects.
    async fn probe(&self) -> Result<(), JournalError> {
        let path = self.dir.join("objects").join(".probe.json");
        tokio::task::spawn_blocking(move || {
            write_file_synced(&path, b"{}")?;
            fs::remove_file(&path).map_err(|source| io_err(&path, "cannot remove", source))
        })
        .await
        .map_err(|e| {
            io_err(
                &self.dir,
                "journal probe task failed",
                std::io::Error::other(e.to_string()),
            )
        })?
    }

    async fn record(&self, entry: &JournalEntry) -> Result<(), JournalError> {
        let _guard = self.lock.lock().await;
        let entry = entry.clone();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || write_durably(&dir, &entry))
            .await
            .map_err(|e| {
                io_err(
                    &self.dir,
                    "journal writer task failed",
                    std::io::Error::other(e.to_string()),
                )
            })?
    }

    async fn entries(&self) -> Result<Vec<JournalEntry>, JournalError> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || read_all(&dir))
            .await
            .map_err(|e| {
                io_err(
                    &self.dir,
                    "journal reader task failed",
                    std::io::Error::other(e.to_string()),
                )
            })?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn records_survive_reopen_with_objects() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = LocalJournal::open(dir.path()).expect("open");
        let entry = JournalEntry::new(
            "event",
            "terminated",
            Some("m-1".into()),
            Some("i-0123456789abcdef0".into()),
            "web-1",
            Some("web-1".into()),
            "http://chef",
            Some(
                json!({"name": "web-1", "automatic": {"ec2": {"instance_id": "i-0123456789abcdef0"}}}),
            ),
            Some(json!({"name": "web-1", "public_key": "PEM"})),
        );
        journal.record(&entry).await.expect("record");
        let reopened = LocalJournal::open(dir.path()).expect("reopen");
        let entries = reopened.entries().await.expect("entries");
        assert_eq!(entries, vec![entry]);
    }

    #[tokio::test]
    async fn corrupt_index_names_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = LocalJournal::open(dir.path()).expect("open");
        fs::write(dir.path().join("index.jsonl"), "{not json\n").expect("write");
        let err = journal.entries().await.expect_err("corrupt").to_string();
        assert!(
            err.contains("index.jsonl") && err.contains("line 1"),
            "{err}"
        );
    }
}
