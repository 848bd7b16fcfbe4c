//! Summary statistics and significance tests for eval scores.
//!
//! Everything here is pure and seeded so the same scores always give the
//! same interval and the same p-value: a CI gate must not flap because a
//! random number generator moved. The mean's 95% interval is closed-form,
//! because it is computed for every eval and every optimizer candidate and a
//! bootstrap of 10k resamples was most of a short run's CPU: Wilson's score
//! interval when every score is 0 or 1 (good coverage even near 0 and 1,
//! where the normal interval collapses), Student's t otherwise, clamped to
//! the observed range. Regressions against a baseline are judged with a
//! paired test on per-example differences (McNemar's exact test when every
//! score is 0 or 1, a paired bootstrap otherwise), one-sided because a gate
//! only asks "did it get worse?".

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Fixed seed of every resampling here (determinism over cleverness).
pub const SEED: u64 = 0x1AC_E7A1;

/// Arithmetic mean (0 for no values).
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// Bootstrap means of `xs` (resampled with replacement), sorted.
fn bootstrap_means(xs: &[f64], resamples: usize, seed: u64) -> Vec<f64> {
    let n = xs.len();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        let mut sum = 0.0;
        for _ in 0..n {
            sum += xs[rng.gen_range(0..n)];
        }
        means.push(sum / n as f64);
    }
    means.sort_by(|a, b| a.total_cmp(b));
    means
}

/// How a 95% interval of the mean was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntervalMethod {
    /// Wilson score interval for a proportion (every score 0 or 1).
    #[default]
    Wilson,
    /// Student's t interval of the mean, clamped to the observed range.
    StudentT,
}

/// Two-sided 95% normal quantile, Φ⁻¹(0.975).
const Z95: f64 = 1.959_963_984_540_054;

/// 95% interval of the mean of `xs`: Wilson's score interval when every
/// value is 0 or 1, else Student's t clamped to `[min, max]` of the values.
/// An empty set gives (0, 0); a single value or a constant set collapses to
/// the mean (Wilson excepted: it stays honest about 1 of 1).
pub fn ci95(xs: &[f64]) -> (f64, f64, IntervalMethod) {
    if xs.is_empty() {
        return (0.0, 0.0, IntervalMethod::Wilson);
    }
    if is_binary(xs) {
        let k = xs.iter().filter(|x| **x == 1.0).count();
        let (lo, hi) = wilson95(k, xs.len());
        return (lo, hi, IntervalMethod::Wilson);
    }
    let (lo, hi) = student_t95(xs);
    (lo, hi, IntervalMethod::StudentT)
}

/// Wilson score interval (95%) for `k` successes in `n` trials.
pub fn wilson95(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 0.0);
    }
    let n = n as f64;
    let p = k as f64 / n;
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((center - half).max(0.0), (center + half).min(1.0))
}

/// Student's t interval (95%) of the mean, clamped to the observed range
/// (a mean cannot lie outside it, and small samples of bounded scores would
/// otherwise report impossible values).
pub fn student_t95(xs: &[f64]) -> (f64, f64) {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let m = mean(xs);
    let n = xs.len();
    if n < 2 {
        return (m, m);
    }
    let var = xs.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1) as f64;
    if var <= 0.0 || !var.is_finite() {
        return (m, m);
    }
    let t = StudentsT::new(0.0, 1.0, (n - 1) as f64)
        .map(|d| d.inverse_cdf(0.975))
        .unwrap_or(Z95);
    let half = t * (var / n as f64).sqrt();
    let lo = xs.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    ((m - half).max(lo), (m + half).min(hi))
}

/// Which paired test decided a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairedTest {
    /// Exact binomial test on the discordant pairs (binary scores).
    McNemarExact,
    /// Bootstrap of the mean per-example difference.
    PairedBootstrap,
    /// Student's t on the per-example differences (`lmc compare`).
    PairedT,
}

impl PairedTest {
    pub fn name(&self) -> &'static str {
        match self {
            PairedTest::McNemarExact => "McNemar's exact test (one-sided)",
            PairedTest::PairedBootstrap => "paired bootstrap (one-sided, 10k resamples)",
            PairedTest::PairedT => "paired t-test",
        }
    }
}

