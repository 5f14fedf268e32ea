//! Scored steps, for measuring a model (perplexity, KL divergence, top-1 agreement) on the
//! GPU: a step whose logits rows are reduced by `score.wgsl` in the same submission, so that
//! per row only a few numbers (and optionally the top k log-probabilities) are read back,
//! never a vocabulary-sized row.

use wgpu::util::DeviceExt;

use super::GpuModel;
use crate::kernels::params::{SCORE_OUT, ScoreParams};
use crate::kernels::{Kernel, binding};
use crate::memory::LimitKind;
use crate::readback::map_read;
use crate::{Gpu, GpuError, Result};

/// Most top log-probabilities a scored step takes in ([`Baseline::TopK`]) or gives out.
pub const MAX_TOP_K: usize = 1024;

/// What a scored step compares its rows with.
#[derive(Clone, Copy)]
pub enum Baseline<'a> {
    /// Nothing: no KL divergence.
    None,
    /// Another model on the same device whose last step computed the logits of the same rows
    /// (same count, same vocabulary): the exact KL divergence.
    Logits(&'a GpuModel),
    /// The baseline's `k` largest log-probabilities per row (`ids` and `logprobs`, `k` per
    /// row, largest first): the KL divergence with the rest of the baseline's mass taken as
    /// one bucket, a lower bound of the exact one.
    TopK {
        k: usize,
        ids: &'a [u32],
        logprobs: &'a [f32],
    },
}

/// One scored row.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RowScore {
    /// log Σ exp(logits).
    pub lse: f32,
    /// The log-probability of the row's target token.
    pub logprob: f32,
    /// The first-ranked token (the lowest id on ties).
    pub argmax: u32,
    /// KL(baseline ‖ this row); 0 without a baseline.
    pub kld: f32,
    /// With [`Baseline::Logits`]: the baseline's log-sum-exp, log-probability of the target
    /// and argmax. With [`Baseline::TopK`]: its first id as the argmax, the others 0.
    pub base_lse: f32,
    pub base_logprob: f32,
    pub base_argmax: u32,
    /// With [`Baseline::TopK`]: this row's probability mass on the baseline's top k.
    pub topk_mass: f32,
}

/// The result of a scored step.
#[derive(Clone, Debug, Default)]
pub struct Scored {
    pub rows: Vec<RowScore>,
    /// Per row, the `k_out` largest log-probabilities and their ids, largest first.
    pub top_ids: Vec<u32>,
    pub top_logprobs: Vec<f32>,
}

