//! Choosing the next token from a row of logits, on the host: greedy (temperature 0), or
//! temperature → top-k → top-p (the order of Hugging Face's logits warpers) and a draw from the
//! seeded generator. Softmax is in f64 over the candidates only.

use std::cmp::Ordering;

use tlite_quantizer::rng::Rng;

use crate::{Result, TextError};

/// How tokens are drawn.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct SamplerConfig {
    /// 0 = greedy (argmax; `top_k`, `top_p` and `seed` are then unused).
    pub temperature: f64,
    /// Keep the `top_k` most likely tokens; 0 = all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`; 1 = all.
    pub top_p: f64,
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self::greedy()
    }
}

impl SamplerConfig {
    pub fn greedy() -> Self {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            seed: 0,
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Checks the ranges: temperature finite and ≥ 0, top-p in (0, 1].
    pub fn validate(&self) -> Result<()> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(TextError::Sampling(format!(
                "temperature {} must be a finite number ≥ 0 (0 = greedy)",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(TextError::Sampling(format!(
                "top-p {} must be in (0, 1] (1 = off)",
                self.top_p
            )));
        }
        Ok(())
    }
}

/// A sampler with its own seeded generator: the same seed and logits give the same tokens.
#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Result<Self> {
        cfg.validate()?;
        Ok(Sampler {
            cfg,
            rng: Rng::new(cfg.seed),
        })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// The next token of one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        check_logits(logits)?;
        if self.cfg.is_greedy() {
            return Ok(argmax(logits));
        }
        let dist = self.distribution(logits)?;
        let total: f64 = dist.iter().map(|&(_, p)| p).sum();
        let mut u = self.rng.uniform() * total;
        for &(id, p) in &dist {
            if u < p {
                return Ok(id);
            }
            u -= p;
        }
        // Rounding left `u` at the very end: the last candidate.
        Ok(dist.last().map_or(0, |&(id, _)| id))
    }

    /// The candidates and their normalized probabilities after temperature, top-k and top-p,
    /// most likely first (ties: lower id first). Greedy gives the argmax with probability 1.
    pub fn distribution(&self, logits: &[f32]) -> Result<Vec<(u32, f64)>> {
        check_logits(logits)?;
        if self.cfg.is_greedy() {
            return Ok(vec![(argmax(logits), 1.0)]);
        }
        let by_logit = |a: &u32, b: &u32| -> Ordering {
            logits[*b as usize]
                .total_cmp(&logits[*a as usize])
                .then(a.cmp(b))
        };
        let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
        let k = self.cfg.top_k;
        if k > 0 && k < ids.len() {
            ids.select_nth_unstable_by(k - 1, by_logit);
            ids.truncate(k);
        }
        ids.sort_unstable_by(by_logit);
        let max = f64::from(logits[ids[0] as usize]);
        let t = self.cfg.temperature;
        let mut dist: Vec<(u32, f64)> = ids
            .iter()
            .map(|&id| (id, ((f64::from(logits[id as usize]) - max) / t).exp()))
            .collect();
        normalize(&mut dist);
        if self.cfg.top_p < 1.0 {
            let mut cum = 0.0;
            let keep = dist
                .iter()
                .position(|&(_, p)| {
                    cum += p;
                    cum >= self.cfg.top_p
                })
                .map_or(dist.len(), |i| i + 1);
            dist.truncate(keep);
            normalize(&mut dist);
        }
        Ok(dist)
    }
}

/// The index of the largest logit (the first of equals).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

fn normalize(dist: &mut [(u32, f64)]) {
    let sum: f64 = dist.iter().map(|&(_, p)| p).sum();
    for (_, p) in dist.iter_mut() {
        *p /= sum;
    }
}