/// The outcome of comparing current scores with baseline scores, paired by
/// example.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairedComparison {
    pub n: usize,
    pub baseline_mean: f64,
    pub current_mean: f64,
    /// baseline mean − current mean (positive = worse now).
    pub drop: f64,
    pub test: PairedTest,
    /// One-sided p-value for "current is worse than baseline".
    pub p_value: f64,
    /// Binary case: baseline right / current wrong, and the reverse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discordant: Option<(usize, usize)>,
}

fn is_binary(xs: &[f64]) -> bool {
    xs.iter().all(|&x| x == 0.0 || x == 1.0)
}

/// Compare paired scores (same examples, same order). Uses McNemar's exact
/// test when every score on both sides is 0 or 1, else a paired bootstrap.
pub fn compare_paired(baseline: &[f64], current: &[f64]) -> PairedComparison {
    let n = baseline.len().min(current.len());
    let (baseline, current) = (&baseline[..n], &current[..n]);
    let baseline_mean = mean(baseline);
    let current_mean = mean(current);
    let drop = baseline_mean - current_mean;
    if is_binary(baseline) && is_binary(current) {
        let mut b = 0; // baseline right, current wrong: a regression
        let mut c = 0; // baseline wrong, current right: an improvement
        for (x, y) in baseline.iter().zip(current) {
            if *x == 1.0 && *y == 0.0 {
                b += 1;
            } else if *x == 0.0 && *y == 1.0 {
                c += 1;
            }
        }
        PairedComparison {
            n,
            baseline_mean,
            current_mean,
            drop,
            test: PairedTest::McNemarExact,
            p_value: mcnemar_exact_one_sided(b, c),
            discordant: Some((b, c)),
        }
    } else {
        let diffs: Vec<f64> = current.iter().zip(baseline).map(|(c, b)| c - b).collect();
        PairedComparison {
            n,
            baseline_mean,
            current_mean,
            drop,
            test: PairedTest::PairedBootstrap,
            p_value: paired_bootstrap_p(&diffs, 10_000, SEED),
            discordant: None,
        }
    }
}

/// One-sided exact McNemar p-value: the probability, under "regressions and
/// improvements are equally likely", of seeing at least `b` regressions
/// among the `b + c` discordant pairs. P(X ≥ b), X ~ Binomial(b + c, ½).
pub fn mcnemar_exact_one_sided(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    // Sum the binomial tail in log space: n can be in the thousands.
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_choose = 0.0f64; // ln C(n, 0)
    let mut terms = Vec::with_capacity(n + 1);
    for k in 0..=n {
        if k > 0 {
            ln_choose += ((n - k + 1) as f64).ln() - (k as f64).ln();
        }
        if k >= b {
            terms.push(ln_choose + ln_half_n);
        }
    }
    let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let p = max.exp() * terms.iter().map(|t| (t - max).exp()).sum::<f64>();
    p.clamp(0.0, 1.0)
}

/// One-sided paired-bootstrap p-value for "the mean difference
/// (current − baseline) is below zero": the share of resampled mean
/// differences that are ≥ 0, with the usual +1 correction so it is never 0.
pub fn paired_bootstrap_p(diffs: &[f64], resamples: usize, seed: u64) -> f64 {
    if diffs.is_empty() {
        return 1.0;
    }
    if diffs.iter().all(|d| *d == 0.0) {
        return 1.0;
    }
    let means = bootstrap_means(diffs, resamples, seed);
    let at_least_zero = means.iter().filter(|m| **m >= 0.0).count();
    (at_least_zero as f64 + 1.0) / (resamples as f64 + 1.0)
}

/// A candidate against a reference, paired by example, both ways: what
/// `lmc compare` reports for every cell (the eval gate above only asks
/// "worse?", a comparison table also wants "different?").
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairedDifference {
    pub n: usize,
    /// candidate mean − reference mean (negative = candidate worse).
    pub mean_diff: f64,
    pub test: PairedTest,
    /// One-sided p-value for "the candidate is worse".
    pub p_worse: f64,
    /// Two-sided p-value for "the candidate differs".
    pub p_two_sided: f64,
}

