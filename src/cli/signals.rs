//! SIGINT/SIGTERM handling for long commands (`eval`, `run` over JSONL; the
//! optimizer can use the same): the first signal fires an
//! [`Interrupt`] so the library stops issuing work, lets what is in flight
//! finish (bounded by the grace period) and the command writes its reports
//! marked incomplete and exits 130; a second signal exits 130 at once.
//!
//! Nothing received is lost by the hard exit: each LM reply is committed to
//! the response cache (SQLite, WAL) as it arrives, so a re-run resumes.
//! Signals go to a task on the command's tokio runtime; the handlers are
//! registered before `install` returns, so there is no window in which a
//! Ctrl-C after start-up still kills the process without a report.

use std::time::Duration;

use crate::interrupt::{Interrupt, DEFAULT_GRACE};

/// The exit code of a command stopped by a signal (128 + SIGINT, as shells do).
pub const EXIT_INTERRUPTED: u8 = 130;

/// The grace period: `$LMC_INTERRUPT_GRACE` seconds, else 5 s.
fn grace() -> Duration {
    std::env::var("LMC_INTERRUPT_GRACE")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)))
        .unwrap_or(DEFAULT_GRACE)
}

/// Register the handlers on `rt` and return the interrupt they fire.
/// `on_first` runs (on the signal task) at the first signal, with the
/// signal's name, for commands that have no progress reporter to say it.
/// If the handlers cannot be registered the command runs without them (a
/// signal then ends it at once, as before) and a warning says so.
pub fn install(
    rt: &tokio::runtime::Runtime,
    on_first: impl Fn(&str) + Send + 'static,
) -> Interrupt {
    let interrupt = Interrupt::new().with_grace(grace());
    let _guard = rt.enter();
    let signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("warning: cannot handle Ctrl-C gracefully ({e}); it will stop lmc at once");
            return interrupt;
        }
    };
    let fire = interrupt.clone();
    rt.spawn(async move {
        let mut signals = signals;
        loop {
            let name = signals.next().await;
            if fire.request(name) {
                on_first(name);
            } else {
                eprintln!("\n{name} again: aborting at once (replies received so far are cached)");
                // Exiting skips destructors: commit the queued replies first.
                crate::lm::cache::flush_all();
                std::process::exit(EXIT_INTERRUPTED.into());
            }
        }
    });
    interrupt
}

/// The signals that interrupt a run: SIGINT and SIGTERM on unix, Ctrl-C
/// elsewhere.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> std::io::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {})
    }

    /// The name of the next signal received.
    #[cfg(unix)]
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> &'static str {
        if tokio::signal::ctrl_c().await.is_err() {
            // No handler could be installed: never report a signal.
            std::future::pending::<()>().await;
        }
        "Ctrl-C"
    }
}
