//! The KV cache (one K and one V buffer per layer at `max_seq`) and the RoPE cos/sin tables.

use super::upload::{Alloc, upload, write_f32};
use super::{MemoryReport, RunOptions};
use crate::Result;
use crate::graph::Graph;

impl Alloc<'_> {
    /// The KV cache of `layers` layers: the buffers' labels and the buffers.
    pub fn kv_cache(
        &self,
        layers: usize,
        opts: RunOptions,
        memory: &mut MemoryReport,
    ) -> Result<(Vec<String>, Vec<wgpu::Buffer>)> {
        let labels: Vec<String> = (0..layers)
            .flat_map(|l| [format!("kv.k{l}"), format!("kv.v{l}")])
            .collect();
        let what = format!("the KV cache for --max-seq {}", opts.max_seq);
        let kv = self.scoped(&what, self.sizes.estimate.kv_bytes, || {
            let size = self.sizes.kv_buffer;
            let bufs: Vec<wgpu::Buffer> = (labels.iter())
                .map(|label| self.buffer(label, size, wgpu::BufferUsages::STORAGE))
                .collect();
            memory.buffers.kv_bytes += bufs.iter().map(wgpu::Buffer::size).sum::<u64>();
            Ok(bufs)
        })?;
        Ok((labels, kv))
    }

    /// The (cos, sin) tables of each of `graph`'s RoPE bases: `max_seq` positions of `rot / 2`
    /// angles each.
    pub fn rope_tables(
        &self,
        graph: &Graph,
        opts: RunOptions,
        memory: &mut MemoryReport,
    ) -> Result<Vec<(wgpu::Buffer, wgpu::Buffer)>> {
        let half = graph.rot / 2;
        let n = opts.max_seq * half;
        let (dev, size) = (&self.gpu.device, self.sizes.rope_table);
        let usage = wgpu::BufferUsages::STORAGE;
        let mut tables = Vec::with_capacity(graph.rope_bases.len());
        for &(theta, factor) in &graph.rope_bases {
            let inv: Vec<f64> = (0..half)
                .map(|i| 1.0 / theta.powf((2 * i) as f64 / graph.rot as f64))
                .collect();
            let angle = |i: usize| (i / half.max(1)) as f64 / factor * inv[i % half.max(1)];
            let cos = upload(dev, "rope.cos", size, usage, |d| {
                write_f32(d, n, |i| angle(i).cos() as f32);
            })?;
            let sin = upload(dev, "rope.sin", size, usage, |d| {
                write_f32(d, n, |i| angle(i).sin() as f32);
            })?;
            memory.buffers.rope_bytes += cos.size() + sin.size();
            tables.push((cos, sin));
        }
        Ok(tables)
    }
}
