//! Where audit events go: a bounded queue drained by one writer thread,
//! off the request path. A request only tries to queue its observation; a
//! full queue drops it and counts the drop, so a slow disk never holds a
//! call. The writer builds each event ([`crate::audit::event`]), writes it
//! as one JSON line to stdout or to the `logFile` (opened for appending,
//! created with mode 0600), and flushes whenever the queue is empty.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use vmcp_config::AuditConfig;

use crate::audit::event::{EventSettings, Observation, build_event};
use crate::audit::recorder::Recorder;
use crate::log_limit::LogLimiter;

/// Observations the queue holds before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 4096;

/// Why the audit log could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The log file could not be opened for appending.
    #[error("cannot open the audit log file {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the audit writer thread")]
    Thread(#[source] io::Error),
}

/// The running audit log: hands out [`Recorder`]s, counts what it dropped.
#[derive(Clone, Debug)]
pub struct AuditSink {
    recorder: Recorder,
    dropped: Counter,
    write_failures: Counter,
}

impl AuditSink {
    /// Opens the destination of `config` and starts the writer thread.
    pub fn start(config: &AuditConfig) -> Result<Self, SinkError> {
        let out: Box<dyn Write + Send> = match &config.log_file {
            Some(path) => Box::new(open_log_file(Path::new(path))?),
            None => Box::new(io::stdout()),
        };
        Self::start_with(config, out)
    }

    /// [`Self::start`] writing to `out`.
    pub fn start_with(config: &AuditConfig, out: Box<dyn Write + Send>) -> Result<Self, SinkError> {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let dropped = Counter::default();
        let write_failures = Counter::default();
        let settings = EventSettings {
            component: Arc::from(config.component()),
            detect_application_errors: config.detects_application_errors(),
            max_data_size: config.max_data_size as usize,
        };
        let failures = write_failures.clone();
        std::thread::Builder::new()
            .name("vmcp-audit".into())
            .spawn(move || write_events(receiver, settings, out, &failures))
            .map_err(SinkError::Thread)?;
        Ok(Self {
            recorder: Recorder::new(config, sender, dropped.clone()),
            dropped,
            write_failures,
        })
    }

    /// The handle the MCP handler records with.
    pub fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Adds the audit log's counters to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "vmcp_audit_events_dropped",
            "Audit events dropped because the audit queue was full",
            self.dropped.clone(),
        );
        registry.register(
            "vmcp_audit_write_failures",
            "Audit events that could not be written to the audit log",
            self.write_failures.clone(),
        );
    }
}

/// Opens `path` for appending; a new file gets mode 0600.
pub fn open_log_file(path: &Path) -> Result<std::fs::File, SinkError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| SinkError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// The writer thread: until every sender is gone, write what is queued,
/// flushing whenever the queue runs empty.
fn write_events(
    mut receiver: mpsc::Receiver<Observation>,
    settings: EventSettings,
    out: Box<dyn Write + Send>,
    failures: &Counter,
) {
    let mut out = BufWriter::new(out);
    let mut limiter = LogLimiter::new(5, std::time::Duration::from_secs(60));
    let mut complain = |err: &io::Error| {
        failures.inc();
        if let Some(suppressed) = limiter.admit(Instant::now()) {
            tracing::warn!(error = %err, suppressed, "cannot write to the audit log");
        }
    };
    while let Some(first) = receiver.blocking_recv() {
        let mut next = Some(first);
        while let Some(observation) = next {
            let event = build_event(observation, &settings, jiff::Timestamp::now(), audit_id());
            let written = serde_json::to_writer(&mut out, &event)
                .map_err(io::Error::from)
                .and_then(|()| out.write_all(b"\n"));
            if let Err(err) = written {
                complain(&err);
            }
            next = receiver.try_recv().ok();
        }
        if let Err(err) = out.flush() {
            complain(&err);
        }
    }
}

/// A random (version 4) UUID.
fn audit_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        // Still unique enough to tell lines apart; never blocks the writer.
        let nanos = jiff::Timestamp::now().as_nanosecond();
        bytes = nanos.to_be_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn ids_are_uuid_shaped_and_distinct() {
        let (a, b) = (audit_id(), audit_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4", "{a}");
    }

    #[test]
    fn a_new_log_file_is_private_and_appended_to() {
        let dir = std::env::temp_dir().join(format!("vmcp-audit-test-{}", audit_id()));
        std::fs::create_dir(&dir).expect("temp dir");
        let path = dir.join("audit.log");
        open_log_file(&path)
            .expect("created")
            .write_all(b"one\n")
            .expect("written");
        open_log_file(&path)
            .expect("reopened")
            .write_all(b"two\n")
            .expect("written");
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "one\ntwo\n");
        let missing = open_log_file(&dir.join("no/such/dir/audit.log"));
        assert!(matches!(missing, Err(SinkError::Open { .. })));
        std::fs::remove_dir_all(&dir).expect("cleaned up");
    }
}
