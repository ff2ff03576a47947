//! The `turnpike` binary: command line, startup, signals, and the embedded demo. No gateway logic lives here.

mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use turnpike_gateway::config::{self, ConfigSource};
use turnpike_gateway::state::State;
use turnpike_gateway::{GatewayHandle, StartError, StartOptions, control};
use turnpike_telemetry::LogFormat;

// The allocator is chosen by measurement (bench/RESULTS.md); both features at once is a build error by design.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit status: success.
const EXIT_OK: u8 = 0;
/// Exit status: the configuration is invalid.
const EXIT_INVALID_CONFIG: u8 = 1;
/// Exit status: the command line is wrong (clap uses it too).
const EXIT_USAGE: u8 = 2;
/// Exit status: the gateway could not start or run (address in use, control socket unreachable, ...).
const EXIT_RUNTIME: u8 = 3;

const EXAMPLES: &str = "\
Examples:
  turnpike demo                        three demo services behind a gateway on 127.0.0.1:8080
  turnpike run -c gateway.yaml         run (reloads on SIGHUP and when the file changes)
  turnpike run -c conf.d/ --workers 4  a directory of YAML/JSON files, merged in name order
  turnpike validate -c gateway.yaml    every error in a config, with file:line:col
  turnpike routes -c gateway.yaml      the compiled route table, in precedence order
  turnpike reload -c gateway.yaml      reload the gateway running gateway.yaml, show the result
  turnpike schema > turnpike.json      the JSON Schema of the config (for editors)

Exit status: 0 ok, 1 invalid configuration, 2 usage error,
3 runtime error (cannot bind, cannot reach the gateway).";

/// Turnpike: an API gateway for microservices.
#[derive(Debug, Parser)]
#[command(name = "turnpike", version, after_help = EXAMPLES, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Process log format: `json` (one object per line, the default for `run`) or `pretty` (the default for `demo`).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Json,
    Pretty,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway with a configuration file or directory.
    Run(RunArgs),
    /// Check a configuration: every error at once, with file:line:col and the field path; nothing is started.
    Validate(ValidateArgs),
    /// Print the compiled route table in precedence order (the order requests are matched against it).
    Routes(ConfigArg),
    /// Print the JSON Schema of the configuration (or the Markdown reference).
    Schema(SchemaArgs),
    /// Run the demo: users, orders and products services behind a gateway on 127.0.0.1:8080.
    Demo(DemoArgs),
    /// Ask a running gateway to reload its configuration, and print the outcome.
    Reload(ReloadArgs),
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// Configuration file (YAML or JSON) or directory of them.
    #[arg(short, long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Worker threads (default: `server.workers` from the config, else one per CPU core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// Control socket for `turnpike reload` (default: derived from the config path, in $XDG_RUNTIME_DIR or /tmp).
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,
    /// Do not open a control socket.
    #[arg(long)]
    no_control_socket: bool,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: ReportFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
struct SchemaArgs {
    /// `json` (JSON Schema) or `markdown` (the configuration reference, as in docs/config.md).
    #[arg(long, value_enum, default_value = "json")]
    format: SchemaFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SchemaFormat {
    Json,
    Markdown,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Worker threads for the demo gateway.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    workers: u16,
}

#[derive(Debug, Args)]
struct ReloadArgs {
    /// The configuration the running gateway was started with (finds its control socket).
    #[arg(short, long, value_name = "FILE", required_unless_present = "control_socket")]
    config: Option<PathBuf>,
    /// The running gateway's control socket.
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return ExitCode::from(if err.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    let code = match cli.command {
        Command::Run(args) => {
            init_logs(cli.log_format, LogFormat::Json);
            run(args)
        }
        Command::Demo(args) => {
            init_logs(cli.log_format, LogFormat::Pretty);
            demo(args)
        }
        Command::Validate(args) => validate(args),
        Command::Routes(args) => routes(args),
        Command::Schema(args) => schema(args),
        Command::Reload(args) => reload(args),
    };
    ExitCode::from(code)
}

fn init_logs(arg: Option<LogFormatArg>, default: LogFormat) {
    let format = match arg {
        Some(LogFormatArg::Json) => LogFormat::Json,
        Some(LogFormatArg::Pretty) => LogFormat::Pretty,
        None => default,
    };
    turnpike_telemetry::logging::init(format, "info");
}

fn control_runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => Some(rt),
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            None
        }
    }
}

