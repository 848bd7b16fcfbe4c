//! `lmc serve`: run a program or compiled artifact as an HTTP service
//! (`crate::serve` owns the server; this file owns the flags, the
//! listening address rule, the LM set-up and what is said on the terminal).
//!
//! The LM, the response cache, the tools and the trust checks are exactly
//! those `lmc run` would use for the same file and flags: a served program
//! never gets more than `lmc run` would give it. The server listens on
//! loopback unless `--public` says otherwise, because `/v1/run` spends LM
//! tokens for whoever can reach it. The address is printed on stdout
//! (`listening on http://ADDR`) once the socket is bound, so a script can
//! start it with `--port 0` and read the port; the access log goes to stderr.
//!
//! The first SIGTERM or SIGINT closes the listener and finishes every
//! request already received, then exits 0; past `--drain-timeout` it exits
//! 130 saying how many were abandoned; a second signal exits 130 at once.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::cli::lm_args::LmArgs;
use crate::cli::CliError;
use crate::run::RunContext;
use crate::serve::{AccessEntry, Ended, Limits, Options};
use crate::settings::Target;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Program file or compiled artifact (default: the project's program).
    pub file: Option<PathBuf>,
    /// Address to listen on. Loopback unless --public is given.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Port to listen on (overrides the port of --bind; 0 picks a free one,
    /// printed on stdout).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Allow --bind on an address other than loopback. Anyone who can reach
    /// it can spend your LM budget: put an authenticating reverse proxy in
    /// front (docs/deploy.md).
    #[arg(long)]
    pub public: bool,
    /// Program runs at once; more requests wait in the queue.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_in_flight: usize,
    /// Requests that may wait for a run slot; beyond, 503 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub queue: usize,
    /// Longest a queued request waits for a slot before a 503.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub queue_timeout: f64,
    /// After SIGTERM/SIGINT, longest wait for requests in flight before
    /// exiting anyway (keep it under your orchestrator's kill timeout;
    /// Kubernetes allows 30 s by default).
    #[arg(long, value_name = "SECS", default_value_t = 25.0)]
    pub drain_timeout: f64,
    /// Largest request body accepted (413 beyond).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    pub max_body_bytes: usize,
    /// Do not write the access log (one line per request on stderr).
    #[arg(long)]
    pub no_access_log: bool,
    /// Fail (exit 2) instead of warning when a compiled artifact's program
    /// file changed since it was compiled.
    #[arg(long)]
    pub strict: bool,
    #[command(flatten)]
    pub lm: LmArgs,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let addr = listen_addr(&args)?;
    let limits = limits(&args)?;
    let drain = seconds("--drain-timeout", args.drain_timeout)?;
    let target = super::target::load(args.file.as_deref(), args.strict)?;
    args.lm.trust.check_exec(&target, None)?;
    let (ctx, built) = lm_and_context(&args.lm, &target)?;
    let rt = crate::cli::runtime()?;
    let app = crate::serve::App::new(
        target.program.clone(),
        target.overlay.clone(),
        target.artifact.is_some(),
        ctx,
        Options {
            limits,
            max_body_bytes: args.max_body_bytes,
            access_log: (!args.no_access_log).then(access_log),
        },
    );
    let listener = rt.block_on(tokio::net::TcpListener::bind(addr)).map_err(|e| {
        CliError::Input(format!(
            "cannot listen on {addr}: {e}\n  = help: pick another port with --port (0 picks a free one)"
        ))
    })?;
    let bound = listener.local_addr()?;
    let stop_app = app.clone();
    let stop = crate::cli::signals::install(&rt, move |name| {
        eprintln!(
            "{name}: not accepting new connections; finishing {} request(s) in flight (press Ctrl-C again to stop at once)",
            stop_app.pending()
        )
    });
    eprintln!(
        "serving {} ({}) with model {} over {}; max {} runs in flight, {} queued",
        target.program.name,
        target.path.display(),
        built.default.lm.model(),
        built.default.backend,
        limits.max_in_flight,
        limits.queue
    );
    if !bound.ip().is_loopback() {
        eprintln!(
            "warning: listening on {bound}, beyond this machine: anyone who can reach it can run the program and spend LM tokens (put an authenticating reverse proxy in front, see docs/deploy.md)"
        );
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{bound}")?;
        out.flush()?;
    }
    let ended = rt.block_on(crate::serve::serve(listener, app, stop.clone(), drain))?;
    // Replies received during the drain are committed before exit.
    if let Some(cache) = &built.default.cache {
        cache.flush();
    }
    match ended {
        Ended::Drained => {
            if let Some(reason) = stop.reason() {
                eprintln!("{reason}: every request received was answered; stopped");
            }
            Ok(ExitCode::SUCCESS)
        }
        Ended::Abandoned(n) => {
            eprintln!(
                "drain timeout ({} s) passed with {n} request(s) unanswered; stopped (their finished LM calls are cached)",
                args.drain_timeout
            );
            Ok(ExitCode::from(crate::cli::signals::EXIT_INTERRUPTED))
        }
    }
}

/// Every LM of the program (the default and its named `lms:`) and the run
/// context, resolved and built exactly as `lmc run` does (`lm::resolve`).
fn lm_and_context(
    lm: &LmArgs,
    target: &Target,
) -> anyhow::Result<(RunContext, crate::cli::lm_args::BuiltLms)> {
    let lms = lm.build(target)?;
    let ctx = lms.context(&target.program)?;
    Ok((ctx, lms))
}

/// `--bind` with `--port` applied; a non-loopback address needs `--public`.
fn listen_addr(args: &Args) -> Result<SocketAddr, CliError> {
    let mut addr = args.bind;
    if let Some(p) = args.port {
        addr.set_port(p);
    }
    if !addr.ip().is_loopback() && !args.public {
        return Err(CliError::Input(format!(
            "refusing to listen on {addr}: it is not a loopback address, and anyone who can reach it could run the program and spend LM tokens\n  = help: add --public to mean it (behind an authenticating reverse proxy, see docs/deploy.md), or use --bind 127.0.0.1:{}",
            addr.port()
        )));
    }
    Ok(addr)
}

fn limits(args: &Args) -> Result<Limits, CliError> {
    if args.max_in_flight == 0 {
        return Err(CliError::Input("--max-in-flight must be at least 1".into()));
    }
    Ok(Limits {
        max_in_flight: args.max_in_flight,
        queue: args.queue,
        queue_timeout: seconds("--queue-timeout", args.queue_timeout)?,
    })
}

fn seconds(flag: &str, v: f64) -> Result<Duration, CliError> {
    if v.is_finite() && (0.0..=86_400.0).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(CliError::Input(format!(
            "{flag} must be a number of seconds between 0 and 86400, got {v}"
        )))
    }
}

/// One line per request on stderr: time, method, path, status, duration.
/// Never the query, headers or body (inputs and keys stay out of logs).
fn access_log() -> crate::serve::AccessLog {
    Arc::new(|e: &AccessEntry| {
        let now = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
            ))
            .unwrap_or_default();
        eprintln!(
            "{now} {} {} {} {:.1}ms",
            e.method,
            e.path,
            e.status,
            e.elapsed.as_secs_f64() * 1000.0
        );
    })
}
