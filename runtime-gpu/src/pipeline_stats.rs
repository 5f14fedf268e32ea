//! What the driver compiled the kernels into: for every entry point of the runtime's kernels,
//! the statistics the Vulkan driver reports of its compiled pipeline through
//! `VK_KHR_pipeline_executable_properties` (registers per thread, shared and local memory,
//! spills, instruction counts: whatever the driver names; NVIDIA's and Mesa's differ). The
//! measurements in docs/PERF.md keep meeting kernels whose speed moves by ±10-30% with how the
//! WGSL is written rather than with its arithmetic, which is register allocation and occupancy
//! that no timing shows; this is `tlite lab stats`.
//!
//! wgpu neither enables the extension nor creates pipelines with
//! `VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR`, so this opens a second device on the
//! adapter of `gpu` with the same features and limits plus the extension, translates each
//! kernel's WGSL to SPIR-V with naga as wgpu-hal does for the runtime (no runtime checks, the
//! device's SPIR-V version, workgroup memory not zeroed, as in the runtime's pipelines), and
//! creates each pipeline itself through ash, with descriptor set layouts reflected from the
//! module.
//! Every Vulkan object made here is destroyed before the function returns; the device belongs
//! to wgpu.

use crate::Result;
use crate::device::Gpu;
use crate::kernels::Kernel;

/// One statistic of a compiled pipeline executable, as the driver names it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Statistic {
    pub name: String,
    pub description: String,
    /// The value as text (integers exact, floats as the driver gave them, booleans
    /// `true`/`false`).
    pub value: String,
}

/// One executable of a pipeline (a compute pipeline has one on most drivers).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Executable {
    pub name: String,
    pub description: String,
    /// Threads per subgroup the executable was compiled for (0: the driver does not say).
    pub subgroup_size: u32,
    pub statistics: Vec<Statistic>,
}

/// The compiled pipeline of one entry point of one kernel.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PipelineStats {
    /// `kernel::entry`.
    pub pipeline: String,
    pub executables: Vec<Executable>,
}

/// What [`pipeline_statistics`] found.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct StatsReport {
    /// Why the driver's statistics could not be read (the adapter does not expose
    /// `VK_KHR_pipeline_executable_properties`); the pipelines were still created, with no
    /// executables listed. `None`: every pipeline lists its executables.
    pub missing: Option<String>,
    pub pipelines: Vec<PipelineStats>,
}

/// The kernels and entry points whose pipelines a plan can use on `gpu`: every entry point of
/// every kernel file, the coop ones only where the plan runs them.
pub fn kernels_of(gpu: &Gpu) -> Vec<(Kernel, &'static str)> {
    (Kernel::ALL.iter())
        .filter(|k| gpu.coop_gemm() || !k.needs_cooperative_matrices())
        .flat_map(|&k| k.entries().iter().map(move |&e| (k, e)))
        .collect()
}

/// Creates the pipeline of each of `pipelines` on the adapter of `gpu` (with the KV cache in
/// f16 where `gpu` keeps it so) and reads the driver's statistics of each; where the adapter
/// lacks `VK_KHR_pipeline_executable_properties` the pipelines are still created (a check of
/// the translation) and the report says why there are no statistics. Errors: not Vulkan, or a
/// kernel could not be translated or compiled (named).
pub fn pipeline_statistics(gpu: &Gpu, pipelines: &[(Kernel, &'static str)]) -> Result<StatsReport> {
    imp::pipeline_statistics(gpu, pipelines)
}

#[cfg(not(any(
    target_os = "macos",
    target_os = "ios",
    windows,
    target_arch = "wasm32"
)))]
mod imp {
    use std::collections::BTreeMap;
    use std::ffi::{CStr, CString};

    use ash::vk;
    use wgpu_hal::api::Vulkan;

    use super::{Executable, PipelineStats, Statistic, StatsReport};
    use crate::device::Gpu;
    use crate::kernels::Kernel;
    use crate::priority::vulkan::{has_pipeline_statistics, open_statistics};
    use crate::{GpuError, Result};

