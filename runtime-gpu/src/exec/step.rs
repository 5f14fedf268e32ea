//! One step: the inputs checked, the uniforms written, every op that runs in this phase
//! encoded into one compute pass (one per layer when the residual is captured) and one
//! submission, and the logits read back.

use std::ops::RangeInclusive;
use std::time::Instant;

use super::{GpuModel, StepLog, bind};
use crate::graph::Op;
use crate::memory::LimitKind;
use crate::readback::{map_read_f32, wait_for};
use crate::shape::Syms;
use crate::{Gpu, GpuError, Result};

/// The encoding of one step.
pub(super) struct Encoding {
    pub enc: wgpu::CommandEncoder,
    pub log: StepLog,
    /// The ops followed by a timestamp, in order.
    stamped: Vec<usize>,
    /// Whether the step is profiled.
    pub profiling: bool,
    phase: &'static str,
    start: Instant,
}

impl GpuModel {
    /// A step (see [`Self::step`]); with `capture` also the residual after every layer.
    pub(super) fn step_inner(
        &mut self,
        gpu: &Gpu,
        tokens: &[u32],
        past: usize,
        rows: &[u32],
        capture: bool,
    ) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let (e, capture_buf) = self.encode_step(gpu, tokens, past, rows, capture)?;
        self.finish(gpu, e, rows.len(), capture_buf)
    }

    /// Checks a step's inputs, writes its tokens, rows and uniforms and encodes its passes
    /// (with `capture`, into the returned residual buffer), not yet submitted.
    pub(super) fn encode_step(
        &self,
        gpu: &Gpu,
        tokens: &[u32],
        past: usize,
        rows: &[u32],
        capture: bool,
    ) -> Result<(Encoding, Option<wgpu::Buffer>)> {
        gpu.check_health()?;
        let syms = self.check_step(tokens, past, rows)?;
        let q = &gpu.queue;
        q.write_buffer(&self.tokens, 0, bytemuck::cast_slice(tokens));
        q.write_buffer(&self.logit_rows, 0, bytemuck::cast_slice(rows));
        let profile = self.profiler.is_some() && !capture;
        self.encode_syms(gpu, &syms, capture, profile)
    }

    /// Writes the uniforms of a step of `syms` and encodes its passes (with `capture`, into the
    /// returned residual buffer; with `profile`, a timestamp after each dispatch), not yet
    /// submitted: its tokens and logit rows are already in their buffers.
    pub(super) fn encode_syms(
        &self,
        gpu: &Gpu,
        syms: &Syms,
        capture: bool,
        profile: bool,
    ) -> Result<(Encoding, Option<wgpu::Buffer>)> {
        let start = Instant::now();
        let size = self.uniforms.size() as usize;
        let u = bind::uniforms(&self.graph.ops, syms, size, self.slot)?;
        gpu.queue.write_buffer(&self.uniforms, 0, &u);
        let mut e = Encoding {
            enc: (gpu.device).create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("step"),
            }),
            log: StepLog::default(),
            stamped: Vec::new(),
            profiling: profile && self.profiler.is_some(),
            phase: if syms.seq > 1 { "prefill" } else { "decode" },
            start,
        };
        let capture_buf = match capture {
            true => Some(self.capture_buffer(gpu, syms.seq as usize)?),
            false => None,
        };
        self.encode(gpu, &mut e, syms, capture_buf.as_ref())?;
        Ok((e, capture_buf))
    }

    /// The step's symbols, once its inputs are checked against the options and the model.
    pub(super) fn check_step(&self, tokens: &[u32], past: usize, rows: &[u32]) -> Result<Syms> {
        let n = tokens.len();
        if n == 0 || n > self.opts.max_batch {
            return Err(GpuError::Model(format!(
                "a step takes 1..={} tokens, got {n}",
                self.opts.max_batch
            )));
        }
        let end = past.saturating_add(n);
        if end > self.opts.max_seq {
            return Err(GpuError::ContextOverflow {
                needed: end,
                max: self.opts.max_seq,
            });
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(GpuError::Model(format!(
                "token id {t} is outside the vocabulary of {}",
                self.vocab
            )));
        }
        if rows.iter().any(|&r| r as usize >= n) {
            return Err(GpuError::Model(format!(
                "logit rows {rows:?} must be within the step's {n} tokens"
            )));
        }
        // The logits buffers hold max_batch rows.
        if rows.len() > self.opts.max_batch {
            return Err(GpuError::Model(format!(
                "a step reads back at most {} logit rows (max_batch), got {}",
                self.opts.max_batch,
                rows.len()
            )));
        }
        Ok(Syms {
            seq: n as u64,
            past: past as u64,
            out: rows.len() as u64,
        })
    }

    /// The buffer the residual after every layer of an `n`-token step is copied into.
    fn capture_buffer(&self, gpu: &Gpu, n: usize) -> Result<wgpu::Buffer> {
        let hidden_bytes = (n * self.hidden * 4) as u64;
        let bytes = hidden_bytes
            .saturating_mul(self.graph.layer_end.len() as u64)
            .max(16);
        if bytes > gpu.limits.max_buffer_size {
            return Err(GpuError::TooLarge {
                what: format!("the residual capture of a {n}-token step"),
                needed: bytes,
                limit: gpu.limits.max_buffer_size,
                kind: LimitKind::BufferSize,
                hint: "capture fewer tokens per step".into(),
            });
        }
        Ok(gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("hidden.capture"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    /// Encodes the step's passes: one for the whole step, or one per layer with a copy of the
    /// residual into `capture` after each.
    fn encode(
        &self,
        gpu: &Gpu,
        e: &mut Encoding,
        syms: &Syms,
        capture: Option<&wgpu::Buffer>,
    ) -> Result<()> {
        let layer_end = &self.graph.layer_end;
        let mut ends: Vec<usize> = match capture {
            Some(_) => layer_end.clone(),
            None => Vec::new(),
        };
        ends.push(self.graph.ops.len() - 1);
        let hidden_bytes = syms.seq * (self.hidden * 4) as u64;
        let mut start = 0;
        for (pi, &end) in ends.iter().enumerate() {
            self.encode_pass(gpu, e, start..=end, syms)?;
            if let Some(cb) = capture
                && pi < layer_end.len()
            {
                let act = self.plan.assignment[self.graph.residual];
                let offset = hidden_bytes * pi as u64;
                (e.enc).copy_buffer_to_buffer(&self.act_bufs[act], 0, cb, offset, hidden_bytes);
                e.log
                    .copies
                    .push((format!("act{act}"), "hidden.capture".into()));
            }
            start = end + 1;
        }
        Ok(())
    }

    /// Encodes one compute pass over the ops `ops` that run in this step's phase, with a
    /// timestamp after each when profiling. Cooperative priority submits every `submit_every`
    /// dispatches and waits, so other contexts' work can run between the parts of a step (see
    /// `crate::priority`).
    fn encode_pass(
        &self,
        gpu: &Gpu,
        e: &mut Encoding,
        ops: RangeInclusive<usize>,
        syms: &Syms,
    ) -> Result<()> {
        let every = gpu.priority.submit_every.filter(|&e| e > 0);
        let desc = wgpu::ComputePassDescriptor {
            label: Some("step"),
            timestamp_writes: None,
        };
        let mut pass = e.enc.begin_compute_pass(&desc);
        let prof = self.profiler.as_ref().filter(|_| e.profiling);
        if let Some(pr) = prof {
            pass.write_timestamp(&pr.set, 0);
        }
        let max = gpu.limits.max_compute_workgroups_per_dimension;
        for i in ops {
            let op = &self.graph.ops[i];
            if !op.when.runs(syms.seq) {
                continue;
            }
            let [x, y, z] = grid(op, syms, max)?;
            if x == 0 || y == 0 || z == 0 {
                continue;
            }
            pass.set_pipeline(&self.pipelines[self.op_pipeline[i]]);
            pass.set_bind_group(0, &self.bind_groups[i], &[]);
            pass.dispatch_workgroups(x, y, z);
            e.log.dispatches += 1;
            if let Some(pr) = prof
                && (e.stamped.len() as u32 + 1) < pr.capacity
            {
                e.stamped.push(i);
                pass.write_timestamp(&pr.set, e.stamped.len() as u32);
            }
            if every.is_some_and(|n| e.log.dispatches.is_multiple_of(n))
                && i + 1 < self.graph.ops.len()
            {
                drop(pass);
                let next = gpu.device.create_command_encoder(&Default::default());
                let done = std::mem::replace(&mut e.enc, next);
                wait_for(gpu, gpu.queue.submit([done.finish()]))?;
                e.log.submissions += 1;
                pass = e.enc.begin_compute_pass(&desc);
            }
        }
        Ok(())
    }

    /// Submits the step and reads back the `rows` rows of logits, the timestamps and the
    /// `capture` of the residual; with nothing to read it submits without waiting (the queue
    /// orders the next step after this one).
    fn finish(
        &mut self,
        gpu: &Gpu,
        mut e: Encoding,
        rows: usize,
        capture: Option<wgpu::Buffer>,
    ) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        if let Some(pr) = self.profiler.as_ref().filter(|_| e.profiling)
            && !e.stamped.is_empty()
        {
            pr.resolve(&mut e.enc, e.stamped.len());
        }
        e.log.logit_rows = rows;
        let bytes = (rows * self.vocab * 4) as u64;
        if bytes == 0 && !e.profiling {
            gpu.queue.submit([e.enc.finish()]);
            e.log.submissions += 1;
            gpu.check_health()?;
            let hidden = read_capture(gpu, capture)?;
            self.last_step = e.log;
            return Ok((Vec::new(), hidden));
        }
        if bytes > 0 {
            let act = self.plan.assignment[self.graph.logits];
            (e.enc).copy_buffer_to_buffer(&self.act_bufs[act], 0, &self.staging, 0, bytes);
            e.log
                .copies
                .push((format!("act{act}"), "logits.readback".into()));
        }
        let encoded = e.start.elapsed().as_secs_f64();
        let index = gpu.queue.submit([e.enc.finish()]);
        e.log.submissions += 1;
        let out = if bytes > 0 {
            map_read_f32(gpu, &self.staging, bytes)?
        } else {
            wait_for(gpu, index)?;
            Vec::new()
        };
        if e.profiling
            && let Some(pr) = self.profiler.as_mut()
        {
            let wall = e.start.elapsed().as_secs_f64();
            pr.record(gpu, e.phase, (encoded, wall), &e.stamped, &self.graph.ops)?;
        }
        let hidden = read_capture(gpu, capture)?;
        gpu.check_health()?;
        self.last_step = e.log;
        Ok((out, hidden))
    }
}

/// The residual read back from `capture`, where the step captured it.
fn read_capture(gpu: &Gpu, capture: Option<wgpu::Buffer>) -> Result<Option<Vec<f32>>> {
    match capture {
        Some(cb) => Ok(Some(map_read_f32(gpu, &cb, cb.size())?)),
        None => Ok(None),
    }
}

/// The workgroup grid of `op` in a step: within the device's per-dimension limit (checked at
/// load for every step the options allow; kept as a guard, since wgpu rejects a larger one).
fn grid(op: &Op, syms: &Syms, max: u32) -> Result<[u32; 3]> {
    let mut out = [0u32; 3];
    for (o, e) in out.iter_mut().zip(&op.grid) {
        let v = e.checked_eval(syms).unwrap_or(u64::MAX);
        *o = u32::try_from(v)
            .ok()
            .filter(|&v| v <= max)
            .ok_or_else(|| GpuError::TooLarge {
                what: format!("the grid of `{}` in this step", op.label),
                needed: v,
                limit: u64::from(max),
                kind: LimitKind::Workgroups,
                hint: "use a smaller --max-batch".into(),
            })?;
    }
    Ok(out)
}
