//! Cooperative interruption: a cheap, clonable [`Interrupt`] that long
//! library loops (the eval runner, an optimizer's search, `lmc run` over
//! JSONL) check before they start new work, and that the CLI fires from
//! its SIGINT/SIGTERM handlers.
//!
//! The library never installs signal handlers and never prints: it only
//! stops issuing work when asked, lets what is in flight finish for at most
//! the interrupt's grace period, and hands back what finished, marked
//! incomplete. Every LM reply is in the response cache as soon as it
//! arrives, so what an interrupted run finished costs nothing when it is
//! re-run. A token rather than a global flag keeps `RunContext` free of
//! global state and lets a caller interrupt one evaluation among several.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long in-flight work may take to finish after an interrupt, unless
/// the caller says otherwise. Short on purpose: CI runners send SIGINT,
/// then SIGTERM about 7.5 s later (GitHub Actions) and kill soon after, and
/// the partial reports must be written before that.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(5);

/// A request to stop, shared between whoever fires it and the loops that
/// honour it. Clones share one state; firing any clone fires all.
#[derive(Debug, Clone)]
pub struct Interrupt {
    token: CancellationToken,
    /// Why it fired ("SIGINT", "SIGTERM", …); set once, by the first request.
    reason: Arc<OnceLock<String>>,
    grace: Duration,
}

impl Default for Interrupt {
    fn default() -> Self {
        Interrupt::new()
    }
}

impl Interrupt {
    /// An interrupt that has not fired, with [`DEFAULT_GRACE`].
    pub fn new() -> Self {
        Interrupt {
            token: CancellationToken::new(),
            reason: Arc::new(OnceLock::new()),
            grace: DEFAULT_GRACE,
        }
    }

    /// The same interrupt with another grace period for in-flight work.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// How long in-flight work may take to finish once this fired.
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// Ask every holder to stop. Returns true for the first request only,
    /// so a caller can treat a second one (a second Ctrl-C) differently.
    pub fn request(&self, reason: impl Into<String>) -> bool {
        let first = self.reason.set(reason.into()).is_ok();
        self.token.cancel();
        first
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Why the stop was requested (the first request's reason).
    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }

    /// Resolves once a stop is requested (at once if it already was).
    pub async fn requested(&self) {
        self.token.cancelled().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_wins_and_clones_share_state() {
        let a = Interrupt::new().with_grace(Duration::from_millis(10));
        let b = a.clone();
        assert!(!b.is_requested());
        assert_eq!(b.reason(), None);
        assert!(a.request("SIGINT"));
        assert!(!b.request("SIGTERM"), "a second request is not the first");
        assert!(b.is_requested());
        assert_eq!(b.reason(), Some("SIGINT"));
        assert_eq!(b.grace(), Duration::from_millis(10));
    }

    #[test]
    fn requested_resolves_after_the_request() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let i = Interrupt::new();
        let j = i.clone();
        rt.block_on(async move {
            let waiter = tokio::spawn(async move { j.requested().await });
            tokio::task::yield_now().await;
            assert!(!waiter.is_finished());
            i.request("test");
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("requested() resolves")
                .unwrap();
        });
    }
}