    fn err(msg: impl Into<String>) -> GpuError {
        GpuError::Statistics(msg.into())
    }

    pub(super) fn pipeline_statistics(
        gpu: &Gpu,
        pipelines: &[(Kernel, &'static str)],
    ) -> Result<StatsReport> {
        let adapter = gpu.same_adapter()?;
        let capture = has_pipeline_statistics(&adapter).map_err(err)?;
        let (device, _queue) =
            open_statistics(&adapter, &gpu.descriptor(), capture).map_err(err)?;
        // SAFETY: the guard lends wgpu-hal's device for the calls below; every object created
        // through it is destroyed before the guard drops, and wgpu has submitted nothing on it.
        let Some(hal) = (unsafe { device.as_hal::<Vulkan>() }) else {
            return Err(err("the statistics device is not a Vulkan device"));
        };
        let ext = ash::khr::pipeline_executable_properties::NAME;
        if capture && !hal.enabled_device_extensions().contains(&ext) {
            return Err(err(
                "the device was opened without its statistics extension",
            ));
        }
        let raw = hal.raw_device();
        let instance = hal.shared_instance().raw_instance();
        let fns = ash::khr::pipeline_executable_properties::Device::new(instance, raw);
        let api = hal.shared_instance().instance_api_version();
        // SAFETY: the physical device of this device, queried for its properties only.
        let props = unsafe { instance.get_physical_device_properties(hal.raw_physical_device()) };
        let api = api.min(props.api_version);
        let spirv = spirv_version(api);
        let mut out = Vec::with_capacity(pipelines.len());
        for &(kernel, entry) in pipelines {
            let name = format!("{}::{entry}", kernel.name());
            let (words, layout) = translate(kernel, entry, gpu.kv_f16(), spirv)
                .map_err(|e| err(format!("{name}: {e}")))?;
            // SAFETY: `raw` is a live device; `words` is naga's validated SPIR-V for features
            // this device has enabled (the same as the runtime's device); the objects are
            // destroyed by `compile` before it returns.
            let fns = capture.then_some(&fns);
            let executables = unsafe { compile(raw, fns, &words, entry, &layout) }
                .map_err(|e| err(format!("{name}: {e}")))?;
            out.push(PipelineStats {
                pipeline: name,
                executables,
            });
        }
        Ok(StatsReport {
            missing: (!capture).then(|| {
                format!(
                    "`{}` does not expose VK_KHR_pipeline_executable_properties",
                    gpu.info.name
                )
            }),
            pipelines: out,
        })
    }

    /// The SPIR-V version wgpu-hal writes for a device of Vulkan `api`.
    fn spirv_version(api: u32) -> (u8, u8) {
        match api {
            v if v >= vk::API_VERSION_1_3 => (1, 6),
            v if v >= vk::API_VERSION_1_2 => (1, 5),
            v if v >= vk::API_VERSION_1_1 => (1, 3),
            _ => (1, 0),
        }
    }

    /// Descriptor kinds per (set, binding) of the module's resources.
    type Layout = BTreeMap<(u32, u32), vk::DescriptorType>;

    /// The SPIR-V of `entry` of `kernel` as the runtime's pipelines get it, and its resources.
    fn translate(
        kernel: Kernel,
        entry: &str,
        kv_f16: bool,
        version: (u8, u8),
    ) -> std::result::Result<(Vec<u32>, Layout), String> {
        use naga::back::spv;
        let src = kernel.source_for(kv_f16);
        let module = naga::front::wgsl::parse_str(&src).map_err(|e| e.emit_to_string(&src))?;
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::all(),
        )
        .validate(&module)
        .map_err(|e| format!("{e:?}"))?;
        let mut layout = Layout::new();
        for (_, var) in module.global_variables.iter() {
            let Some(b) = &var.binding else { continue };
            let kind = match var.space {
                naga::AddressSpace::Uniform => vk::DescriptorType::UNIFORM_BUFFER,
                naga::AddressSpace::Storage { .. } => vk::DescriptorType::STORAGE_BUFFER,
                other => {
                    return Err(format!(
                        "a binding in {other:?}, which this tool does not bind"
                    ));
                }
            };
            layout.insert((b.group, b.binding), kind);
        }
        let options = spv::Options {
            lang_version: version,
            flags: spv::WriterFlags::LABEL_VARYINGS,
            bounds_check_policies: naga::proc::BoundsCheckPolicies::default(),
            // As wgpu-hal with `ShaderRuntimeChecks::unchecked()` (exec/pipelines.rs).
            force_loop_bounding: false,
            ray_query_initialization_tracking: false,
            emit_int_div_checks: false,
            // As the runtime's pipelines without naga's checks (exec/pipelines.rs):
            // workgroup memory not zeroed.
            zero_initialize_workgroup_memory: spv::ZeroInitializeWorkgroupMemoryMode::None,
            // Descriptor set = group, binding = binding (what wgpu's layouts map them to).
            fake_missing_bindings: true,
            ..Default::default()
        };
        let pipeline = spv::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: entry.to_owned(),
        };
        let words =
            spv::write_vec(&module, &info, &options, Some(&pipeline)).map_err(|e| e.to_string())?;
        Ok((words, layout))
    }

