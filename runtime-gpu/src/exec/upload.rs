//! Allocation at load: every buffer is created inside a wgpu error scope that turns the
//! driver's out-of-memory into an error naming what was being allocated; weights and tables
//! are written straight into buffers created mapped.

use std::collections::HashMap;

use tlite_model::deploy::DeployedModel;

use super::{MemoryReport, RunOptions};
use crate::device;
use crate::estimate::{MIN_BUFFER, Sizes};
use crate::graph::Graph;
use crate::memory::fmt_bytes;
use crate::{Gpu, GpuError, Result};

/// The weight parts by (tensor, chunk, part).
pub(super) type Weights = HashMap<(String, usize, usize), wgpu::Buffer>;

/// The allocator of one load.
pub(super) struct Alloc<'a> {
    pub gpu: &'a Gpu,
    pub sizes: &'a Sizes,
    /// What to do when the driver runs out of memory.
    oom_hint: String,
}

/// The step's input and output buffers.
pub(super) struct Io {
    pub tokens: wgpu::Buffer,
    pub logit_rows: wgpu::Buffer,
    /// The placeholder for bindings an op does not read.
    pub dummy: wgpu::Buffer,
    /// The logits readback buffer.
    pub staging: wgpu::Buffer,
}

/// Every buffer the ops bind.
pub(super) struct Resources {
    pub weights: Weights,
    pub kv_labels: Vec<String>,
    /// K and V of each layer, in `kv_labels`' order.
    pub kv: Vec<wgpu::Buffer>,
    /// The planned activation buffers.
    pub acts: Vec<wgpu::Buffer>,
    pub io: Io,
    /// (cos, sin) of each RoPE base.
    pub tables: Vec<(wgpu::Buffer, wgpu::Buffer)>,
    pub uniforms: wgpu::Buffer,
}

impl Resources {
    /// Allocates and fills every buffer of `model`'s load, adding their sizes to `memory`.
    pub fn allocate(
        alloc: &Alloc,
        model: &DeployedModel,
        graph: &Graph,
        opts: RunOptions,
        memory: &mut MemoryReport,
    ) -> Result<Self> {
        let weights = alloc.weights(model, memory)?;
        let (kv_labels, kv) = alloc.kv_cache(model.manifest.config.num_layers, opts, memory)?;
        let acts = alloc.activations(opts, memory)?;
        let est = &alloc.sizes.estimate;
        let other = est.io_bytes + est.rope_bytes + est.uniform_bytes;
        let what = "the RoPE tables, step buffers and uniforms";
        let (io, tables, uniforms) = alloc.scoped(what, other, || {
            let io = alloc.io(memory);
            let tables = alloc.rope_tables(graph, opts, memory)?;
            Ok((io, tables, alloc.uniform_buffer(memory)))
        })?;
        memory.total_bytes = memory.buffers.total();
        Ok(Resources {
            weights,
            kv_labels,
            kv,
            acts,
            io,
            tables,
            uniforms,
        })
    }
}

impl<'a> Alloc<'a> {
    pub fn new(gpu: &'a Gpu, sizes: &'a Sizes) -> Self {
        let est = &sizes.estimate;
        let oom_hint = match gpu.memory() {
            Some(m) => format!(
                "this load needs {} ({}) of the {} the device reports free; use a smaller \
                 --max-seq or --max-batch, or free GPU memory used by other programs",
                fmt_bytes(est.total()),
                est.breakdown(),
                fmt_bytes(m.limit())
            ),
            None => format!(
                "this load needs {} ({}); use a smaller --max-seq or --max-batch, or free GPU \
                 memory used by other programs",
                fmt_bytes(est.total()),
                est.breakdown()
            ),
        };
        Alloc {
            gpu,
            sizes,
            oom_hint,
        }
    }

    /// `work` inside an error scope: a wgpu error is an error about `what` (`bytes` bytes).
    pub fn scoped<T>(&self, what: &str, bytes: u64, work: impl FnOnce() -> Result<T>) -> Result<T> {
        device::scoped(self.gpu, what, bytes, &self.oom_hint, work)
    }