fn run(args: RunArgs) -> u8 {
    let Some(rt) = control_runtime() else { return EXIT_RUNTIME };
    rt.block_on(async {
        let mut options = StartOptions::file(&args.config.config);
        options.workers = args.workers.map(usize::from);
        let handle = match GatewayHandle::start(options).await {
            Ok(handle) => handle,
            Err(err) => return start_failed(err),
        };
        let _control = if args.no_control_socket {
            None
        } else {
            let path = args.control_socket.unwrap_or_else(|| control::default_path(&args.config.config));
            match control::serve(path.clone(), handle.clone()).await {
                Ok(task) => {
                    tracing::info!(path = %path.display(), "control socket ready (turnpike reload)");
                    Some(task)
                }
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "no control socket; reload with SIGHUP");
                    None
                }
            }
        };
        serve_until_signalled(handle).await
    })
}

fn start_failed(err: StartError) -> u8 {
    match err {
        StartError::Config(report) => {
            tracing::error!(errors = report.len(), "invalid configuration");
            eprintln!("{report}");
            EXIT_INVALID_CONFIG
        }
        other => {
            tracing::error!(error = %other, source = ?std::error::Error::source(&other), "cannot start");
            EXIT_RUNTIME
        }
    }
}

/// Runs until SIGTERM or SIGINT (then drains and returns 0); SIGHUP reloads. A second SIGTERM/SIGINT during the
/// drain stops at once.
async fn serve_until_signalled(handle: GatewayHandle) -> u8 {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term), Ok(mut int), Ok(mut usr1)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return EXIT_RUNTIME;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading");
                let handle = handle.clone();
                let _ = tokio::task::spawn_blocking(move || handle.reload()).await;
            }
            _ = usr1.recv() => {
                tracing::info!("SIGUSR1: reopening the access log");
                handle.reopen_access_log();
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!(open_connections = handle.open_connections(), "shutting down: draining in-flight requests");
    tokio::select! {
        cut = handle.shutdown() => {
            if cut > 0 {
                tracing::warn!(connections = cut, "drain deadline passed; connections closed");
            }
            EXIT_OK
        }
        _ = term.recv() => EXIT_OK,
        _ = int.recv() => EXIT_OK,
    }
}

fn demo(args: DemoArgs) -> u8 {
    let Some(rt) = control_runtime() else { return EXIT_RUNTIME };
    rt.block_on(async {
        let addr = |s: &str| s.parse().unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
        let inventory = demo::INVENTORY_ADDRS.map(addr);
        let services =
            match demo::start(addr(demo::USERS_ADDR), addr(demo::ORDERS_ADDR), addr(demo::PRODUCTS_ADDR), inventory)
                .await
            {
                Ok(services) => services,
                Err(err) => {
                    tracing::error!(error = %err, "cannot start the demo services (ports 9101-9106 in use?)");
                    return EXIT_RUNTIME;
                }
            };
        let options = StartOptions {
            source: ConfigSource::text("examples/demo.yaml (embedded)", demo::CONFIG),
            workers: Some(usize::from(args.workers)),
            access_log: turnpike_gateway::AccessLogSink::Stdout,
            watch: false,
        };
        let handle = match GatewayHandle::start(options).await {
            Ok(handle) => handle,
            Err(err) => return start_failed(err),
        };
        let gateway = handle.listener_addr("public").unwrap_or(addr("127.0.0.1:8080"));
        let admin = handle.admin_addr().unwrap_or(addr(demo::ADMIN_ADDR));
        let token = demo::demo_token(std::time::Duration::from_secs(24 * 3600));
        println!("{}", demo::banner(gateway, admin, &token));
        let code = serve_until_signalled(handle).await;
        drop(services);
        code
    })
}

