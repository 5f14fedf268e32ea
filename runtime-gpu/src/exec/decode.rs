//! Greedy decoding with no host round trip per token: each step ends with the next-token kernel
//! (`score.wgsl`'s `next_token`), which writes the argmax of the step's logits into the token
//! buffer that the next step's embedding reads. Up to `lead` steps are in flight; each step also
//! copies its token into a small ring of readback buffers, and the host reads the ids as they
//! complete — in order, `lead` steps behind the GPU — and hands each to the caller, who may stop.
//! The steps already submitted past a stop run to completion and their tokens are discarded;
//! the K/V they wrote lie past the accepted positions, where the next step overwrites them.

use std::collections::VecDeque;
use std::time::Instant;

use super::GpuModel;
use crate::kernels::params::ScoreParams;
use crate::kernels::{Kernel, binding};
use crate::readback::{PendingRead, until, wait_for};
use crate::shape::Syms;
use crate::{Gpu, GpuError, Result};

/// Most steps [`GpuModel::decode_greedy`] keeps in flight.
pub const MAX_LEAD: usize = 16;

/// What a [`GpuModel::decode_greedy`] run did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DecodeRun {
    /// Tokens handed to the caller.
    pub tokens: usize,
    /// Steps run on the GPU: `tokens`, plus those past a stop whose tokens were discarded.
    pub steps: usize,
    /// Wall-clock seconds from the first submission to the last token read.
    pub seconds: f64,
}

/// A step in flight: its submission and the read of its token.
struct Pending<'a> {
    index: wgpu::SubmissionIndex,
    read: PendingRead<'a>,
}

impl GpuModel {
    /// Greedy decoding from `first` at position `past`: step `j` runs token `t_j` at position
    /// `past + j` (`t_0 = first`) and yields `t_{j+1}`, the argmax of its logits (the lowest id
    /// on ties), which is passed to `on_token` in order. Stops after `max_tokens` tokens or when
    /// `on_token` returns `false`. At most `lead` (1..=[`MAX_LEAD`]) steps are in flight.
    ///
    /// The same tokens as stepping one token at a time and taking the argmax of the logits read
    /// back, without waiting for each. The KV cache then holds positions `past ..
    /// past + tokens` of the accepted tokens (the last token yielded has not been run), and
    /// possibly entries past them from discarded steps.
    pub fn decode_greedy(
        &mut self,
        gpu: &Gpu,
        first: u32,
        past: usize,
        max_tokens: usize,
        lead: usize,
        on_token: &mut dyn FnMut(u32) -> bool,
    ) -> Result<DecodeRun> {
        if !(1..=MAX_LEAD).contains(&lead) {
            return Err(GpuError::Model(format!(
                "{lead} steps in flight asked: use 1..={MAX_LEAD}"
            )));
        }
        if max_tokens == 0 {
            return Ok(DecodeRun::default());
        }
        gpu.check_health()?;
        // the first and the last step's inputs (the ones between lie within)
        self.check_step(&[first], past, &[0])?;
        let last = past.saturating_add(max_tokens - 1);
        self.check_step(&[0], last, &[0])?;

        let dev = &gpu.device;
        let pipeline = self.next_token_pipeline(gpu);
        let params = ScoreParams {
            rows: 1,
            vocab: self.vocab as u32,
            ..Default::default()
        };
        let uniform = wgpu::util::DeviceExt::create_buffer_init(
            dev,
            &wgpu::util::BufferInitDescriptor {
                label: Some("next_token.params"),
                contents: bytemuck::bytes_of(&params),
                usage: wgpu::BufferUsages::UNIFORM,
            },
        );
        let bind = crate::lab::bind_group(
            gpu,
            &pipeline,
            &[
                (binding::PARAMS, &uniform),
                (binding::score::LOGITS, self.logits_buffer()),
                (binding::score::OUT, &self.tokens),
            ],
        );
        // token, raw argmax
        const READ: u64 = 8;
        let ring: Vec<wgpu::Buffer> = (0..=lead)
            .map(|_| {
                dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("next_token.readback"),
                    size: 16,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .collect();
        gpu.queue
            .write_buffer(&self.tokens, 0, bytemuck::bytes_of(&first));
        gpu.queue
            .write_buffer(&self.logit_rows, 0, bytemuck::bytes_of(&0u32));

        let start = Instant::now();
        let mut run = DecodeRun::default();
        let mut pending: VecDeque<Pending> = VecDeque::new();
        let mut stopped = false;
        loop {
            while !stopped && run.steps < max_tokens && pending.len() <= lead {
                let syms = Syms {
                    seq: 1,
                    past: (past + run.steps) as u64,
                    out: 1,
                };
                let (mut e, _) = self.encode_syms(gpu, &syms, false, false)?;
                {
                    let mut pass = e.enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("next_token"),
                        timestamp_writes: None,
                    });
                    pass.set_pipeline(&pipeline);
                    pass.set_bind_group(0, &bind, &[]);
                    pass.dispatch_workgroups(1, 1, 1);
                }
                let slot = run.steps % ring.len();
                e.enc
                    .copy_buffer_to_buffer(&self.tokens, 0, &ring[slot], 0, READ);
                let index = gpu.queue.submit([e.enc.finish()]);
                let read = PendingRead::start(&ring[slot], READ)?;
                pending.push_back(Pending { index, read });
                run.steps += 1;
                self.last_step.dispatches = e.log.dispatches + 1;
            }
            let Some(p) = pending.pop_front() else {
                break;
            };
            let b = p.read.finish(gpu, until(p.index))?;
            let word =
                |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
            if stopped {
                continue;
            }
            let (token, raw) = (word(0), word(1));
            if raw as usize >= self.vocab {
                // drain what is in flight before reporting
                for q in pending.drain(..) {
                    wait_for(gpu, q.index)?;
                }
                return Err(GpuError::Model(format!(
                    "the logits of position {} have no finite maximum (NaN or infinite values): \
                     greedy decoding cannot pick a token",
                    past + run.tokens
                )));
            }
            run.tokens += 1;
            if !on_token(token) || run.tokens == max_tokens {
                stopped = true;
            }
        }
        run.seconds = start.elapsed().as_secs_f64();
        gpu.check_health()?;
        Ok(run)
    }

    /// The next-token kernel's pipeline, created on first use.
    fn next_token_pipeline(&mut self, gpu: &Gpu) -> wgpu::ComputePipeline {
        (self.next_token_pipeline)
            .get_or_insert_with(|| crate::lab::pipeline(gpu, Kernel::Score, "next_token"))
            .clone()
    }
}
