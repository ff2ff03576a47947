//! Process logs: one JSON object per line on stdout, or a human format with `--log-format pretty`.

use tracing_subscriber::EnvFilter;

/// How process logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line (the default: machines read logs).
    #[default]
    Json,
    /// Aligned, colored text for humans at a terminal.
    Pretty,
}

/// Installs the process-wide log subscriber. `RUST_LOG` overrides `default_filter` (e.g. `info`,
/// `turnpike_gateway=debug`). Calling it twice is harmless (the second call does nothing).
pub fn init(format: LogFormat, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stdout);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        // Colors only for a terminal: escape codes in a file or pipe are noise.
        LogFormat::Pretty => {
            use std::io::IsTerminal;
            builder.with_target(false).with_ansi(std::io::stdout().is_terminal()).try_init()
        }
    };
}
