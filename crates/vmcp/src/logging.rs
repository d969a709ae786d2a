//! Log setup: `RUST_LOG` wins, then the config's `operational.logLevel`, then `info`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber, writing to stderr.
pub fn init(config_level: Option<&str>, json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        let level = config_level.unwrap_or("info");
        // Dependencies are noisy at debug; keep them at warn unless RUST_LOG says otherwise.
        EnvFilter::new(format!(
            "warn,vmcp={level},vmcp_gateway={level},vmcp_config={level},mcp_legacy_sse={level}"
        ))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