/// Test paired scores (same examples, same order): McNemar's exact test on
/// the discordant pairs when every score is 0 or 1, else Student's paired
/// t on the differences. The t-test is the textbook choice for a mean of
/// bounded per-example scores and, unlike a bootstrap, costs nothing and
/// needs no seed.
pub fn paired_difference(reference: &[f64], candidate: &[f64]) -> PairedDifference {
    let n = reference.len().min(candidate.len());
    let (reference, candidate) = (&reference[..n], &candidate[..n]);
    let mean_diff = mean(candidate) - mean(reference);
    if is_binary(reference) && is_binary(candidate) {
        let worse = reference
            .iter()
            .zip(candidate)
            .filter(|(r, c)| **r == 1.0 && **c == 0.0)
            .count();
        let better = reference
            .iter()
            .zip(candidate)
            .filter(|(r, c)| **r == 0.0 && **c == 1.0)
            .count();
        // Two-sided exact: double the tail of the larger count, capped at 1.
        let p_two_sided = if worse + better == 0 {
            1.0
        } else {
            (2.0 * mcnemar_exact_one_sided(worse.max(better), worse.min(better))).min(1.0)
        };
        return PairedDifference {
            n,
            mean_diff,
            test: PairedTest::McNemarExact,
            p_worse: mcnemar_exact_one_sided(worse, better),
            p_two_sided,
        };
    }
    let diffs: Vec<f64> = candidate
        .iter()
        .zip(reference)
        .map(|(c, r)| c - r)
        .collect();
    let (p_worse, p_two_sided) = paired_t(&diffs);
    PairedDifference {
        n,
        mean_diff,
        test: PairedTest::PairedT,
        p_worse,
        p_two_sided,
    }
}

