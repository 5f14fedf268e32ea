//! Bind groups and uniforms: each op binds its own slot of one uniform buffer
//! (`binding::PARAMS`) and its buffers; each step writes every op's parameters, evaluated for
//! the step, in one write.

use super::MemoryReport;
use super::upload::{Alloc, Resources};
use crate::graph::{BufRef, Field, Graph, Op};
use crate::kernels::params::binding;
use crate::memory::LimitKind;
use crate::shape::Syms;
use crate::{GpuError, Result};

impl Alloc<'_> {
    /// The uniform buffer: one slot per op.
    pub fn uniform_buffer(&self, memory: &mut MemoryReport) -> wgpu::Buffer {
        let b = self.buffer(
            "uniforms",
            self.sizes.estimate.uniform_bytes,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        );
        memory.buffers.uniform_bytes += b.size();
        b
    }

    /// One bind group per op of `graph`, with its uniforms at a fixed offset of its own slot.
    pub fn bind_groups(
        &self,
        graph: &Graph,
        res: &Resources,
        pipelines: &[wgpu::ComputePipeline],
        op_pipeline: &[usize],
    ) -> Result<Vec<wgpu::BindGroup>> {
        let slot = self.sizes.uniform_slot;
        self.scoped("the bind groups", 0, || {
            let mut groups = Vec::with_capacity(graph.ops.len());
            for (i, op) in graph.ops.iter().enumerate() {
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: binding::PARAMS,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &res.uniforms,
                        offset: slot * i as u64,
                        size: wgpu::BufferSize::new((op.params.len() * 4) as u64),
                    }),
                }];
                for (b, r) in &op.bindings {
                    entries.push(wgpu::BindGroupEntry {
                        binding: *b,
                        resource: self.resolve(res, r)?.as_entire_binding(),
                    });
                }
                groups.push(
                    self.gpu
                        .device
                        .create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some(&op.label),
                            layout: &pipelines[op_pipeline[i]].get_bind_group_layout(0),
                            entries: &entries,
                        }),
                );
            }
            Ok(groups)
        })
    }

    /// The buffer `r` names.
    fn resolve<'r>(&self, res: &'r Resources, r: &BufRef) -> Result<&'r wgpu::Buffer> {
        Ok(match r {
            BufRef::Act(a) => &res.acts[self.sizes.plan.assignment[*a]],
            BufRef::Part {
                tensor,
                chunk,
                part,
            } => res
                .weights
                .get(&(tensor.clone(), *chunk, *part))
                .ok_or_else(|| {
                    GpuError::Model(format!(
                        "weight `{tensor}` chunk {chunk} part {part} missing"
                    ))
                })?,
            BufRef::KvK(l) => &res.kv[2 * l],
            BufRef::KvV(l) => &res.kv[2 * l + 1],
            BufRef::Tokens => &res.io.tokens,
            BufRef::LogitRows => &res.io.logit_rows,
            BufRef::Cos(b) => &res.tables[*b].0,
            BufRef::Sin(b) => &res.tables[*b].1,
            BufRef::Dummy => &res.io.dummy,
        })
    }
}

/// The contents of the uniform buffer (`size` bytes, one `slot` per op) for a step of `syms`.
pub(super) fn uniforms(ops: &[Op], syms: &Syms, size: usize, slot: u64) -> Result<Vec<u8>> {
    let mut u = vec![0u8; size];
    for (i, op) in ops.iter().enumerate() {
        let base = i * slot as usize;
        for (j, f) in op.params.iter().enumerate() {
            let bits = match f {
                // Checked at load for every step within the options; kept as a guard.
                Field::U(e) => {
                    let v = e.checked_eval(syms).unwrap_or(u64::MAX);
                    u32::try_from(v).map_err(|_| GpuError::TooLarge {
                        what: format!("a parameter of `{}` in this step", op.label),
                        needed: v,
                        limit: u64::from(u32::MAX),
                        kind: LimitKind::Param32,
                        hint: "use a smaller --max-seq or --max-batch".into(),
                    })?
                }
                Field::F(v) => v.to_bits(),
            };
            u[base + 4 * j..base + 4 * j + 4].copy_from_slice(&bits.to_le_bytes());
        }
    }
    Ok(u)
}
