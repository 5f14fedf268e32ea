//! Adapter choice and device creation: discrete GPUs first, real limits requested from the
//! adapter, optional features enabled where present, and a header line that says all of it.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use crate::memory::{self, DeviceMemory};
use crate::pipeline_cache::PipelineCacheFile;
use crate::priority::{self, Plan, Priority, PriorityState};
use crate::{GpuError, Result};

/// How to pick and open the device.
#[derive(Clone, Debug, Default)]
pub struct DeviceOptions {
    /// Case-insensitive substring of the adapter name to pick (`--adapter`).
    pub adapter: Option<String>,
    /// Folder of the compiled-pipeline cache ([`crate::pipeline_cache`]); none: no cache.
    pub pipeline_cache: Option<std::path::PathBuf>,
    /// Whether the prefill GEMM may run on cooperative matrices where the adapter has them.
    pub matrix_cores: MatrixCores,
    /// The KV cache's element type.
    pub kv_cache: KvCache,
}

/// The KV cache's element type: f32, or f16 (half the memory and the attention's reads; the
/// keys and values rounded to f16, clamped to its finite range) where the adapter has
/// `SHADER_F16`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvCache {
    #[default]
    F32,
    F16,
}

impl KvCache {
    /// `TLITE_KV_CACHE=f16` asks for an f16 cache; anything else, or no variable: f32.
    pub fn from_env() -> KvCache {
        match std::env::var("TLITE_KV_CACHE").as_deref() {
            Ok("f16") => KvCache::F16,
            _ => KvCache::F32,
        }
    }
}

/// Whether the prefill GEMM may run on the adapter's cooperative matrices (tensor cores), in
/// f16 with f32 accumulators, or keeps the f32 GEMM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MatrixCores {
    /// Where the adapter has a usable configuration ([`Gpu::coop_gemm`]).
    #[default]
    Auto,
    /// Never: the f32 GEMM everywhere, and the feature not even requested.
    Off,
}

impl DeviceOptions {
    /// The options the commands that run models open the device with: the adapter asked for,
    /// the pipeline cache of `TLITE_PIPELINE_CACHE` ([`crate::pipeline_cache::dir_from_env`])
    /// and the matrix cores of `TLITE_COOPMAT` ([`MatrixCores::from_env`]).
    pub fn from_env(adapter: Option<String>) -> DeviceOptions {
        DeviceOptions {
            adapter,
            pipeline_cache: crate::pipeline_cache::dir_from_env(),
            matrix_cores: MatrixCores::from_env(),
            kv_cache: KvCache::from_env(),
        }
    }
}

impl MatrixCores {
    /// `TLITE_COOPMAT=off` (or `0`) turns them off; anything else, or no variable: auto.
    pub fn from_env() -> MatrixCores {
        match std::env::var("TLITE_COOPMAT").as_deref() {
            Ok("off" | "0") => MatrixCores::Off,
            _ => MatrixCores::Auto,
        }
    }
}

/// An open device with what it can do.
pub struct Gpu {
    pub info: wgpu::AdapterInfo,
    /// Features enabled on the device (the wanted ones the adapter has).
    pub features: wgpu::Features,
    /// Everything the adapter offers, enabled or not.
    pub adapter_features: wgpu::Features,
    pub limits: wgpu::Limits,
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    /// The execution priority the device got (global queue priority, cooperative split).
    pub priority: PriorityState,
    /// The compiled-pipeline cache on disk, where one was asked for and the backend has one.
    pub pipeline_cache: Option<PipelineCacheFile>,
    /// Whether the prefill GEMM runs on cooperative matrices ([`Gpu::coop_gemm`]), or why not.
    coop: std::result::Result<(), &'static str>,
    /// Whether the KV cache holds f16 ([`Gpu::kv_f16`]).
    kv_f16: bool,
    /// What the device reported outside an error scope, for the next step to return.
    health: Arc<Health>,
}

/// Errors wgpu reports outside any error scope (its default handler panics) and device loss,
/// kept until a step of the runtime reports them as a typed error.
#[derive(Debug, Default)]
struct Health {
    /// The first uncaptured error since the last report.
    uncaptured: Mutex<Option<GpuError>>,
    /// Set once the device is lost; every later step reports it.
    lost: Mutex<Option<(String, String)>>,
}

