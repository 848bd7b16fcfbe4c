//! Terminal progress for long commands, implemented once here with
//! indicatif and shared by `lmc eval` and `lmc compile`.
//!
//! Library code reports through traits ([`crate::eval::EvalReporter`]); this
//! module turns those callbacks into progress bars on stderr. Bars are
//! hidden when stderr is not a terminal (CI logs, pipes) or when `--quiet`
//! asks, so machine-readable stdout and logs stay clean; off a terminal a
//! standalone eval prints a short plain line now and then instead, so a
//! long run in a log is never silent.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::eval::{EvalReporter, ExampleResult, RunningStats};

/// Where bars draw: stderr (indicatif hides it when stderr is not a
/// terminal), or nowhere when `quiet`.
pub fn draw_target(quiet: bool) -> ProgressDrawTarget {
    if quiet {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr_with_hz(10)
    }
}

/// A bar of `total` steps with lmc's style: `prefix [####----] pos/len msg`.
pub fn bar(total: u64, prefix: &str, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), draw_target(quiet));
    let style = ProgressStyle::with_template(
        "{prefix:>10.bold} [{bar:28.cyan/blue}] {pos}/{len} {msg} [{elapsed_precise} < {eta}]",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_prefix(prefix.to_string());
    pb
}

/// A spinner for steps of unknown length (proposing instructions, loading).
pub fn spinner(message: &str, quiet: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, draw_target(quiet));
    let style = ProgressStyle::with_template("{spinner:.green} {msg} [{elapsed}]")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    pb.set_style(style);
    pb.set_message(message.to_string());
    pb.enable_steady_tick(Duration::from_millis(120));
    pb
}

/// Several bars at once (an optimizer's trials above candidate evals).
pub fn multi(quiet: bool) -> MultiProgress {
    MultiProgress::with_draw_target(draw_target(quiet))
}

/// `12345` -> `12.3k`, `2500000` -> `2.5M`.
pub fn human_count(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// The running-figures message shown next to an eval bar.
pub fn eval_message(s: &RunningStats) -> String {
    let rate = if s.elapsed_s > 0.0 {
        s.done as f64 / s.elapsed_s
    } else {
        0.0
    };
    let mut m = format!(
        "score {:.3} · {rate:.1} ex/s · {} tok",
        s.mean,
        human_count(s.prompt_tokens + s.completion_tokens)
    );
    if s.cost > 0.0 {
        m.push_str(&format!(" · ${:.4}", s.cost));
    }
    if s.cache_hits > 0 {
        m.push_str(&format!(" · {} cached", s.cache_hits));
    }
    if s.errors > 0 {
        m.push_str(&format!(" · {} err", s.errors));
    }
    m
}

/// Eval progress on a bar: running score, rate, tokens, cost. Off a
/// terminal (CI logs, `nohup`), where the bar is hidden, a run that has
/// lasted [`QUIET_START`] prints a plain line instead at every tenth of the
/// run, and at least every [`LINE_EVERY`], so a log shows it is alive and
/// when it will end; a short (or fully cached) run prints none.
pub struct EvalProgress {
    bar: ProgressBar,
    lines: Option<Mutex<LineLog>>,
}

/// The longest gap between two plain progress lines.
pub const LINE_EVERY: Duration = Duration::from_secs(10);

/// How long a run goes before its first plain progress line.
pub const QUIET_START: Duration = Duration::from_secs(5);

struct LineLog {
    prefix: String,
    last: Instant,
    /// The last tenth of the run a line was printed for.
    decile: usize,
}

impl EvalProgress {
    /// A standalone bar on stderr (plain lines when stderr is no terminal).
    pub fn new(prefix: &str, quiet: bool) -> Self {
        let lines = (!quiet && !std::io::stderr().is_terminal()).then(|| {
            Mutex::new(LineLog {
                prefix: prefix.to_string(),
                last: Instant::now(),
                decile: 0,
            })
        });
        EvalProgress {
            bar: bar(0, prefix, quiet),
            lines,
        }
    }

    /// A bar inside a [`MultiProgress`] (e.g. under a compile's trial bar).
    pub fn in_multi(multi: &MultiProgress, prefix: &str) -> Self {
        let b = multi.add(bar(0, prefix, false));
        EvalProgress {
            bar: b,
            lines: None,
        }
    }

    fn line(&self, running: &RunningStats) {
        let Some(log) = &self.lines else { return };
        let Ok(mut log) = log.lock() else { return };
        let total = running.total.max(1);
        let decile = running.done * 10 / total;
        let finished = running.done == running.total;
        let young = running.elapsed_s < QUIET_START.as_secs_f64();
        if finished || young || (decile == log.decile && log.last.elapsed() < LINE_EVERY) {
            return;
        }
        log.decile = decile;
        log.last = Instant::now();
        let eta = if running.done > 0 {
            let per = running.elapsed_s / running.done as f64;
            format!(
                ", about {:.0} s left",
                per * (running.total - running.done) as f64
            )
        } else {
            String::new()
        };
        eprintln!(
            "{}: {}/{} ({}%) · {} · {:.0} s elapsed{eta}",
            log.prefix,
            running.done,
            running.total,
            running.done * 100 / total,
            eval_message(running),
            running.elapsed_s
        );
    }

    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }
}

impl EvalReporter for EvalProgress {
    fn start(&self, total: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(0);
        self.bar.reset_eta();
    }

    fn example_done(&self, _r: &ExampleResult, running: &RunningStats) {
        self.bar.set_position(running.done as u64);
        self.bar.set_message(eval_message(running));
        self.line(running);
    }

    // Printed even with --quiet: the user pressed Ctrl-C and must see that
    // lmc is winding down rather than hanging.
    fn interrupted(&self, reason: &str, in_flight: usize, grace: std::time::Duration) {
        self.bar.suspend(|| {
            eprintln!(
                "{reason}: stopping; no new examples, waiting up to {:.0} s for {in_flight} in flight \
                 (press Ctrl-C again to abort at once)",
                grace.as_secs_f64()
            )
        });
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_humanised() {
        assert_eq!(human_count(999), "999");
        assert_eq!(human_count(12_345), "12.3k");
        assert_eq!(human_count(2_500_000), "2.5M");
    }
}