    /// An unmapped buffer.
    pub fn buffer(&self, label: &str, size: u64, usage: wgpu::BufferUsages) -> wgpu::Buffer {
        self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size,
            usage,
            mapped_at_creation: false,
        })
    }

    /// The weights, as stored (f16 widened to f32), written straight into mapped buffers; a
    /// joined weight's parts are its members' parts one after another.
    fn weights(&self, model: &DeployedModel, memory: &mut MemoryReport) -> Result<Weights> {
        let mut weights = Weights::new();
        self.scoped("the weights", self.sizes.estimate.weight_bytes, || {
            for w in &self.sizes.weights {
                let b = &w.buffer;
                let stored = |names: &[String]| {
                    (names.iter())
                        .map(|p| model.part(p).map(|(_, bytes)| bytes))
                        .collect::<std::result::Result<Vec<&[u8]>, _>>()
                        .map_err(|e| GpuError::Model(e.to_string()))
                };
                let (parts, high) = (stored(&b.parts)?, stored(&b.high)?);
                let buf = self.weight_buffer(&b.key.0, w.bytes, (&parts, &high), b.f16)?;
                memory.buffers.weight_bytes += buf.size();
                weights.insert(b.key.clone(), buf);
            }
            Ok(())
        })?;
        Ok(weights)
    }

    /// The buffer of one weight part (or of a joined weight's part): `parts` one after
    /// another, as they are or as f16 widened to f32; with `high` (an M0E4 tensor's biases, as
    /// long as `parts`, its scales), word i holds half i of `parts` and half i of `high`.
    fn weight_buffer(
        &self,
        label: &str,
        size: u64,
        (parts, high): (&[&[u8]], &[&[u8]]),
        f16: bool,
    ) -> Result<wgpu::Buffer> {
        upload(
            &self.gpu.device,
            label,
            size,
            wgpu::BufferUsages::STORAGE,
            |mut dst| {
                if !high.is_empty() {
                    write_words(dst, group_words(parts, high));
                    return;
                }
                let mut at = 0;
                for bytes in parts {
                    if f16 {
                        let n = bytes.len() / 2;
                        write_f32(dst.slice(at..at + 4 * n), n, |i| {
                            half::f16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]).to_f32()
                        });
                        at += 4 * n;
                    } else {
                        dst.slice(at..at + bytes.len()).copy_from_slice(bytes);
                        at += bytes.len();
                    }
                }
            },
        )
    }

    /// The activation buffers the memory planner placed.
    fn activations(
        &self,
        opts: RunOptions,
        memory: &mut MemoryReport,
    ) -> Result<Vec<wgpu::Buffer>> {
        let plan = &self.sizes.plan;
        let what = format!("the activations for --max-batch {}", opts.max_batch);
        self.scoped(&what, self.sizes.estimate.activation_bytes, || {
            let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC;
            let bufs: Vec<wgpu::Buffer> = (plan.buffer_bytes.iter().enumerate())
                .map(|(i, &b)| self.buffer(&format!("act{i}"), b.max(MIN_BUFFER), usage))
                .collect();
            memory.buffers.activation_bytes += bufs.iter().map(wgpu::Buffer::size).sum::<u64>();
            Ok(bufs)
        })
    }

    /// The token ids, the logit rows, the placeholder and the logits readback buffer.
    fn io(&self, memory: &mut MemoryReport) -> Io {
        let copy_dst = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST;
        let readback = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        let mut buffer = |label: &str, size: u64, usage| {
            let b = self.buffer(label, size, usage);
            memory.buffers.io_bytes += b.size();
            b
        };
        Io {
            // also written by greedy decoding's next-token kernel, and read back from
            tokens: buffer(
                "tokens",
                self.sizes.io_small,
                copy_dst | wgpu::BufferUsages::COPY_SRC,
            ),
            logit_rows: buffer("logit_rows", self.sizes.io_small, copy_dst),
            dummy: buffer("dummy", MIN_BUFFER, wgpu::BufferUsages::STORAGE),
            staging: buffer("logits.readback", self.sizes.readback, readback),
        }
    }
}