fn validate(args: ValidateArgs) -> u8 {
    let source = ConfigSource::File(args.config.config.clone());
    match config::load_and_compile(&source, &State::default(), 1) {
        Ok(snapshot) => {
            match args.format {
                ReportFormat::Text => println!(
                    "{}: ok ({} listeners, {} upstreams, {} routes)",
                    args.config.config.display(),
                    snapshot.listeners.len(),
                    snapshot.upstreams.len(),
                    snapshot.routes.len()
                ),
                ReportFormat::Json => println!("{}", serde_json::json!({ "ok": true, "errors": [] })),
            }
            EXIT_OK
        }
        Err(report) => {
            match args.format {
                ReportFormat::Text => eprintln!("{report}"),
                ReportFormat::Json => println!("{}", serde_json::json!({ "ok": false, "errors": report.to_json() })),
            }
            EXIT_INVALID_CONFIG
        }
    }
}

fn routes(args: ConfigArg) -> u8 {
    let source = ConfigSource::File(args.config.clone());
    let snapshot = match config::load_and_compile(&source, &State::default(), 1) {
        Ok(snapshot) => snapshot,
        Err(report) => {
            eprintln!("{report}");
            return EXIT_INVALID_CONFIG;
        }
    };
    println!(
        "{:<5} {:<22} {:<18} {:<14} {:<30} {:<14} {:<20} WHY",
        "RANK", "HOST", "ROUTE", "METHODS", "PATH", "UPSTREAM", "AUTH"
    );
    for info in snapshot.routes.in_precedence_order() {
        let methods = if info.methods.is_empty() {
            "*".to_string()
        } else {
            info.methods.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(",")
        };
        let path = match info.path {
            turnpike_router::PathMatch::Exact(p) => format!("= {p}"),
            turnpike_router::PathMatch::Template(p) => format!("~ {p}"),
            turnpike_router::PathMatch::Prefix(p) => format!("^ {p}"),
            turnpike_router::PathMatch::Regex(r) => format!("re {r}"),
        };
        let rules = info.headers.len() + info.query.len();
        let path = if rules > 0 { format!("{path} (+{rules} rules)") } else { path };
        // Who may call: `public` without `auth`, else the policies (`|` any of, `+` all of), `?` when anonymous
        // callers are let in too.
        let auth = match &info.value.auth {
            None => "public".to_string(),
            Some(chain) => chain.summary(),
        };
        println!(
            "{:<5} {:<22} {:<18} {:<14} {:<30} {:<14} {:<20} {}",
            info.rank + 1,
            info.host.to_string(),
            info.value.id,
            methods,
            path,
            info.value.upstream.id,
            auth,
            info.explanation
        );
    }
    EXIT_OK
}

fn schema(args: SchemaArgs) -> u8 {
    match args.format {
        SchemaFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&config::schema::json_schema()).unwrap_or_default())
        }
        SchemaFormat::Markdown => print!("{}", config::schema::markdown()),
    }
    EXIT_OK
}

fn reload(args: ReloadArgs) -> u8 {
    let Some(path) = args.control_socket.or_else(|| args.config.as_deref().map(control::default_path)) else {
        eprintln!("error: give --config or --control-socket");
        return EXIT_USAGE;
    };
    let Some(rt) = control_runtime() else { return EXIT_RUNTIME };
    match rt.block_on(control::request(&path, "reload")) {
        Ok(reply) if reply["ok"] == true => {
            println!("reloaded: generation {}", reply["generation"]);
            EXIT_OK
        }
        Ok(reply) => {
            eprintln!(
                "reload refused; the running configuration keeps serving:\n{}",
                reply["error"].as_str().unwrap_or("")
            );
            EXIT_INVALID_CONFIG
        }
        Err(err) => {
            eprintln!("error: cannot reach a gateway on {}: {err}", path.display());
            EXIT_RUNTIME
        }
    }
}