impl Health {
    fn install(device: &wgpu::Device) -> Arc<Health> {
        let health = Arc::new(Health::default());
        let h = Arc::clone(&health);
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut slot = h.uncaptured.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(from_wgpu(e, "a GPU call outside an error scope", 0, ""));
            }
        }));
        let h = Arc::clone(&health);
        device.set_device_lost_callback(move |reason, message| {
            let reason = match reason {
                wgpu::DeviceLostReason::Destroyed => "destroyed by the program",
                wgpu::DeviceLostReason::Unknown => "driver reset, hang or removal",
            };
            let message = match message.trim() {
                "" => "the driver gave no detail".to_owned(),
                m => m.replace('\n', " "),
            };
            let mut slot = h.lost.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert((reason.to_owned(), message));
        });
        health
    }
}

/// A wgpu error as the runtime's: out-of-memory while allocating `what` (`bytes`, with `hint`),
/// or a rejected call (a bug of the runtime's, since every size is checked before use).
pub(crate) fn from_wgpu(e: wgpu::Error, what: &str, bytes: u64, hint: &str) -> GpuError {
    match e {
        wgpu::Error::OutOfMemory { source } => {
            // wgpu's own text is only "Out of Memory"; its source names the call and label.
            let mut detail = String::new();
            let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
            while let Some(err) = cur {
                let _ = write!(detail, "{}{err}", if detail.is_empty() { "" } else { ": " });
                cur = err.source();
            }
            let hint = if hint.is_empty() {
                "use a smaller --max-seq or --max-batch, or free GPU memory used by other programs"
            } else {
                hint
            };
            GpuError::OutOfMemory {
                what: what.to_owned(),
                bytes,
                hint: format!("{hint} (wgpu: {})", detail.replace('\n', " ").trim()),
            }
        }
        wgpu::Error::Validation { description, .. } => GpuError::Validation {
            what: what.to_owned(),
            message: description.replace('\n', " ").trim().to_owned(),
        },
        wgpu::Error::Internal { description, .. } => {
            GpuError::Device(format!("{what}: {}", description.replace('\n', " ").trim()))
        }
    }
}

/// Out-of-memory, validation and internal error scopes around some GPU work: every wgpu error
/// of the work on this thread lands here instead of in the uncaptured handler.
pub(crate) struct Scopes {
    // Popped in reverse order of pushing: fields drop in declaration order.
    internal: wgpu::ErrorScopeGuard,
    oom: wgpu::ErrorScopeGuard,
    validation: wgpu::ErrorScopeGuard,
}

impl Scopes {
    pub(crate) fn push(device: &wgpu::Device) -> Scopes {
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
        Scopes {
            internal,
            oom,
            validation,
        }
    }

    /// The first error caught (out-of-memory first: it usually causes the others).
    pub(crate) fn pop(self) -> Option<wgpu::Error> {
        let Scopes {
            internal,
            oom,
            validation,
        } = self;
        let internal = pollster::block_on(internal.pop());
        let oom = pollster::block_on(oom.pop());
        let validation = pollster::block_on(validation.pop());
        oom.or(validation).or(internal)
    }
}

/// Runs `work` inside [`Scopes`]; a caught wgpu error wins over `work`'s own result (a failed
/// allocation often shows up in `work` as a mapping error too).
pub(crate) fn scoped<T>(
    gpu: &Gpu,
    what: &str,
    bytes: u64,
    hint: &str,
    work: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let scopes = Scopes::push(&gpu.device);
    let r = work();
    match scopes.pop() {
        Some(e) => Err(from_wgpu(e, what, bytes, hint)),
        None => r,
    }
}

/// Optional features used where present; every kernel has a path without them.
pub const WANTED_FEATURES: wgpu::Features = wgpu::Features::SHADER_F16
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    .union(wgpu::Features::PIPELINE_CACHE);

fn backends() -> wgpu::Backends {
    wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY)
}

fn type_rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    }
}

