//! `vmcp status`: the status of the gateways running on this machine, read
//! from the state files their file reporters write.
//!
//! Exit code: 0 when every gateway is `Ready`, 1 when the worst is
//! `Degraded`, 2 otherwise (`Pending`, `Failed`, a stale report, a missing
//! or unreadable state file). With several gateways the worst wins.
//!
//! Each state file has one writer (the file reporter locks it); a second
//! gateway of the same name writes `<name>@2.json`, and both are listed with
//! their pid, host, address and start time.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use vmcp_domain::status::{Phase, Timestamp};
use vmcp_status::file::{
    FileError, MAX_INSTANCES, instance_file_name, list_state_files, read_state_file,
    split_instance, state_file_name,
};
use vmcp_status::staleness::age;
use vmcp_status::{
    HostProbe, LocalHost, ProcessEnv, StaleReason, StateFile, default_state_dir, staleness,
};

/// Width of the labels of the gateway lines.
const LABEL: usize = 12;

/// Shortest `--interval`.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Arguments of `vmcp status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Directory of the state files [default: $VMCP_STATE_DIR, else
    /// $XDG_STATE_HOME/vmcp, else ~/.local/state/vmcp].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Show only this gateway (the `name` of its configuration).
    #[arg(long)]
    name: Option<String>,
    /// Print the state file(s) as JSON, with `name`, `instance`, `stale` and
    /// `staleReason` added (an object with --name, else an array; also an
    /// array when several gateways of that name run).
    #[arg(long, conflicts_with = "watch")]
    json: bool,
    /// Redraw until Ctrl-C.
    #[arg(long)]
    watch: bool,
    /// Time between redraws with --watch (e.g. 500ms, 2s, 1m).
    #[arg(long, default_value = "2s", value_parser = parse_interval, requires = "watch")]
    interval: Duration,
}

/// Why a gateway's status could not be shown.
#[derive(Debug, thiserror::Error)]
enum StatusError {
    /// No directory given and none derivable.
    #[error(transparent)]
    File(#[from] FileError),
    /// The directory has no state file.
    #[error(
        "no state files in {} (is a gateway running with the file reporter? see --state-dir)",
        .0.display()
    )]
    NoStateFiles(PathBuf),
    /// `--name` names no state file.
    #[error("no state file for gateway {name:?}: {} does not exist", path.display())]
    NoSuchGateway {
        /// The name asked for.
        name: String,
        /// Where its file would be.
        path: PathBuf,
    },
}

/// One gateway as read from its state file.
struct Entry {
    /// The gateway's file name without `.json` and instance suffix.
    name: String,
    /// 1 for `<name>.json`, n for `<name>@n.json` (another gateway of that name).
    instance: u32,
    /// The file.
    path: PathBuf,
    /// Its content and staleness, or why it could not be read.
    report: Result<(StateFile, Option<StaleReason>), StatusError>,
}

impl Entry {
    /// 0 Ready, 1 Degraded, 2 anything else.
    fn exit_code(&self) -> u8 {
        match &self.report {
            Ok((file, None)) => match file.status.phase {
                Phase::Ready => 0,
                Phase::Degraded => 1,
                Phase::Pending | Phase::Failed => 2,
            },
            Ok((_, Some(_))) | Err(_) => 2,
        }
    }
}

/// Runs `vmcp status`.
pub fn run(args: StatusArgs) -> ExitCode {
    let dir = match args
        .state_dir
        .clone()
        .or_else(|| default_state_dir(&ProcessEnv))
    {
        Some(dir) => dir,
        None => {
            eprintln!("vmcp status: {}", FileError::NoStateDir);
            return ExitCode::from(2);
        }
    };
    let host = LocalHost::new();
    if args.watch {
        return watch(&args, &dir, &host);
    }
    let (entries, problem) = load(&dir, args.name.as_deref(), Timestamp::now(), &host);
    if let Some(problem) = &problem {
        eprintln!("vmcp status: {}", error_chain(problem));
    }
    let code = worst(&entries, problem.is_some());
    if args.json {
        print_json(&entries, args.name.is_some());
    } else {
        print!("{}", render(&entries, Timestamp::now()));
    }
    ExitCode::from(code)
}

/// Redraws every `--interval` until Ctrl-C; exits with the last code.
fn watch(args: &StatusArgs, dir: &Path, host: &LocalHost) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("vmcp status: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let terminal = std::io::stdout().is_terminal();
    let code = runtime.block_on(async {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            let now = Timestamp::now();
            let (entries, problem) = load(dir, args.name.as_deref(), now, host);
            let code = worst(&entries, problem.is_some());
            let mut screen = String::new();
            if terminal {
                // Cursor home, clear the screen.
                screen.push_str("\x1b[H\x1b[2J");
            }
            let _ = writeln!(
                screen,
                "vmcp status, every {}; Ctrl-C to stop\n",
                format_duration(args.interval)
            );
            if let Some(problem) = &problem {
                let _ = writeln!(screen, "Error: {}\n", error_chain(problem));
            }
            screen.push_str(&render(&entries, now));
            if !terminal {
                screen.push('\n');
            }
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(screen.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                // Nobody is reading any more.
                break code;
            }
            drop(stdout);
            tokio::select! {
                _ = &mut ctrl_c => break code,
                () = tokio::time::sleep(args.interval) => {}
            }
        }
    });
    ExitCode::from(code)
}