/// Paired t-test on differences: (P(T ≤ t), two-sided p). With no spread
/// the answer is certain: identical scores are no evidence of anything,
/// and a constant non-zero shift is as significant as it gets.
fn paired_t(diffs: &[f64]) -> (f64, f64) {
    use statrs::distribution::{ContinuousCDF, StudentsT};
    let n = diffs.len();
    let m = mean(diffs);
    if n < 2 {
        return (1.0, 1.0);
    }
    let var = diffs.iter().map(|d| (d - m) * (d - m)).sum::<f64>() / (n - 1) as f64;
    if var <= 1e-24 || !var.is_finite() {
        return match m {
            m if m < 0.0 => (0.0, 0.0),
            m if m > 0.0 => (1.0, 0.0),
            _ => (1.0, 1.0),
        };
    }
    let t = m / (var / n as f64).sqrt();
    let Ok(dist) = StudentsT::new(0.0, 1.0, (n - 1) as f64) else {
        return (1.0, 1.0);
    };
    let lower = dist.cdf(t);
    (lower, (2.0 * lower.min(1.0 - lower)).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_difference_known_answers() {
        // 10 examples: reference right on all, candidate wrong on 3 of them
        // and never better: one-sided P(X >= 3 | n=3) = 1/8, two-sided 1/4.
        let reference = vec![1.0; 10];
        let mut candidate = reference.clone();
        candidate[..3].fill(0.0);
        let d = paired_difference(&reference, &candidate);
        assert_eq!(d.test, PairedTest::McNemarExact);
        assert!((d.p_worse - 0.125).abs() < 1e-12, "{d:?}");
        assert!((d.p_two_sided - 0.25).abs() < 1e-12, "{d:?}");
        assert!((d.mean_diff + 0.3).abs() < 1e-12);
        // Better instead: "worse" is certainly not shown.
        let d = paired_difference(&candidate, &reference);
        assert!((d.p_worse - 1.0).abs() < 1e-12 && (d.p_two_sided - 0.25).abs() < 1e-12);
        // Continuous: diffs [-0.1, -0.2, -0.3, -0.4, -0.5], mean -0.3,
        // sd 0.158114, t = -4.242641 on 4 df: scipy.stats.ttest_1samp gives
        // two-sided p = 0.013236, one-sided (less) 0.006618.
        let reference = vec![0.9; 5];
        let candidate = [0.8, 0.7, 0.6, 0.5, 0.4];
        let d = paired_difference(&reference, &candidate);
        assert_eq!(d.test, PairedTest::PairedT);
        assert!((d.p_two_sided - 0.013236).abs() < 5e-6, "{d:?}");
        assert!((d.p_worse - 0.006618).abs() < 5e-6, "{d:?}");
        // No difference at all: no evidence.
        let d = paired_difference(&[0.5, 0.7], &[0.5, 0.7]);
        assert_eq!((d.p_worse, d.p_two_sided), (1.0, 1.0));
    }

    #[test]
    fn mcnemar_matches_binomial_tail() {
        // P(X >= 8 | n=10, 1/2) = (45 + 10 + 1) / 1024
        let p = mcnemar_exact_one_sided(8, 2);
        assert!((p - 56.0 / 1024.0).abs() < 1e-12, "{p}");
        assert_eq!(mcnemar_exact_one_sided(0, 0), 1.0);
        assert!((mcnemar_exact_one_sided(0, 5) - 1.0).abs() < 1e-12);
        // Large n stays finite and tiny.
        let p = mcnemar_exact_one_sided(900, 100);
        assert!(p > 0.0 && p < 1e-100, "{p}");
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 5e-5
    }

    #[test]
    fn wilson_matches_reference_values() {
        // Reference values from statsmodels' proportion_confint(method="wilson").
        let (lo, hi) = wilson95(50, 100);
        assert!(close(lo, 0.403832) && close(hi, 0.596168), "{lo} {hi}");
        let (lo, hi) = wilson95(0, 10);
        assert!(close(lo, 0.0) && close(hi, 0.277533), "{lo} {hi}");
        let (lo, hi) = wilson95(10, 10);
        assert!(close(lo, 0.722467) && close(hi, 1.0), "{lo} {hi}");
        let (lo, hi) = wilson95(87, 100);
        assert!(close(lo, 0.790196) && close(hi, 0.922428), "{lo} {hi}");
        let xs: Vec<f64> = (0..100)
            .map(|i| if i % 2 == 0 { 1.0 } else { 0.0 })
            .collect();
        let (lo, hi, m) = ci95(&xs);
        assert_eq!(m, IntervalMethod::Wilson);
        assert!(close(lo, 0.403832) && close(hi, 0.596168), "{lo} {hi}");
    }

    #[test]
    fn student_t_matches_reference_values() {
        // scipy.stats.t.interval(0.95, 4, loc=3, scale=sem([1, 2, 3, 4, 5]))
        let (lo, hi, m) = ci95(&[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(m, IntervalMethod::StudentT);
        assert!(close(lo, 1.036757) && close(hi, 4.963243), "{lo} {hi}");
        // Clamped to the observed range: two values far apart.
        let (lo, hi, _) = ci95(&[0.2, 0.9]);
        assert!(close(lo, 0.2) && close(hi, 0.9), "{lo} {hi}");
        // Constant and single values collapse to the mean.
        assert_eq!(ci95(&[0.5, 0.5, 0.5]), (0.5, 0.5, IntervalMethod::StudentT));
        assert_eq!(ci95(&[0.25]), (0.25, 0.25, IntervalMethod::StudentT));
        assert_eq!(ci95(&[]), (0.0, 0.0, IntervalMethod::Wilson));
    }

    #[test]
    fn interval_contains_mean() {
        let xs: Vec<f64> = (0..100).map(|i| (i % 7) as f64 / 6.0).collect();
        let (lo, hi, _) = ci95(&xs);
        let m = mean(&xs);
        assert!(lo < m && m < hi && hi - lo < 0.2, "{lo} {m} {hi}");
    }

    #[test]
    fn paired_tests_separate_noise_from_regression() {
        // Binary: 3 regressions, 2 improvements out of 100 -> not significant.
        let base: Vec<f64> = (0..100).map(|i| if i < 50 { 1.0 } else { 0.0 }).collect();
        let mut cur = base.clone();
        cur[0] = 0.0;
        cur[1] = 0.0;
        cur[2] = 0.0;
        cur[60] = 1.0;
        cur[61] = 1.0;
        let c = compare_paired(&base, &cur);
        assert_eq!(c.test, PairedTest::McNemarExact);
        assert!(c.p_value > 0.05, "{c:?}");
        // 20 regressions, 0 improvements -> significant.
        let mut cur = base.clone();
        for x in cur.iter_mut().take(20) {
            *x = 0.0;
        }
        let c = compare_paired(&base, &cur);
        assert!(c.p_value < 0.001 && (c.drop - 0.2).abs() < 1e-12, "{c:?}");
        // Continuous scores use the bootstrap.
        let base: Vec<f64> = (0..50).map(|i| (i % 10) as f64 / 10.0).collect();
        let cur: Vec<f64> = base.iter().map(|x| x - 0.3).collect();
        let c = compare_paired(&base, &cur);
        assert_eq!(c.test, PairedTest::PairedBootstrap);
        assert!(c.p_value < 0.001, "{c:?}");
        let c = compare_paired(&base, &base);
        assert_eq!(c.p_value, 1.0);
    }
}