impl Gpu {
    /// Lists the adapters every backend of this build can see, best first.
    pub fn adapters() -> Vec<wgpu::AdapterInfo> {
        pollster::block_on(enumerate())
            .iter()
            .map(|a| a.get_info())
            .collect()
    }

    /// Opens the best adapter (or the one `opts.adapter` names) with its real limits.
    pub fn new(opts: &DeviceOptions) -> Result<Gpu> {
        Self::with_priority(opts, Priority::Normal)
    }

    /// As [`Self::new`], with an execution priority (see [`crate::priority`]): `Low` where the
    /// adapter allows it, the cooperative mode otherwise (the header says which).
    pub fn with_priority(opts: &DeviceOptions, priority: Priority) -> Result<Gpu> {
        Self::open_with(opts, |adapter| {
            let support = match priority {
                Priority::Low => priority::global_support(adapter),
                _ => priority::GlobalSupport::Unavailable("not looked up".into()),
            };
            priority::plan(priority, &support)
        })
    }

    /// Opens the chosen adapter as the [`Plan`] that `plan` makes for it says.
    pub fn open_with(
        opts: &DeviceOptions,
        plan: impl FnOnce(&wgpu::Adapter) -> Plan,
    ) -> Result<Gpu> {
        pollster::block_on(Self::new_async(opts, plan))
    }

    async fn new_async(
        opts: &DeviceOptions,
        plan: impl FnOnce(&wgpu::Adapter) -> Plan,
    ) -> Result<Gpu> {
        let adapters = enumerate().await;
        if adapters.is_empty() {
            return Err(GpuError::NoAdapter {
                backends: format!("{:?}", backends()),
            });
        }
        let adapter = match &opts.adapter {
            None => adapters.into_iter().next().expect("checked non-empty"),
            Some(want) => {
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                adapters
                    .into_iter()
                    .find(|a| {
                        a.get_info()
                            .name
                            .to_lowercase()
                            .contains(&want.to_lowercase())
                    })
                    .ok_or_else(|| GpuError::AdapterNotFound {
                        wanted: want.clone(),
                        available: names.join(", "),
                    })?
            }
        };
        let info = adapter.get_info();
        let adapter_features = adapter.features();
        let mut features = adapter_features & WANTED_FEATURES;
        let limits = adapter.limits();
        let coop_fit = coop_gemm_fits(
            adapter_features,
            (info.subgroup_min_size, info.subgroup_max_size),
            &limits,
            &adapter.cooperative_matrix_properties(),
        );
        let coop = match (opts.matrix_cores, coop_fit) {
            (MatrixCores::Off, Ok(())) => Err("TLITE_COOPMAT=off"),
            (_, fit) => fit,
        };
        if coop.is_ok() {
            features |= wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX;
        }
        let desc = descriptor(features, &limits);
        let plan = plan(&adapter);
        let (device, queue, priority) =
            priority::open(&adapter, &desc, plan)
                .await
                .map_err(|source| GpuError::RequestDevice {
                    adapter: info.name.clone(),
                    source,
                })?;
        let health = Health::install(&device);
        let pipeline_cache = (opts.pipeline_cache.as_deref())
            .and_then(|dir| PipelineCacheFile::open(&device, &info, features, dir));
        Ok(Gpu {
            info,
            features,
            adapter_features,
            limits,
            device,
            queue,
            priority,
            pipeline_cache,
            coop,
            kv_f16: opts.kv_cache == KvCache::F16 && features.contains(wgpu::Features::SHADER_F16),
            health,
        })
    }

    /// The device's memory where the backend reports it (Vulkan), queried now: what is
    /// available shrinks as models are loaded. `None`: unknown (loads rely on error scopes).
    pub fn memory(&self) -> Option<DeviceMemory> {
        memory::query(&self.device, self.info.device_type)
    }