    /// Creates the pipeline of `words`, with its statistics captured and read where `fns` is
    /// given, and destroys everything it created (also on error).
    ///
    /// # Safety
    /// `raw` must be a live device, with `pipelineExecutableInfo` enabled where `fns` (its
    /// extension functions) is given; `words` valid SPIR-V for the device's enabled features.
    unsafe fn compile(
        raw: &ash::Device,
        fns: Option<&ash::khr::pipeline_executable_properties::Device>,
        words: &[u32],
        entry: &str,
        layout: &Layout,
    ) -> std::result::Result<Vec<Executable>, String> {
        let entry = CString::new(entry).map_err(|e| e.to_string())?;
        let sets = layout.keys().map(|&(s, _)| s + 1).max().unwrap_or(0);
        let mut made = Made::new(raw);
        // SAFETY (all calls below): `raw` is live; each create info points at data that
        // outlives the call; every handle created is recorded in `made`, which destroys it.
        unsafe {
            made.module = raw
                .create_shader_module(&vk::ShaderModuleCreateInfo::default().code(words), None)
                .map_err(|e| format!("vkCreateShaderModule: {e}"))?;
            for set in 0..sets {
                let bindings: Vec<vk::DescriptorSetLayoutBinding> = (layout.iter())
                    .filter(|((s, _), _)| *s == set)
                    .map(|(&(_, b), &kind)| {
                        vk::DescriptorSetLayoutBinding::default()
                            .binding(b)
                            .descriptor_type(kind)
                            .descriptor_count(1)
                            .stage_flags(vk::ShaderStageFlags::COMPUTE)
                    })
                    .collect();
                let info = vk::DescriptorSetLayoutCreateInfo::default().bindings(&bindings);
                let l = (raw.create_descriptor_set_layout(&info, None))
                    .map_err(|e| format!("vkCreateDescriptorSetLayout: {e}"))?;
                made.set_layouts.push(l);
            }
            let info = vk::PipelineLayoutCreateInfo::default().set_layouts(&made.set_layouts);
            made.layout = (raw.create_pipeline_layout(&info, None))
                .map_err(|e| format!("vkCreatePipelineLayout: {e}"))?;
            let stage = vk::PipelineShaderStageCreateInfo::default()
                .stage(vk::ShaderStageFlags::COMPUTE)
                .module(made.module)
                .name(&entry);
            let flags = match fns {
                Some(_) => vk::PipelineCreateFlags::CAPTURE_STATISTICS_KHR,
                None => vk::PipelineCreateFlags::empty(),
            };
            let info = vk::ComputePipelineCreateInfo::default()
                .flags(flags)
                .stage(stage)
                .layout(made.layout);
            let pipelines = raw
                .create_compute_pipelines(vk::PipelineCache::null(), &[info], None)
                .map_err(|(_, e)| format!("vkCreateComputePipelines: {e}"))?;
            made.pipeline = pipelines.first().copied().unwrap_or_default();
            let Some(fns) = fns else {
                return Ok(Vec::new());
            };
            let pinfo = vk::PipelineInfoKHR::default().pipeline(made.pipeline);
            let exes = (fns.get_pipeline_executable_properties(&pinfo))
                .map_err(|e| format!("vkGetPipelineExecutablePropertiesKHR: {e}"))?;
            let mut out = Vec::with_capacity(exes.len());
            for (i, exe) in exes.iter().enumerate() {
                let einfo = vk::PipelineExecutableInfoKHR::default()
                    .pipeline(made.pipeline)
                    .executable_index(i as u32);
                let stats = (fns.get_pipeline_executable_statistics(&einfo))
                    .map_err(|e| format!("vkGetPipelineExecutableStatisticsKHR: {e}"))?;
                out.push(Executable {
                    name: text(exe.name_as_c_str()),
                    description: text(exe.description_as_c_str()),
                    subgroup_size: exe.subgroup_size,
                    statistics: stats.iter().map(statistic).collect(),
                });
            }
            Ok(out)
        }
    }