/// A buffer of `size` bytes created mapped and filled by `fill` (the whole mapped range; the
/// buffer starts zeroed). A buffer the device could not create cannot be mapped: that is an
/// error here, and the error scope around the call says why.
pub(super) fn upload(
    dev: &wgpu::Device,
    label: &str,
    size: u64,
    usage: wgpu::BufferUsages,
    fill: impl FnOnce(wgpu::WriteOnly<'_, [u8]>),
) -> Result<wgpu::Buffer> {
    let buf = dev.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size,
        usage,
        mapped_at_creation: true,
    });
    {
        let mut view = buf
            .get_mapped_range_mut(..)
            .map_err(|e| GpuError::Device(format!("mapping `{label}` for its upload: {e}")))?;
        fill(view.slice(..));
    }
    buf.unmap();
    Ok(buf)
}

/// Writes `f(0..n)` as little-endian f32 to the start of `dst`, a block at a time.
pub(super) fn write_f32(dst: wgpu::WriteOnly<'_, [u8]>, n: usize, f: impl FnMut(usize) -> f32) {
    write_words(dst, (0..n).map(f).map(f32::to_le_bytes));
}

/// The 2-byte values of `parts`, one after another.
fn halves<'a>(parts: &'a [&'a [u8]]) -> impl Iterator<Item = [u8; 2]> + 'a {
    (parts.iter()).flat_map(|b| b.chunks_exact(2).map(|h| [h[0], h[1]]))
}

/// The words of an M0E4 tensor's group buffer: half i of `lo` (its stored scales, part after
/// part) in the low half of word i, half i of `hi` (its biases) in the high half.
fn group_words<'a>(lo: &'a [&'a [u8]], hi: &'a [&'a [u8]]) -> impl Iterator<Item = [u8; 4]> + 'a {
    halves(lo)
        .zip(halves(hi))
        .map(|(l, h)| [l[0], l[1], h[0], h[1]])
}

/// Writes the 4-byte words of `words` to the start of `dst`, a block at a time.
fn write_words(mut dst: wgpu::WriteOnly<'_, [u8]>, words: impl Iterator<Item = [u8; 4]>) {
    const BLOCK: usize = 16 << 10;
    let mut tmp: Vec<u8> = Vec::with_capacity(4 * BLOCK);
    let mut at = 0;
    let mut words = words.peekable();
    while words.peek().is_some() {
        tmp.clear();
        tmp.extend(words.by_ref().take(BLOCK).flatten());
        dst.slice(at..at + tmp.len()).copy_from_slice(&tmp);
        at += tmp.len();
    }
}

#[cfg(test)]
mod tests {
    use super::group_words;

    #[test]
    fn group_words_interleave_scales_and_biases_across_parts() {
        // A joined weight: the members' scales and biases, each split where its member ends
        // (not on a word boundary of the result).
        let (s0, s1) = ([1u8, 2, 3, 4, 5, 6], [7u8, 8]);
        let (b0, b1) = ([11u8, 12], [13u8, 14, 15, 16, 17, 18]);
        let words: Vec<[u8; 4]> = group_words(&[&s0, &s1], &[&b0, &b1]).collect();
        assert_eq!(
            words,
            [
                [1, 2, 11, 12],
                [3, 4, 13, 14],
                [5, 6, 15, 16],
                [7, 8, 17, 18]
            ]
        );
        // The same words as the kernels' tests build from f16 bits.
        let (s, b) = (
            [0x0201u16, 0x0403, 0x0605, 0x0807],
            [0x0c0bu16, 0x0e0d, 0x100f, 0x1211],
        );
        let want = crate::dequant::group_words(&s, &b);
        let got: Vec<u32> = words.iter().map(|w| u32::from_le_bytes(*w)).collect();
        assert_eq!(got, want);
    }
}