    /// `Err` once the device is lost (every call from then on), or with the first error wgpu
    /// reported outside an error scope since the last call (which clears it).
    pub fn check_health(&self) -> Result<()> {
        if let Some((reason, message)) = self
            .health
            .lost
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(GpuError::DeviceLost { reason, message });
        }
        match self
            .health
            .uncaptured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Waits as `poll` says. wgpu 30 panics inside `Device::poll` when the device is lost
    /// mid-wait (`handle_error_fatal`); that panic is caught here and returned as
    /// [`GpuError::DeviceLost`] (the panic message is still printed by the panic hook).
    pub fn poll(&self, poll: wgpu::PollType) -> Result<()> {
        self.check_health()?;
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.device.poll(poll)));
        match r {
            Ok(Ok(_)) => self.check_health(),
            Ok(Err(e)) => {
                self.check_health()?;
                Err(GpuError::Device(e.to_string()))
            }
            Err(panic) => {
                self.check_health()?;
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "Device::poll panicked".to_owned());
                Err(GpuError::DeviceLost {
                    reason: "lost while waiting".into(),
                    message: message.replace('\n', " ").trim().to_owned(),
                })
            }
        }
    }

    /// What this device was requested with (for a second device on the same adapter).
    pub fn descriptor(&self) -> wgpu::DeviceDescriptor<'static> {
        descriptor(self.features, &self.limits)
    }

    /// This device's adapter, enumerated again (for a second device on it): the first whose
    /// backend, vendor, device id and name are this device's (of several identical GPUs, one
    /// of the same model).
    pub fn same_adapter(&self) -> Result<wgpu::Adapter> {
        let same = |i: &wgpu::AdapterInfo| {
            (i.backend, i.vendor, i.device, &i.name)
                == (
                    self.info.backend,
                    self.info.vendor,
                    self.info.device,
                    &self.info.name,
                )
        };
        (pollster::block_on(enumerate()).into_iter())
            .find(|a| same(&a.get_info()))
            .ok_or_else(|| GpuError::AdapterNotFound {
                wanted: self.info.name.clone(),
                available: Self::adapters()
                    .into_iter()
                    .map(|i| i.name)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Whether the prefill GEMM runs on cooperative matrices: the feature and f16 are enabled,
    /// the adapter has a 16 × 16 × 16 f16 × f16 → f32 configuration, its subgroups are exactly
    /// 32 wide and its workgroup memory holds the kernel's tiles (`matmul_coop.wgsl`).
    pub fn coop_gemm(&self) -> bool {
        self.coop.is_ok()
    }

    /// The adapter's name and the precision of the model's matrix products on it, for the
    /// records of a measurement (`tlite ppl --json`, sweeps).
    pub fn compute_label(&self) -> String {
        let products = match self.coop_gemm() {
            true => {
                "f16 prefill GEMMs and attention (heads of a multiple of 16) on cooperative matrices, \
                 f32 accumulation; the 128 × 128 GEMMs' inputs written in f16 from 512 tokens"
            }
            false => "f32",
        };
        let kv = if self.kv_f16 { ", f16 KV cache" } else { "" };
        format!("{} ({products}{kv})", self.info.name)
    }

    /// Whether the KV cache holds f16 ([`KvCache`]): asked for, and the adapter has f16.
    pub fn kv_f16(&self) -> bool {
        self.kv_f16
    }

    pub fn has_f16(&self) -> bool {
        self.features.contains(wgpu::Features::SHADER_F16)
    }

    pub fn has_subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
    }

    /// A software adapter (lavapipe, SwiftShader): timings there say little about a GPU.
    pub fn is_cpu(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu
    }

    /// One line with the adapter, backend, features and limits, printed before every run so a
    /// result can be reproduced.
    pub fn header(&self) -> String {
        let yes = |b: bool| if b { "yes" } else { "no" };
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let mut s = format!(
            "adapter: {} ({:?}, {:?}, driver {} {})",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.info.driver_info
        );
        let _ = write!(
            s,
            " | f16 {} | subgroups {}",
            yes(self.has_f16()),
            if self.has_subgroups() {
                format!(
                    "{}..{}",
                    self.info.subgroup_min_size, self.info.subgroup_max_size
                )
            } else {
                "no".into()
            }
        );
        let _ = write!(
            s,
            " | timestamps {} | cooperative matrix {}",
            yes(self.features.contains(wgpu::Features::TIMESTAMP_QUERY)),
            match (
                self.coop,
                self.adapter_features
                    .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX)
            ) {
                (Ok(()), _) => "yes (f16 prefill GEMM)".to_owned(),
                (Err(why), true) => format!("yes (unused: {why}; f32 GEMM)"),
                (Err(_), false) => "no".to_owned(),
            }
        );
        if self.kv_f16 {
            s.push_str(" | KV cache f16");
        }
        let _ = write!(
            s,
            " | max storage binding {:.0} MiB | max buffer {:.0} MiB | workgroup storage {} KiB",
            mib(self.limits.max_storage_buffer_binding_size),
            mib(self.limits.max_buffer_size),
            self.limits.max_compute_workgroup_storage_size / 1024
        );
        if let Some(m) = self.memory() {
            let _ = write!(s, " | {m}");
        }
        let _ = write!(s, " | {}", self.priority.describe());
        if let Some(c) = &self.pipeline_cache {
            let _ = write!(s, " | pipeline cache {}", c.loaded);
        }
        s
    }
}