/// Reads the state files: the one of `name`, or every one in `dir`. The
/// second value is a problem affecting the whole listing (no files).
fn load(
    dir: &Path,
    name: Option<&str>,
    now: Timestamp,
    host: &dyn HostProbe,
) -> (Vec<Entry>, Option<StatusError>) {
    let read = |path: PathBuf| {
        let stem = path
            .file_stem()
            .map(|stem| stem.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (name, instance) = split_instance(&stem);
        let report = read_state_file(&path)
            .map_err(StatusError::from)
            .map(|file| {
                let stale = staleness(&file.writer, now, host);
                (file, stale)
            });
        Entry {
            name: name.to_string(),
            instance,
            path,
            report,
        }
    };
    if let Some(name) = name {
        let path = dir.join(state_file_name(name));
        let instances: Vec<PathBuf> = (1..=MAX_INSTANCES)
            .map(|instance| dir.join(instance_file_name(name, instance)))
            .filter(|path| path.exists())
            .collect();
        if instances.is_empty() {
            let problem = StatusError::NoSuchGateway {
                name: name.to_string(),
                path,
            };
            return (Vec::new(), Some(problem));
        }
        return (instances.into_iter().map(read).collect(), None);
    }
    let files = match list_state_files(dir) {
        Ok(files) => files,
        Err(FileError::ListDir { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return (
                Vec::new(),
                Some(StatusError::NoStateFiles(dir.to_path_buf())),
            );
        }
        Err(err) => return (Vec::new(), Some(err.into())),
    };
    if files.is_empty() {
        return (
            Vec::new(),
            Some(StatusError::NoStateFiles(dir.to_path_buf())),
        );
    }
    let entries = files.into_iter().map(read).collect();
    (entries, None)
}

/// The worst exit code of the entries; 2 when there is a global problem.
fn worst(entries: &[Entry], problem: bool) -> u8 {
    let worst = entries.iter().map(Entry::exit_code).max().unwrap_or(2);
    if problem { 2 } else { worst }
}

/// Prints the state files with `stale` and `staleReason` added; errors go
/// to stderr.
fn print_json(entries: &[Entry], single: bool) {
    let mut values = Vec::new();
    for entry in entries {
        match &entry.report {
            Ok((file, stale)) => {
                let mut value = match serde_json::to_value(file) {
                    Ok(value) => value,
                    Err(err) => {
                        eprintln!("vmcp status: cannot encode {}: {err}", entry.path.display());
                        continue;
                    }
                };
                if let Some(object) = value.as_object_mut() {
                    object.insert("name".into(), entry.name.clone().into());
                    object.insert("instance".into(), entry.instance.into());
                    object.insert("stale".into(), stale.is_some().into());
                    object.insert(
                        "staleReason".into(),
                        stale
                            .as_ref()
                            .map_or(serde_json::Value::Null, |reason| reason.to_string().into()),
                    );
                }
                values.push(value);
            }
            Err(err) => eprintln!("vmcp status: {}", error_chain(err)),
        }
    }
    let output = if single && values.len() == 1 {
        match values.pop() {
            Some(value) => value,
            None => return,
        }
    } else {
        serde_json::Value::Array(values)
    };
    match serde_json::to_string_pretty(&output) {
        Ok(text) => println!("{text}"),
        Err(err) => eprintln!("vmcp status: cannot encode the output: {err}"),
    }
}

/// The human-readable view of every entry.
fn render(entries: &[Entry], now: Timestamp) -> String {
    let mut out = String::new();
    for (index, entry) in entries.iter().enumerate() {
        if index > 0 {
            out.push('\n');
        }
        // Writing to a String cannot fail.
        let _ = write!(out, "{:<LABEL$}{}", "Gateway:", entry.name);
        if entry.instance > 1 {
            // Another gateway of the same name, reporting to its own file.
            let _ = write!(out, " (instance {})", entry.instance);
        }
        out.push('\n');
        let (file, stale) = match &entry.report {
            Ok(report) => report,
            Err(err) => {
                let _ = writeln!(out, "{:<LABEL$}{}", "Error:", error_chain(err));
                continue;
            }
        };
        let status = &file.status;
        let _ = write!(out, "{:<LABEL$}{}", "Phase:", status.phase.as_str());
        if let Some(reason) = stale {
            let _ = write!(out, "  STALE: {reason}");
        }
        out.push('\n');
        let _ = writeln!(out, "{:<LABEL$}{}", "Message:", status.message);
        let writer = &file.writer;
        let _ = write!(
            out,
            "{:<LABEL$}pid {} on {}",
            "Writer:", writer.pid, writer.hostname
        );
        if let Some(address) = &writer.address {
            let _ = write!(out, ", {address}");
        }
        let _ = writeln!(out, ", since {}", ago(writer.started_at, now));
        let _ = writeln!(
            out,
            "{:<LABEL$}{} (heartbeat {}s)",
            "Reported:",
            ago(writer.written_at, now),
            writer.heartbeat_seconds
        );
        if let Some(generation) = status.observed_generation {
            let _ = writeln!(out, "{:<LABEL$}{generation}", "Generation:");
        }
        out.push('\n');
        if status.discovered_backends.is_empty() {
            out.push_str("No backends.\n");
            continue;
        }
        let mut rows = vec![
            [
                "BACKEND",
                "STATUS",
                "CIRCUIT",
                "FAILURES",
                "LAST CHECK",
                "MESSAGE",
            ]
            .map(String::from)
            .to_vec(),
        ];
        for backend in &status.discovered_backends {
            rows.push(vec![
                backend.name.clone(),
                backend.status.as_str().to_string(),
                backend
                    .circuit_breaker_state
                    .map_or("-", |state| state.as_str())
                    .to_string(),
                backend.consecutive_failures.to_string(),
                backend
                    .last_health_check
                    .map_or_else(|| "never".to_string(), |at| ago(at, now)),
                backend.message.clone().unwrap_or_else(|| "-".to_string()),
            ]);
        }
        out.push_str(&table(&rows));
        let listed = status.discovered_backends.len();
        if usize::try_from(status.backend_count).is_ok_and(|total| total > listed) {
            let _ = writeln!(
                out,
                "(listing the {listed} least healthy of {} backends)",
                status.backend_count
            );
        }
    }
    out
}

/// Left-aligned columns, two spaces apart, the last one unpadded.
fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[column]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `"12s ago"`, `"3m5s ago"`, `"2h10m ago"`, `"4d2h ago"`.
fn ago(then: Timestamp, now: Timestamp) -> String {
    format!("{} ago", format_duration(age(then, now)))
}

/// `"12s"`, `"3m5s"`, `"2h10m"`, `"4d2h"`; below a second, milliseconds.
fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match secs {
        0 if duration.subsec_millis() > 0 => format!("{}ms", duration.subsec_millis()),
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m{}s", secs / 60, secs % 60),
        3_600..86_400 => format!("{}h{}m", secs / 3_600, secs % 3_600 / 60),
        _ => format!("{}d{}h", secs / 86_400, secs % 86_400 / 3_600),
    }
}

/// `500ms`, `2s`, `1m`, `1h`, or a bare number of seconds; at least 100 ms.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid interval {text:?} (try 2s or 500ms)"))?;
    let scale = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3_600.0,
        _ => return Err(format!("invalid unit in {text:?} (use ms, s, m or h)")),
    };
    let interval = Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("invalid interval {text:?}"))?;
    if interval < MIN_INTERVAL {
        return Err(format!(
            "the interval must be at least {}",
            format_duration(MIN_INTERVAL)
        ));
    }
    Ok(interval)
}

