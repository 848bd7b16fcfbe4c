//! A seeded Tree-structured Parzen Estimator over categorical parameters —
//! the Bayesian search MIPROv2 runs (DSPy uses Optuna's TPESampler).
//!
//! Every parameter is a choice among `k` categories (an instruction index or
//! a demo-set index per predictor). After `n_startup` random trials, the
//! observed trials are split into the best `gamma(n)` ("good") and the rest;
//! for each parameter a smoothed categorical density is fitted to each group
//! (l for good, g for bad, with a uniform prior of weight 1 as in Optuna),
//! `n_candidates` configurations are drawn from l, and the one maximising
//! Σ log l(x)/g(x) is proposed. Deterministic for a given seed and history.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone)]
pub struct Tpe {
    /// Number of categories of each parameter.
    pub dims: Vec<usize>,
    pub n_startup: usize,
    pub n_candidates: usize,
    rng: ChaCha8Rng,
    /// Observed (params, value); higher is better.
    pub trials: Vec<(Vec<usize>, f64)>,
}

impl Tpe {
    pub fn new(dims: Vec<usize>, seed: u64) -> Self {
        Tpe {
            dims,
            n_startup: 10,
            n_candidates: 24,
            rng: ChaCha8Rng::seed_from_u64(seed),
            trials: Vec::new(),
        }
    }

    /// A sampler that continues from a checkpoint: the trials observed and
    /// its stream's position ([`Tpe::rng_pos`]).
    pub fn resumed(dims: Vec<usize>, seed: u64, trials: Vec<(Vec<usize>, f64)>, pos: u64) -> Self {
        Tpe {
            rng: crate::optimize::checkpoint::rng_at(seed, pos),
            trials,
            ..Tpe::new(dims, seed)
        }
    }

    /// Where its random stream stands, for a checkpoint.
    pub fn rng_pos(&self) -> u64 {
        crate::optimize::checkpoint::rng_pos(&self.rng)
    }

    pub fn observe(&mut self, params: Vec<usize>, value: f64) {
        self.trials.push((params, value));
    }

    /// Optuna's default split: the top 10% (at most 25, at least 1).
    fn n_good(n: usize) -> usize {
        (((n as f64) * 0.1).ceil() as usize).clamp(1, 25)
    }

    /// The next configuration to try.
    pub fn suggest(&mut self) -> Vec<usize> {
        if self.trials.len() < self.n_startup {
            return self
                .dims
                .iter()
                .map(|&k| self.rng.gen_range(0..k.max(1)))
                .collect();
        }
        let mut order: Vec<usize> = (0..self.trials.len()).collect();
        // Stable sort by value descending; ties keep observation order.
        order.sort_by(|&a, &b| {
            self.trials[b]
                .1
                .partial_cmp(&self.trials[a].1)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let n_good = Self::n_good(self.trials.len());
        let (good, bad) = order.split_at(n_good);
        let density =
            |idx: &[usize], d: usize, k: usize, trials: &[(Vec<usize>, f64)]| -> Vec<f64> {
                let mut w = vec![1.0 / k as f64; k]; // prior weight 1 spread uniformly
                for &i in idx {
                    if let Some(&c) = trials[i].0.get(d) {
                        if c < k {
                            w[c] += 1.0;
                        }
                    }
                }
                let total: f64 = w.iter().sum();
                w.iter().map(|x| x / total).collect()
            };
        let l: Vec<Vec<f64>> = self
            .dims
            .iter()
            .enumerate()
            .map(|(d, &k)| density(good, d, k.max(1), &self.trials))
            .collect();
        let g: Vec<Vec<f64>> = self
            .dims
            .iter()
            .enumerate()
            .map(|(d, &k)| density(bad, d, k.max(1), &self.trials))
            .collect();
        let mut best: Option<(f64, Vec<usize>)> = None;
        for _ in 0..self.n_candidates {
            let cand: Vec<usize> = l.iter().map(|p| sample(&mut self.rng, p)).collect();
            let score: f64 = cand
                .iter()
                .enumerate()
                .map(|(d, &c)| (l[d][c] / g[d][c]).ln())
                .sum();
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, cand));
            }
        }
        best.map(|(_, c)| c)
            .unwrap_or_else(|| vec![0; self.dims.len()])
    }
}

fn sample(rng: &mut ChaCha8Rng, p: &[f64]) -> usize {
    let x: f64 = rng.gen();
    let mut acc = 0.0;
    for (i, w) in p.iter().enumerate() {
        acc += w;
        if x < acc {
            return i;
        }
    }
    p.len().saturating_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_suggestions() {
        let run = || {
            let mut t = Tpe::new(vec![3, 4], 7);
            let mut out = Vec::new();
            for i in 0..20 {
                let s = t.suggest();
                let v = if s == vec![2, 1] {
                    1.0
                } else {
                    (i % 3) as f64 * 0.1
                };
                t.observe(s.clone(), v);
                out.push(s);
            }
            out
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn concentrates_on_the_best_category() {
        // Value depends only on parameter 0 being 2; after startup the
        // sampler should pick 2 for it most of the time.
        let mut t = Tpe::new(vec![4, 3], 1);
        let mut hits = 0;
        for i in 0..60 {
            let s = t.suggest();
            let v = if s[0] == 2 { 1.0 } else { 0.0 };
            if i >= 20 && s[0] == 2 {
                hits += 1;
            }
            t.observe(s, v);
        }
        assert!(
            hits >= 30,
            "TPE picked the best category only {hits}/40 times after startup"
        );
    }
}
