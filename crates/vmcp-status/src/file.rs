//! [`FileReporter`]: the status as a local state file that `vmcp status`
//! reads, and the format of that file ([`StateFile`]).
//!
//! The file is `<state dir>/<name>.json`:
//!
//! ```json
//! { "status": { "phase": "Ready", ... },
//!   "writer": { "pid": 4242, "hostname": "laptop", "startedAt": "...",
//!               "heartbeatSeconds": 30, "writtenAt": "...", "stopped": false } }
//! ```
//!
//! One writer per file: the reporter holds an exclusive OS lock on
//! `<state dir>/.<name>.json.lock` for as long as its process lives (the
//! operating system drops it when the process ends, even on SIGKILL). A
//! second gateway with the same name and state directory (on another port,
//! which is legitimate on a laptop) does not overwrite the first one's
//! reports: it takes the next free instance file `<name>@2.json`,
//! `<name>@3.json`, … (at most [`MAX_INSTANCES`]) and says so, and
//! `vmcp status` lists each writer. `@` never occurs in [`state_file_name`].
//!
//! It is replaced atomically (a temporary file in the same directory,
//! fsync, rename, fsync of the directory), so a reader sees the old or the
//! new content, never a mix. `stopped` is `true` only after the final write
//! of a clean shutdown; `writtenAt` moves at least every heartbeat while the
//! writer lives. Readers judge staleness with [`staleness()`](crate::staleness()).

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vmcp_domain::status::{Status, Timestamp};

use crate::env::Env;
use crate::reporter::{ReportError, ReportFuture, ReportReason, Reporter};

/// Overrides the state directory.
pub const STATE_DIR_ENV: &str = "VMCP_STATE_DIR";

/// The content of a state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateFile {
    /// The runtime's status, as on `/status`.
    pub status: Status,
    /// Who wrote it and when, for staleness.
    pub writer: WriterInfo,
}

/// The process that wrote a state file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WriterInfo {
    /// Its process id.
    pub pid: u32,
    /// The host it runs on.
    pub hostname: String,
    /// When it started reporting.
    pub started_at: Timestamp,
    /// Its heartbeat: `writtenAt` moves at least this often while it lives
    /// (0: no heartbeat).
    pub heartbeat_seconds: u64,
    /// When this content was written.
    pub written_at: Timestamp,
    /// Whether the writer stopped cleanly after this write.
    #[serde(default)]
    pub stopped: bool,
    /// Where the writer serves MCP, e.g. `http://127.0.0.1:4483/mcp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// The most gateways of one name that can report from one state directory.
pub const MAX_INSTANCES: u32 = 16;

/// Problems with the state directory and state files.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// No state directory was given and none can be derived from the
    /// environment.
    #[error("no state directory: set {STATE_DIR_ENV}, XDG_STATE_HOME or HOME, or pass --state-dir")]
    NoStateDir,
    /// The state directory could not be created.
    #[error("cannot create the state directory {}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The state directory could not be listed.
    #[error("cannot list the state directory {}", path.display())]
    ListDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A state file could not be read.
    #[error("cannot read the state file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The lock of a state file could not be taken (not because another
    /// gateway holds it).
    #[error("cannot lock {}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Every instance file of this gateway name is held by a running gateway.
    #[error(
        "{MAX_INSTANCES} gateways named {name:?} already report to {}; stop one or use another --state-dir",
        dir.display()
    )]
    AllInstancesTaken {
        /// The gateway name.
        name: String,
        /// The state directory.
        dir: PathBuf,
    },
    /// A state file is not valid.
    #[error("{} is not a valid vmcp state file", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: serde_json::Error,
    },
}

/// Where state files live unless told otherwise: `$VMCP_STATE_DIR`, else
/// `$XDG_STATE_HOME/vmcp`, else `$HOME/.local/state/vmcp`. Empty values
/// count as unset, and so does a relative `XDG_STATE_HOME` (the XDG base
/// directory rules say to ignore it).
pub fn default_state_dir(env: &dyn Env) -> Option<PathBuf> {
    if let Some(dir) = env.non_empty(STATE_DIR_ENV) {
        return Some(PathBuf::from(dir));
    }
    if let Some(xdg) = env
        .non_empty("XDG_STATE_HOME")
        .filter(|dir| Path::new(dir).is_absolute())
    {
        return Some(Path::new(&xdg).join("vmcp"));
    }
    env.non_empty("HOME")
        .map(|home| Path::new(&home).join(".local").join("state").join("vmcp"))
}