/// Workgroup memory of `matmul_coop::gemm_m0e4_coop`: the f16 weight and activation tiles
/// (rows of `COOP_K + 8`) and one 16 × 16 f32 staging tile per subgroup.
pub const COOP_GEMM_WORKGROUP_BYTES: u32 = {
    use crate::kernels::params::{COOP_K, COOP_ROWS, COOP_TOKENS, COOP_WG};
    (COOP_ROWS + COOP_TOKENS) * (COOP_K + 8) * 2 + (COOP_WG / 32) * 256 * 4
};
// Within the 48 KiB NVIDIA's Vulkan driver gives a workgroup.
const _: () = assert!(COOP_GEMM_WORKGROUP_BYTES <= 48 << 10);
// `matmul_coop_few::gemm_m0e4_coop_few` (its subgroups' weight and activation tiles and partial
// sums) needs no more, so the one check covers both.
const _: () = {
    use crate::kernels::params::{COOP_FEW_WG, COOP_K};
    let few = (COOP_FEW_WG / 32) * (2 * 16 * (COOP_K + 8) * 2 + 256 * 4);
    assert!(few <= COOP_GEMM_WORKGROUP_BYTES);
};

// `attention_coop::prefill`, which the plan runs where the coop GEMM runs, needs no more.
const _: () = assert!(crate::kernels::params::ATTENTION_COOP_BYTES <= COOP_GEMM_WORKGROUP_BYTES);

/// Whether an adapter can run `matmul_coop::gemm_m0e4_coop` ([`Gpu::coop_gemm`]): `Ok`, or
/// why not, for the header line.
fn coop_gemm_fits(
    features: wgpu::Features,
    (subgroup_min, subgroup_max): (u32, u32),
    limits: &wgpu::Limits,
    configs: &[wgpu::CooperativeMatrixProperties],
) -> std::result::Result<(), &'static str> {
    if !features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
        return Err("no cooperative matrices");
    }
    if !features.contains(wgpu::Features::SHADER_F16) {
        return Err("no f16");
    }
    if (subgroup_min, subgroup_max) != (32, 32) {
        return Err("subgroups not exactly 32 wide");
    }
    if limits.max_compute_workgroup_storage_size < COOP_GEMM_WORKGROUP_BYTES
        || limits.max_compute_invocations_per_workgroup < crate::kernels::params::COOP_WG
    {
        return Err("workgroups too small");
    }
    let usable = configs.iter().any(|p| {
        (p.m_size, p.n_size, p.k_size) == (16, 16, 16)
            && p.ab_type == wgpu::CooperativeScalarType::F16
            && p.cr_type == wgpu::CooperativeScalarType::F32
    });
    match usable {
        true => Ok(()),
        false => Err("no 16x16x16 f16 -> f32 configuration"),
    }
}

