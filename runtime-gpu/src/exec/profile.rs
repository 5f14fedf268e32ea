//! GPU time per kind of op, from timestamps written between the dispatches of a step.

use std::collections::BTreeMap;

use super::GpuModel;
use crate::graph::Op;
use crate::readback::map_read;
use crate::{Gpu, GpuError, Result};

/// GPU time per kind of op, from timestamps written between dispatches (`tlite bench
/// --profile`). Needs `TIMESTAMP_QUERY_INSIDE_PASSES`; a step that is profiled always waits.
pub struct Profiler {
    pub(super) set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    /// MAP_READ copy of `resolve`, read after each profiled step.
    read: wgpu::Buffer,
    pub(super) capacity: u32,
    period_ns: f64,
    /// (phase, op kind) → (dispatches, GPU seconds).
    pub ops: BTreeMap<(String, String), (usize, f64)>,
    /// phase → (steps, CPU seconds spent encoding and submitting, wall seconds of the steps).
    pub steps: BTreeMap<String, (usize, f64, f64)>,
}

impl Profiler {
    /// The op's kind: its label without the layer prefix and chunk index
    /// (`l3.q_proj[0] gemv` → `q_proj gemv`).
    fn kind(label: &str) -> String {
        let rest = match label.split_once('.') {
            Some((l, r)) if l.starts_with('l') && l[1..].chars().all(|c| c.is_ascii_digit()) => r,
            _ => label,
        };
        let mut out = String::with_capacity(rest.len());
        let mut skip = false;
        for ch in rest.chars() {
            match ch {
                '[' => skip = true,
                ']' => skip = false,
                _ if !skip => out.push(ch),
                _ => {}
            }
        }
        out
    }

    /// Bytes of the timestamps of a step that stamped `stamped` ops (and its start).
    pub(super) fn stamp_bytes(stamped: usize) -> u64 {
        u64::from(stamped as u32 + 1) * 8
    }

    /// Encodes the copy of the step's timestamps into the readable buffer.
    pub(super) fn resolve(&self, enc: &mut wgpu::CommandEncoder, stamped: usize) {
        enc.resolve_query_set(&self.set, 0..stamped as u32 + 1, &self.resolve, 0);
        let bytes = Self::stamp_bytes(stamped);
        enc.copy_buffer_to_buffer(&self.resolve, 0, &self.read, 0, bytes);
    }

    /// Adds a finished step of `phase`: its CPU time `encoded` and wall time `wall`, and the
    /// time of each of the ops `stamped` (indices into `ops`).
    pub(super) fn record(
        &mut self,
        gpu: &Gpu,
        phase: &str,
        (encoded, wall): (f64, f64),
        stamped: &[usize],
        ops: &[Op],
    ) -> Result<()> {
        let e = self.steps.entry(phase.to_owned()).or_default();
        e.0 += 1;
        e.1 += encoded;
        e.2 += wall;
        if stamped.is_empty() {
            return Ok(());
        }
        let ticks: Vec<u64> = map_read(gpu, &self.read, Self::stamp_bytes(stamped.len()))?
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        for (j, &i) in stamped.iter().enumerate() {
            let dt = ticks[j + 1].saturating_sub(ticks[j]) as f64 * self.period_ns * 1e-9;
            let kind = Self::kind(&ops[i].label);
            let e = self.ops.entry((phase.to_owned(), kind)).or_default();
            e.0 += 1;
            e.1 += dt;
        }
        Ok(())
    }
}

impl GpuModel {
    /// Times every following step per op with GPU timestamps (see [`Profiler`]).
    pub fn enable_profiling(&mut self, gpu: &Gpu) -> Result<()> {
        let need = wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        if !gpu.features.contains(need) {
            return Err(GpuError::Model(format!(
                "profiling needs timestamp queries inside passes, which {} does not offer",
                gpu.info.name
            )));
        }
        let capacity = (self.graph.ops.len() as u32 + 1).min(wgpu::QUERY_SET_MAX_QUERIES);
        let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count: capacity,
        });
        let buffer = |label, usage| {
            gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size: u64::from(capacity) * 8,
                usage,
                mapped_at_creation: false,
            })
        };
        use wgpu::BufferUsages as U;
        self.profiler = Some(Profiler {
            set,
            resolve: buffer("profile.resolve", U::QUERY_RESOLVE | U::COPY_SRC),
            read: buffer("profile.read", U::MAP_READ | U::COPY_DST),
            capacity,
            period_ns: f64::from(gpu.queue.get_timestamp_period()),
            ops: BTreeMap::new(),
            steps: BTreeMap::new(),
        });
        Ok(())
    }
}