/// The file name used for gateway `name`: the name with every character
/// outside `[A-Za-z0-9._-]` (and a leading dot) replaced by `_`, plus
/// `.json`; `vmcp.json` for an empty name.
pub fn state_file_name(name: &str) -> String {
    if name.is_empty() {
        return "vmcp.json".to_string();
    }
    let mut file: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if file.starts_with('.') {
        file.replace_range(0..1, "_");
    }
    file.push_str(".json");
    file
}

/// The file of instance `instance` (1-based) of gateway `name`:
/// [`state_file_name`] for the first, `<name>@<instance>.json` after it.
pub fn instance_file_name(name: &str, instance: u32) -> String {
    let file = state_file_name(name);
    if instance <= 1 {
        return file;
    }
    let stem = file.strip_suffix(".json").unwrap_or(&file);
    format!("{stem}@{instance}.json")
}

/// The gateway file stem and instance of a state file stem: `demo@2` →
/// (`demo`, 2), `demo` → (`demo`, 1).
pub fn split_instance(stem: &str) -> (&str, u32) {
    match stem.rsplit_once('@') {
        Some((base, number)) => match number.parse::<u32>() {
            Ok(instance) if instance >= 2 => (base, instance),
            _ => (stem, 1),
        },
        None => (stem, 1),
    }
}

/// The state files in `dir` (every `*.json`), sorted by name.
pub fn list_state_files(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let list_error = |source| FileError::ListDir {
        path: dir.to_path_buf(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(list_error)? {
        let path = entry.map_err(list_error)?.path();
        let visible = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| !name.starts_with('.'));
        if visible && path.extension().is_some_and(|ext| ext == "json") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads and parses one state file.
pub fn read_state_file(path: &Path) -> Result<StateFile, FileError> {
    let bytes = std::fs::read(path).map_err(|source| FileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| FileError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}

/// This host's name: the kernel's, else `/etc/hostname`, else `$HOSTNAME`,
/// else `"localhost"`.
pub fn local_hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.trim().to_string())
        .chain(std::env::var("HOSTNAME").ok())
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

/// Writes the status to `<state dir>/<name>.json`, atomically.
#[derive(Clone, Debug)]
pub struct FileReporter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    path: PathBuf,
    /// The instance (1 for `<name>.json`).
    instance: u32,
    /// Holds the exclusive lock on the instance for the process's lifetime.
    _lock: File,
    pid: u32,
    address: Option<String>,
    hostname: String,
    started_at: Timestamp,
    heartbeat_seconds: u64,
    /// Number of the next write.
    next_write: AtomicU64,
    /// Number of the newest write on disk; also serialises the writes.
    on_disk: Mutex<Option<u64>>,
}

impl FileReporter {
    /// A reporter for gateway `name` in `state_dir`, creating the directory
    /// (mode 0700) when missing, on the first instance file no running
    /// gateway holds (see the module docs). `heartbeat` is the set's heartbeat
    /// ([`ReportingOptions::heartbeat`](crate::ReportingOptions::heartbeat)),
    /// recorded in the file for staleness checks; `address` is where this
    /// gateway serves, shown by `vmcp status`.
    pub fn new(
        state_dir: impl Into<PathBuf>,
        name: &str,
        heartbeat: Duration,
        address: Option<String>,
    ) -> Result<Self, FileError> {
        let dir = state_dir.into();
        create_private_dir(&dir).map_err(|source| FileError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let (instance, lock) = claim_instance(&dir, name)?;
        let path = dir.join(instance_file_name(name, instance));
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                path,
                instance,
                _lock: lock,
                address,
                pid: std::process::id(),
                hostname: local_hostname(),
                started_at: Timestamp::now(),
                heartbeat_seconds: heartbeat.as_secs() + u64::from(heartbeat.subsec_nanos() > 0),
                next_write: AtomicU64::new(0),
                on_disk: Mutex::new(None),
            }),
        })
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Which instance of its name this gateway is: 1 for `<name>.json`,
    /// above when other running gateways hold the lower ones.
    pub fn instance(&self) -> u32 {
        self.inner.instance
    }
}