impl GpuModel {
    /// Runs `tokens` at positions `past..` as [`Self::step`] does and scores the logits of the
    /// step-relative positions `rows` against `targets` (one token per row) and `base`,
    /// reading back only the scores and, with `k_out > 0`, each row's top `k_out`
    /// log-probabilities. The logits stay in the model's buffer until its next step (what a
    /// [`Baseline::Logits`] of another model reads).
    #[allow(clippy::too_many_arguments)]
    pub fn step_scored(
        &mut self,
        gpu: &Gpu,
        tokens: &[u32],
        past: usize,
        rows: &[u32],
        targets: &[u32],
        base: Baseline<'_>,
        k_out: usize,
    ) -> Result<Scored> {
        let n = rows.len();
        self.check_scoring(gpu, n, targets, base, k_out)?;
        let (mut e, _) = self.encode_step(gpu, tokens, past, rows, false)?;
        e.profiling = false;
        let dev = &gpu.device;
        let storage = |label: &str, data: &[u8]| {
            let mut v = data.to_vec();
            v.resize(data.len().max(16), 0);
            dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: &v,
                usage: wgpu::BufferUsages::STORAGE,
            })
        };
        let output = |label: &str, bytes: usize| {
            dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: bytes.max(16) as u64,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            })
        };
        let (mode, k_in) = match base {
            Baseline::None => (0, 0),
            Baseline::Logits(_) => (1, 0),
            Baseline::TopK { k, .. } => (2, k),
        };
        let params = ScoreParams {
            rows: n as u32,
            vocab: self.vocab as u32,
            base_mode: mode,
            k_in: k_in as u32,
            k_out: k_out as u32,
            ..Default::default()
        };
        let uniform = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("score.params"),
            contents: bytemuck::bytes_of(&params),
            usage: wgpu::BufferUsages::UNIFORM,
        });
        let targets_buf = storage("score.targets", bytemuck::cast_slice(targets));
        let (ids, lps): (&[u32], &[f32]) = match base {
            Baseline::TopK { ids, logprobs, .. } => (ids, logprobs),
            _ => (&[], &[]),
        };
        let ids_buf = storage("score.base_ids", bytemuck::cast_slice(ids));
        let lp_buf = storage("score.base_lp", bytemuck::cast_slice(lps));
        let out_bytes = n * SCORE_OUT as usize * 4;
        let top_bytes = n * k_out * 4;
        let out = output("score.out", out_bytes);
        let top_ids = output("score.top_ids", top_bytes);
        let top_lp = output("score.top_lp", top_bytes);
        let pipeline = self.score_pipeline(gpu);
        let logits = self.logits_buffer();
        let base_logits = match base {
            Baseline::Logits(b) => b.logits_buffer(),
            // Not read in the other modes.
            _ => logits,
        };
        let entries = [
            (binding::PARAMS, &uniform),
            (binding::score::LOGITS, logits),
            (binding::score::TARGETS, &targets_buf),
            (binding::score::BASE, base_logits),
            (binding::score::BASE_IDS, &ids_buf),
            (binding::score::BASE_LP, &lp_buf),
            (binding::score::OUT, &out),
            (binding::score::TOP_IDS, &top_ids),
            (binding::score::TOP_LP, &top_lp),
        ]
        .map(|(b, buf)| wgpu::BindGroupEntry {
            binding: b,
            resource: buf.as_entire_binding(),
        });
        let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some("score"),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        {
            let mut pass = e.enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("score"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(n as u32, 1, 1);
            e.log.dispatches += 1;
        }
        let staging = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("score.readback"),
            size: (out_bytes + 2 * top_bytes).max(16) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let (ob, tb) = (out_bytes as u64, top_bytes as u64);
        e.enc.copy_buffer_to_buffer(&out, 0, &staging, 0, ob);
        if tb > 0 {
            e.enc.copy_buffer_to_buffer(&top_ids, 0, &staging, ob, tb);
            e.enc
                .copy_buffer_to_buffer(&top_lp, 0, &staging, ob + tb, tb);
        }
        gpu.queue.submit([e.enc.finish()]);
        e.log.submissions += 1;
        e.log.logit_rows = n;
        let bytes = map_read(gpu, &staging, ob + 2 * tb)?;
        gpu.check_health()?;
        self.last_step = e.log;
        let words: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let (rows_w, tops) = words.split_at(out_bytes / 4);
        let f = f32::from_bits;
        Ok(Scored {
            rows: rows_w
                .chunks_exact(SCORE_OUT as usize)
                .map(|w| RowScore {
                    lse: f(w[0]),
                    logprob: f(w[1]),
                    argmax: w[2],
                    kld: f(w[3]),
                    base_lse: f(w[4]),
                    base_logprob: f(w[5]),
                    base_argmax: w[6],
                    topk_mass: f(w[7]),
                })
                .collect(),
            top_ids: tops[..n * k_out].to_vec(),
            top_logprobs: tops[n * k_out..].iter().map(|&w| f(w)).collect(),
        })
    }

    /// Checks what the score kernel will index (it runs without bounds checks).
    fn check_scoring(
        &self,
        gpu: &Gpu,
        n: usize,
        targets: &[u32],
        base: Baseline<'_>,
        k_out: usize,
    ) -> Result<()> {
        let bad = |m: String| Err(GpuError::Model(m));
        if n == 0 {
            return bad("a scored step needs at least one logit row".into());
        }
        if targets.len() != n {
            return bad(format!("{} targets for {n} scored rows", targets.len()));
        }
        if let Some(&t) = targets.iter().find(|&&t| t as usize >= self.vocab) {
            return bad(format!(
                "target token {t} is outside the vocabulary of {}",
                self.vocab
            ));
        }
        if k_out > MAX_TOP_K.min(self.vocab) {
            return bad(format!(
                "top {k_out} asked: at most {} (and the vocabulary)",
                MAX_TOP_K
            ));
        }
        let max_wg = gpu.limits.max_compute_workgroups_per_dimension as usize;
        if n > max_wg {
            return Err(GpuError::TooLarge {
                what: format!("scoring {n} rows in one step"),
                needed: n as u64,
                limit: max_wg as u64,
                kind: LimitKind::Workgroups,
                hint: "score fewer rows per step".into(),
            });
        }
        match base {
            Baseline::None => {}
            Baseline::Logits(b) => {
                if b.vocab != self.vocab || b.last_step.logit_rows != n {
                    return bad(format!(
                        "the baseline's last step computed {} rows of vocabulary {}, not {n} of {}",
                        b.last_step.logit_rows, b.vocab, self.vocab
                    ));
                }
            }
            Baseline::TopK { k, ids, logprobs } => {
                if k == 0 || k > MAX_TOP_K.min(self.vocab) {
                    return bad(format!("baseline top-k of {k}: use 1..={MAX_TOP_K}"));
                }
                if ids.len() != n * k || logprobs.len() != n * k {
                    return bad(format!(
                        "baseline top-{k} of {} ids and {} log-probabilities for {n} rows",
                        ids.len(),
                        logprobs.len()
                    ));
                }
                if let Some(&t) = ids.iter().find(|&&t| t as usize >= self.vocab) {
                    return bad(format!(
                        "baseline token {t} is outside the vocabulary of {}",
                        self.vocab
                    ));
                }
            }
        }
        Ok(())
    }

    /// The buffer holding the last step's logits (`[rows, vocab]`).
    pub(super) fn logits_buffer(&self) -> &wgpu::Buffer {
        &self.act_bufs[self.plan.assignment[self.graph.logits]]
    }

    /// The score kernel's pipeline, created on first use.
    fn score_pipeline(&mut self, gpu: &Gpu) -> wgpu::ComputePipeline {
        (self.score_pipeline)
            .get_or_insert_with(|| crate::lab::pipeline(gpu, Kernel::Score, "main"))
            .clone()
    }
}