/// The error and its sources on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let _ = write!(text, ": {inner}");
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        #[rustfmt::skip]
        let cases: [(&str, Option<Duration>); 9] = [
            ("2s", Some(Duration::from_secs(2))),
            ("500ms", Some(Duration::from_millis(500))),
            ("1m", Some(Duration::from_secs(60))),
            ("1.5s", Some(Duration::from_millis(1_500))),
            ("3", Some(Duration::from_secs(3))),
            ("1h", Some(Duration::from_secs(3_600))),
            ("10ms", None),
            ("2x", None),
            ("fast", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_interval(text).ok(), expected, "{text}");
        }
    }

    #[test]
    fn durations() {
        #[rustfmt::skip]
        let cases = [
            (Duration::from_millis(250), "250ms"),
            (Duration::ZERO, "0s"),
            (Duration::from_secs(12), "12s"),
            (Duration::from_secs(185), "3m5s"),
            (Duration::from_secs(7_800), "2h10m"),
            (Duration::from_secs(4 * 86_400 + 7_300), "4d2h"),
        ];
        for (duration, text) in cases {
            assert_eq!(format_duration(duration), text);
        }
    }

    #[test]
    fn columns_line_up() {
        let rows = vec![
            vec!["A".to_string(), "LONG HEADER".to_string(), "X".to_string()],
            vec!["long value".to_string(), "b".to_string(), "".to_string()],
        ];
        assert_eq!(table(&rows), "A           LONG HEADER  X\nlong value  b\n");
    }
}