/// Locks the first free instance of `name` in `dir`.
fn claim_instance(dir: &Path, name: &str) -> Result<(u32, File), FileError> {
    for instance in 1..=MAX_INSTANCES {
        let path = dir.join(format!(".{}.lock", instance_file_name(name, instance)));
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let lock_error = |source| FileError::Lock {
            path: path.clone(),
            source,
        };
        let file = options.open(&path).map_err(lock_error)?;
        match file.try_lock() {
            Ok(()) => return Ok((instance, file)),
            Err(std::fs::TryLockError::WouldBlock) => continue,
            Err(std::fs::TryLockError::Error(source)) => return Err(lock_error(source)),
        }
    }
    Err(FileError::AllInstancesTaken {
        name: name.to_string(),
        dir: dir.to_path_buf(),
    })
}

impl Reporter for FileReporter {
    fn name(&self) -> &'static str {
        "file"
    }

    fn apply<'a>(&'a self, status: &'a Status, why: ReportReason) -> ReportFuture<'a> {
        // Numbered when called, not when first polled: the call order is the
        // order of the statuses.
        let number = self.inner.next_write.fetch_add(1, Ordering::Relaxed);
        let writer = WriterInfo {
            pid: self.inner.pid,
            hostname: self.inner.hostname.clone(),
            started_at: self.inner.started_at,
            heartbeat_seconds: self.inner.heartbeat_seconds,
            written_at: Timestamp::now(),
            stopped: why == ReportReason::Final,
            address: self.inner.address.clone(),
        };
        let content = StateFileRef { status, writer };
        let encoded = serde_json::to_vec_pretty(&content).map_err(ReportError::Encode);
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let mut bytes = encoded?;
            bytes.push(b'\n');
            tokio::task::spawn_blocking(move || inner.replace(number, &bytes))
                .await
                .map_err(|error| ReportError::transient("the state file write was lost", error))?
        })
    }
}

/// [`StateFile`] borrowing the status, for writing.
#[derive(Serialize)]
struct StateFileRef<'a> {
    status: &'a Status,
    writer: WriterInfo,
}

impl Inner {
    /// Replaces the file with `bytes` unless a newer write got there first
    /// (a write abandoned by its timeout may finish late: it must not
    /// overwrite what came after it).
    fn replace(&self, number: u64, bytes: &[u8]) -> Result<(), ReportError> {
        let mut on_disk = self.on_disk.lock().unwrap_or_else(PoisonError::into_inner);
        if on_disk.is_some_and(|newest| newest > number) {
            return Ok(());
        }
        let file_name = self
            .path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("state.json");
        let temp = self
            .dir
            .join(format!(".{file_name}.{}.{number}.tmp", self.pid));
        let result = write_synced(&temp, bytes)
            .and_then(|()| {
                std::fs::rename(&temp, &self.path).map_err(|source| ReportError::Io {
                    action: "rename into place",
                    path: self.path.clone(),
                    source,
                })
            })
            .and_then(|()| {
                File::open(&self.dir)
                    .and_then(|dir| dir.sync_all())
                    .map_err(|source| ReportError::Io {
                        action: "sync",
                        path: self.dir.clone(),
                        source,
                    })
            });
        match result {
            Ok(()) => {
                *on_disk = Some(number);
                Ok(())
            }
            Err(error) => {
                // Best effort: the rename may have consumed it already.
                let _ = std::fs::remove_file(&temp);
                Err(error)
            }
        }
    }
}

/// Creates `path` with `bytes`, flushed to disk (owner-only on Unix).
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let io_error = |action| {
        move |source| ReportError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io_error("create"))?;
    file.write_all(bytes).map_err(io_error("write"))?;
    file.sync_all().map_err(io_error("sync"))
}

/// Creates `dir` and its parents, owner-only on Unix.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}