/// The device the runtime asks for: `features` (the wanted ones the adapter has) and the
/// adapter's own `limits`.
fn descriptor(features: wgpu::Features, limits: &wgpu::Limits) -> wgpu::DeviceDescriptor<'static> {
    let experimental_features =
        if features.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX) {
            // SAFETY: the one experimental feature asked for is cooperative matrices, used by
            // the kernel files on them (matmul_coop.wgsl, matmul_coop_few.wgsl,
            // attention_coop.wgsl) whose every shared-memory access is in bounds by construction
            // and whose output is checked against the f64 product by the tests.
            unsafe { wgpu::ExperimentalFeatures::enabled() }
        } else {
            wgpu::ExperimentalFeatures::disabled()
        };
    wgpu::DeviceDescriptor {
        label: Some("tlite"),
        required_features: features,
        required_limits: limits.clone(),
        experimental_features,
        memory_hints: wgpu::MemoryHints::Performance,
        trace: wgpu::Trace::Off,
    }
}

async fn enumerate() -> Vec<wgpu::Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backends(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    let mut adapters = instance.enumerate_adapters(backends()).await;
    adapters.sort_by_key(|a| type_rank(a.get_info().device_type));
    adapters
}

/// The one GPU test harness for every adapter: opens the adapter `TLITE_ADAPTER` names (or the
/// best one) and prints its header outside the test runner's capture. With no adapter it panics
/// under CI (`CI` or `TLITE_REQUIRE_GPU` set: CI always has lavapipe, so a broken driver install
/// can never pass silently) and otherwise skips with a printed reason.
pub fn gpu_for_test(test: &str) -> Option<Gpu> {
    use std::io::Write as _;
    let adapter = std::env::var("TLITE_ADAPTER").ok();
    match Gpu::new(&DeviceOptions {
        adapter,
        matrix_cores: MatrixCores::from_env(),
        kv_cache: KvCache::from_env(),
        ..Default::default()
    }) {
        Ok(gpu) => {
            let _ = writeln!(std::io::stderr(), "[{test}] {}", gpu.header());
            Some(gpu)
        }
        Err(e) => {
            let required =
                std::env::var_os("CI").is_some() || std::env::var_os("TLITE_REQUIRE_GPU").is_some();
            assert!(!required, "[{test}] no GPU adapter under CI: {e}");
            let _ = writeln!(
                std::io::stderr(),
                "[{test}] SKIPPED: {e} (set CI or TLITE_REQUIRE_GPU to make this a failure)"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wgpu::{CooperativeMatrixProperties as Config, CooperativeScalarType as T, Features as F};

    fn config(size: u32, ab: T, cr: T) -> Config {
        Config {
            m_size: size,
            n_size: size,
            k_size: size,
            ab_type: ab,
            cr_type: cr,
            saturating_accumulation: false,
        }
    }

    /// Each requirement of the coop GEMM, alone, turns it off, with its reason.
    #[test]
    fn the_coop_gemm_needs_each_of_its_requirements() {
        let all = F::EXPERIMENTAL_COOPERATIVE_MATRIX | F::SHADER_F16;
        let limits = wgpu::Limits {
            max_compute_workgroup_storage_size: 48 << 10,
            max_compute_invocations_per_workgroup: 1024,
            ..wgpu::Limits::default()
        };
        let good = [config(8, T::F32, T::F32), config(16, T::F16, T::F32)];
        assert_eq!(coop_gemm_fits(all, (32, 32), &limits, &good), Ok(()));
        let why = |f, sg, l: &wgpu::Limits, c: &[Config]| coop_gemm_fits(f, sg, l, c).unwrap_err();
        assert_eq!(
            why(F::SHADER_F16, (32, 32), &limits, &good),
            "no cooperative matrices"
        );
        assert_eq!(
            why(F::EXPERIMENTAL_COOPERATIVE_MATRIX, (32, 32), &limits, &good),
            "no f16"
        );
        assert_eq!(
            why(all, (32, 64), &limits, &good),
            "subgroups not exactly 32 wide"
        );
        assert_eq!(
            why(all, (8, 8), &limits, &good),
            "subgroups not exactly 32 wide"
        );
        let small = wgpu::Limits {
            max_compute_workgroup_storage_size: COOP_GEMM_WORKGROUP_BYTES - 1,
            ..limits.clone()
        };
        assert_eq!(why(all, (32, 32), &small, &good), "workgroups too small");
        let f16_accumulators = [config(16, T::F16, T::F16)];
        assert_eq!(
            why(all, (32, 32), &limits, &f16_accumulators),
            "no 16x16x16 f16 -> f32 configuration"
        );
    }
}
