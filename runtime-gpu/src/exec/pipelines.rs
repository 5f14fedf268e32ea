//! Compute pipelines: one per (kernel, entry point) the plan uses, created in op order.

use std::collections::HashMap;

use super::ShaderChecks;
use super::upload::Alloc;
use crate::Result;
use crate::graph::Graph;
use crate::kernels::Kernel;

impl Alloc<'_> {
    /// The pipelines of `graph` and the index of each op's pipeline.
    pub fn pipelines(
        &self,
        graph: &Graph,
        checks: ShaderChecks,
    ) -> Result<(Vec<wgpu::ComputePipeline>, Vec<usize>)> {
        let dev = &self.gpu.device;
        self.scoped("the compute pipelines", 0, || {
            let mut pipelines = Vec::new();
            let mut modules: HashMap<Kernel, wgpu::ShaderModule> = HashMap::new();
            let mut index: HashMap<(Kernel, &'static str), usize> = HashMap::new();
            let mut op_pipeline = Vec::with_capacity(graph.ops.len());
            for op in &graph.ops {
                let idx = *index.entry((op.kernel, op.entry)).or_insert_with(|| {
                    let module = modules
                        .entry(op.kernel)
                        .or_insert_with(|| shader_module(dev, op.kernel, checks, graph.kv_f16));
                    pipelines.push(
                        dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                            label: Some(&format!("{}::{}", op.kernel.name(), op.entry)),
                            layout: None,
                            module,
                            entry_point: Some(op.entry),
                            compilation_options: compilation_options(checks),
                            cache: self.gpu.pipeline_cache.as_ref().map(|c| &c.cache),
                        }),
                    );
                    pipelines.len() - 1
                });
                op_pipeline.push(idx);
            }
            Ok((pipelines, op_pipeline))
        })
    }
}

/// The shader module of `kernel` (for an f16 KV cache with `kv_f16`), with or without naga's
/// runtime checks.
fn shader_module(
    dev: &wgpu::Device,
    kernel: Kernel,
    checks: ShaderChecks,
    kv_f16: bool,
) -> wgpu::ShaderModule {
    let desc = wgpu::ShaderModuleDescriptor {
        label: Some(kernel.name()),
        source: wgpu::ShaderSource::Wgsl(kernel.source_for(kv_f16).into()),
    };
    match checks {
        ShaderChecks::Checked => dev.create_shader_module(desc),
        // SAFETY: the runtime's own kernels, which clamp every index into its buffer and bound
        // every loop by uniform sizes; the host checks the inputs that reach them (see
        // ShaderChecks).
        ShaderChecks::Unchecked => unsafe {
            dev.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
        },
    }
}

/// The pipelines' options: without naga's checks, also without the zeroing of workgroup memory
/// that WebGPU requires at the start of every workgroup (stores and a barrier before the first
/// load): the kernels write every element of their workgroup arrays before they read it.
pub(crate) fn compilation_options(
    checks: ShaderChecks,
) -> wgpu::PipelineCompilationOptions<'static> {
    wgpu::PipelineCompilationOptions {
        zero_initialize_workgroup_memory: checks == ShaderChecks::Checked,
        ..Default::default()
    }
}