fn check_logits(logits: &[f32]) -> Result<()> {
    if logits.is_empty() {
        return Err(TextError::Sampling("no logits to sample from".into()));
    }
    if let Some(i) = logits
        .iter()
        .position(|v| v.is_nan() || *v == f32::INFINITY)
    {
        return Err(TextError::Sampling(format!(
            "logit {i} is {} (the model produced a non-finite value)",
            logits[i]
        )));
    }
    if logits.iter().all(|&v| v == f32::NEG_INFINITY) {
        return Err(TextError::Sampling("every logit is -inf".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(temperature: f64, top_k: usize, top_p: f64, seed: u64) -> SamplerConfig {
        SamplerConfig {
            temperature,
            top_k,
            top_p,
            seed,
        }
    }

    fn random_logits(seed: u64, n: usize) -> Vec<f32> {
        Rng::new(seed).gaussian_vec(n, 2.0)
    }

    #[test]
    fn greedy_is_argmax() {
        let mut s = Sampler::new(SamplerConfig::greedy()).unwrap();
        for seed in 0..20 {
            let l = random_logits(seed, 1000);
            let best = (0..l.len()).max_by(|&a, &b| l[a].total_cmp(&l[b])).unwrap();
            assert_eq!(s.sample(&l).unwrap(), best as u32);
        }
        // Ties go to the lower id.
        assert_eq!(s.sample(&[1.0, 3.0, 3.0, 2.0]).unwrap(), 1);
    }

    #[test]
    fn top_k_one_and_tiny_top_p_are_greedy() {
        let mut k1 = Sampler::new(cfg(1.5, 1, 1.0, 3)).unwrap();
        let mut p0 = Sampler::new(cfg(1.5, 0, 1e-9, 4)).unwrap();
        for seed in 0..50 {
            let l = random_logits(100 + seed, 500);
            let g = argmax(&l);
            assert_eq!(k1.sample(&l).unwrap(), g);
            assert_eq!(p0.sample(&l).unwrap(), g);
        }
        let tie = [1.0, 3.0, 3.0, 2.0];
        assert_eq!(k1.sample(&tie).unwrap(), 1);
        assert_eq!(p0.sample(&tie).unwrap(), 1);
    }

    #[test]
    fn same_seed_same_sequence_different_seeds_differ() {
        let flat = vec![0.0f32; 1000];
        let draw = |seed| {
            let mut s = Sampler::new(cfg(1.0, 0, 1.0, seed)).unwrap();
            (0..64)
                .map(|_| s.sample(&flat).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        // A flat distribution is sampled over its whole range.
        let d = draw(9);
        assert!(d.iter().any(|&t| t < 500) && d.iter().any(|&t| t >= 500));
    }

    #[test]
    fn temperature_scales_the_logits() {
        let l = [0.0f32, 1.0];
        let p1 = |t: f64| {
            let d = Sampler::new(cfg(t, 0, 1.0, 0))
                .unwrap()
                .distribution(&l)
                .unwrap();
            d.iter().find(|&&(id, _)| id == 1).unwrap().1
        };
        let expect = |t: f64| 1.0 / (1.0 + (-1.0 / t).exp());
        for t in [0.25, 0.5, 1.0, 2.0, 10.0] {
            assert!((p1(t) - expect(t)).abs() < 1e-12, "T={t}");
        }
        assert!(p1(0.5) > p1(1.0) && p1(1.0) > p1(2.0));
        // Empirically too: at T=1, token 1 is drawn with frequency e/(1+e) ≈ 0.731.
        let mut s = Sampler::new(cfg(1.0, 0, 1.0, 11)).unwrap();
        let n = 20_000;
        let ones = (0..n).filter(|_| s.sample(&l).unwrap() == 1).count();
        assert!((ones as f64 / n as f64 - expect(1.0)).abs() < 0.02);
    }

    #[test]
    fn top_k_and_top_p_cut_the_tail() {
        let l = [4.0f32, 3.0, 2.0, 1.0, 0.0];
        let d = Sampler::new(cfg(1.0, 3, 1.0, 0))
            .unwrap()
            .distribution(&l)
            .unwrap();
        assert_eq!(d.iter().map(|x| x.0).collect::<Vec<_>>(), [0, 1, 2]);
        assert!((d.iter().map(|x| x.1).sum::<f64>() - 1.0).abs() < 1e-12);
        // p ≈ [0.636, 0.234, 0.086, ...]: top-p 0.8 keeps two tokens, 0.9 keeps three.
        let ids = |p| {
            Sampler::new(cfg(1.0, 0, p, 0))
                .unwrap()
                .distribution(&l)
                .unwrap()
                .len()
        };
        assert_eq!(ids(0.8), 2);
        assert_eq!(ids(0.9), 3);
        assert_eq!(ids(1.0), 5);
    }

    #[test]
    fn bad_settings_and_logits_are_errors() {
        assert!(Sampler::new(cfg(-1.0, 0, 1.0, 0)).is_err());
        assert!(Sampler::new(cfg(f64::NAN, 0, 1.0, 0)).is_err());
        assert!(Sampler::new(cfg(1.0, 0, 0.0, 0)).is_err());
        assert!(Sampler::new(cfg(1.0, 0, 1.5, 0)).is_err());
        let mut s = Sampler::new(cfg(1.0, 0, 1.0, 0)).unwrap();
        assert!(s.sample(&[]).is_err());
        assert!(s.sample(&[0.0, f32::NAN]).is_err());
        assert!(s.sample(&[f32::NEG_INFINITY; 3]).is_err());
        // -inf entries are masked, not errors.
        assert_eq!(s.sample(&[f32::NEG_INFINITY, 0.0]).unwrap(), 1);
    }
}