    fn text(s: std::result::Result<&CStr, std::ffi::FromBytesUntilNulError>) -> String {
        s.map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    fn statistic(s: &vk::PipelineExecutableStatisticKHR) -> Statistic {
        // SAFETY: the union member read is the one `format` says the driver wrote.
        let value = unsafe {
            match s.format {
                vk::PipelineExecutableStatisticFormatKHR::BOOL32 => (s.value.b32 != 0).to_string(),
                vk::PipelineExecutableStatisticFormatKHR::INT64 => s.value.i64.to_string(),
                vk::PipelineExecutableStatisticFormatKHR::UINT64 => s.value.u64.to_string(),
                vk::PipelineExecutableStatisticFormatKHR::FLOAT64 => s.value.f64.to_string(),
                other => format!("(format {other:?})"),
            }
        };
        Statistic {
            name: text(s.name_as_c_str()),
            description: text(s.description_as_c_str()),
            value,
        }
    }

    /// The Vulkan objects of one compilation, destroyed on drop (null handles are skipped).
    struct Made<'d> {
        raw: &'d ash::Device,
        module: vk::ShaderModule,
        set_layouts: Vec<vk::DescriptorSetLayout>,
        layout: vk::PipelineLayout,
        pipeline: vk::Pipeline,
    }

    impl<'d> Made<'d> {
        fn new(raw: &'d ash::Device) -> Self {
            Made {
                raw,
                module: vk::ShaderModule::null(),
                set_layouts: Vec::new(),
                layout: vk::PipelineLayout::null(),
                pipeline: vk::Pipeline::null(),
            }
        }
    }

    impl Drop for Made<'_> {
        fn drop(&mut self) {
            // SAFETY: each handle was created on `raw` by `compile`, is not in use by the GPU
            // (nothing was submitted) and is destroyed once.
            unsafe {
                if self.pipeline != vk::Pipeline::null() {
                    self.raw.destroy_pipeline(self.pipeline, None);
                }
                if self.layout != vk::PipelineLayout::null() {
                    self.raw.destroy_pipeline_layout(self.layout, None);
                }
                for &l in &self.set_layouts {
                    self.raw.destroy_descriptor_set_layout(l, None);
                }
                if self.module != vk::ShaderModule::null() {
                    self.raw.destroy_shader_module(self.module, None);
                }
            }
        }
    }
}

#[cfg(any(
    target_os = "macos",
    target_os = "ios",
    windows,
    target_arch = "wasm32"
))]
mod imp {
    use super::StatsReport;
    use crate::device::Gpu;
    use crate::kernels::Kernel;
    use crate::{GpuError, Result};

    pub(super) fn pipeline_statistics(
        _gpu: &Gpu,
        _pipelines: &[(Kernel, &'static str)],
    ) -> Result<StatsReport> {
        Err(GpuError::Statistics(
            "pipeline statistics need Vulkan (VK_KHR_pipeline_executable_properties), which this build does not use".into(),
        ))
    }
}
