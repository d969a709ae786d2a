//! What the numbers were measured on, and with which command.

/// The machine and the moment of the run.
#[derive(Clone, Debug)]
pub struct Machine {
    /// CPUs available to this process (as `nproc` counts them).
    pub cpus: usize,
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// `MemTotal` from `/proc/meminfo`, in GiB.
    pub memory_gib: Option<f64>,
    /// Kernel release.
    pub kernel: String,
    /// 1-minute load average before the run.
    pub load_average: String,
    /// UTC time the run started.
    pub date: String,
    /// `git rev-parse --short HEAD`, `+dirty` with local changes.
    pub git: Option<String>,
}

/// Describes this machine now.
pub fn describe() -> Machine {
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".to_string());
    let memory_gib = read("/proc/meminfo")
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kib| kib / (1024.0 * 1024.0));
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model,
        memory_gib,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
        load_average: read("/proc/loadavg")
            .split_whitespace()
            .next()
            .unwrap_or("?")
            .to_string(),
        date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "?".to_string()),
        git: output("git", &["rev-parse", "--short", "HEAD"]).map(|commit| {
            let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|status| !status.is_empty());
            if dirty {
                format!("{commit}+dirty")
            } else {
                commit
            }
        }),
    }
}

/// The command that reproduces this run.
pub fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).map(|arg| quote(&arg)).collect();
    if args.is_empty() {
        "cargo run --release -p vmcp-bench".to_string()
    } else {
        format!("cargo run --release -p vmcp-bench -- {}", args.join(" "))
    }
}

fn quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=,./:@".contains(c));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
}
