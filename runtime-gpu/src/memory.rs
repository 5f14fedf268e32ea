//! What the device can hold, and how the runtime says so: the kinds of limit a run can exceed
//! ([`LimitKind`]), the device-memory figures a load is checked against ([`DeviceMemory`]), and
//! the load's memory estimate ([`MemoryEstimate`], computed by the load before it allocates).
//!
//! wgpu 30 has no portable "free memory" query. On Vulkan the heaps come from
//! `vkGetPhysicalDeviceMemoryProperties` and, where the device has `VK_EXT_memory_budget`, the
//! process's budget and current usage per heap; elsewhere nothing is known and a load relies on
//! wgpu's error scopes alone (see `GpuModel::load_with`).

use std::fmt;

/// Byte counts as people read them.
pub fn fmt_bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// Largest byte size of one binding the runtime's kernels can index: their array indices are
/// `u32` over 4-byte elements, and byte offsets are kept within `u32` as well.
pub const MAX_INDEXED_BYTES: u64 = u32::MAX as u64;

/// Most positions of a context: positions reach the kernels as `u32`.
pub const MAX_POSITIONS: u64 = u32::MAX as u64;

/// Which limit a size ran into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// `max_buffer_size` of one buffer (bytes).
    BufferSize,
    /// `max_storage_buffer_binding_size` of one storage binding (bytes).
    BindingSize,
    /// The 32-bit indices of the kernels (bytes of one binding, [`MAX_INDEXED_BYTES`]).
    Index32,
    /// Positions of the context, passed to the kernels as `u32` ([`MAX_POSITIONS`]).
    Positions,
    /// A kernel parameter, passed as `u32` (a count).
    Param32,
    /// `max_compute_workgroups_per_dimension` (workgroups).
    Workgroups,
    /// The device memory a load may use (bytes, from [`DeviceMemory`]).
    DeviceMemory,
}

/// The text of [`crate::GpuError::TooLarge`]: exact byte counts where the rounded ones would
/// read the same ("128.0 MiB, above … 128.0 MiB").
pub(crate) fn too_large_message(
    what: &str,
    needed: u64,
    limit: u64,
    kind: LimitKind,
    hint: &str,
) -> String {
    let (mut n, mut l) = (kind.amount(needed), kind.describe(limit));
    if l.contains(&n) {
        n = format!("{n} ({needed} B)");
        l = format!("{l} ({limit} B)");
    }
    format!("{what} needs {n}, above {l}: {hint}")
}

impl LimitKind {
    /// `needed` in this limit's unit.
    pub fn amount(self, needed: u64) -> String {
        match self {
            LimitKind::BufferSize
            | LimitKind::BindingSize
            | LimitKind::Index32
            | LimitKind::DeviceMemory => fmt_bytes(needed),
            LimitKind::Positions => format!("{needed} positions"),
            LimitKind::Param32 => format!("the value {needed}"),
            LimitKind::Workgroups => format!("{needed} workgroups in one grid dimension"),
        }
    }

    /// The limit, as the end of "above ...".
    pub fn describe(self, limit: u64) -> String {
        match self {
            LimitKind::BufferSize => {
                format!("this device's {} buffer limit", fmt_bytes(limit))
            }
            LimitKind::BindingSize => {
                format!("this device's {} storage-binding limit", fmt_bytes(limit))
            }
            LimitKind::Index32 => format!(
                "the {} one binding can hold with 32-bit indices",
                fmt_bytes(limit)
            ),
            LimitKind::Positions => format!("the {limit} positions the kernels can index"),
            LimitKind::Param32 => format!("{limit}, the largest 32-bit kernel parameter"),
            LimitKind::Workgroups => format!("this device's {limit} per dimension"),
            LimitKind::DeviceMemory => format!("the {} this device has free", fmt_bytes(limit)),
        }
    }
}

/// Device memory as the driver reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceMemory {
    /// Bytes of the heap(s) a load allocates from: the largest device-local heap of a discrete
    /// or virtual GPU, every heap of an integrated or software one (all system memory). A
    /// software device without a budget reports nothing (its heap size is made up).
    pub heap_bytes: u64,
    /// What this process may still allocate there (`VK_EXT_memory_budget`: budget − usage);
    /// `None` where the driver does not say.
    pub available_bytes: Option<u64>,
}

impl DeviceMemory {
    /// The most a load may allocate: what is available where known, else the heap.
    pub fn limit(&self) -> u64 {
        self.available_bytes.unwrap_or(self.heap_bytes)
    }
}

impl fmt::Display for DeviceMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "memory {}", fmt_bytes(self.heap_bytes))?;
        if let Some(a) = self.available_bytes {
            write!(f, " ({} free)", fmt_bytes(a))?;
        }
        Ok(())
    }
}

/// What a load will allocate, computed from the model and the run options before anything is;
/// [`crate::MemoryReport`] has the same figures from the buffers actually created.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MemoryEstimate {
    /// Every weight part as uploaded (f16 parts widened to f32, padded to 4 bytes).
    pub weight_bytes: u64,
    /// The KV cache: layers × 2 (K, V) × kv heads × max_seq × head dim × 4 B (2 B for an f16
    /// cache).
    pub kv_bytes: u64,
    /// Activations with the planner's sharing.
    pub activation_bytes: u64,
    /// The RoPE cos and sin tables (max_seq × rotary dim / 2 × 4 B each, per RoPE base).
    pub rope_bytes: u64,
    /// The per-op uniform slots.
    pub uniform_bytes: u64,
    /// Token ids, logit rows, the logits readback buffer and the placeholder binding.
    pub io_bytes: u64,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.weight_bytes
            .saturating_add(self.kv_bytes)
            .saturating_add(self.activation_bytes)
            .saturating_add(self.rope_bytes)
            .saturating_add(self.uniform_bytes)
            .saturating_add(self.io_bytes)
    }

    /// `weights X, KV cache Y, activations Z, other W`.
    pub fn breakdown(&self) -> String {
        format!(
            "weights {}, KV cache {}, activations {}, other {}",
            fmt_bytes(self.weight_bytes),
            fmt_bytes(self.kv_bytes),
            fmt_bytes(self.activation_bytes),
            fmt_bytes(
                self.rope_bytes
                    .saturating_add(self.uniform_bytes)
                    .saturating_add(self.io_bytes)
            )
        )
    }
}

/// The device's memory, where the backend says (Vulkan only).
pub fn query(device: &wgpu::Device, device_type: wgpu::DeviceType) -> Option<DeviceMemory> {
    #[cfg(not(any(
        target_os = "macos",
        target_os = "ios",
        windows,
        target_arch = "wasm32"
    )))]
    {
        vulkan::query(device, device_type)
    }
    #[cfg(any(
        target_os = "macos",
        target_os = "ios",
        windows,
        target_arch = "wasm32"
    ))]
    {
        let _ = (device, device_type);
        None
    }
}

#[cfg(not(any(
    target_os = "macos",
    target_os = "ios",
    windows,
    target_arch = "wasm32"
)))]
mod vulkan {
    use ash::vk;
    use wgpu_hal::api::Vulkan;

    use super::DeviceMemory;

    pub fn query(device: &wgpu::Device, device_type: wgpu::DeviceType) -> Option<DeviceMemory> {
        // SAFETY: the guard only lends wgpu-hal's device for the read-only property queries
        // below; nothing is created or destroyed through it, and it is dropped at the end.
        let hal = unsafe { device.as_hal::<Vulkan>() }?;
        let shared = hal.shared_instance();
        let instance = shared.raw_instance();
        let phd = hal.raw_physical_device();
        // SAFETY: `phd` is the physical device of `instance` (both from wgpu-hal's device).
        let extensions = unsafe { instance.enumerate_device_extension_properties(phd) }.ok()?;
        let has_budget = extensions.iter().any(|p| {
            p.extension_name_as_c_str()
                .is_ok_and(|n| n == ash::ext::memory_budget::NAME)
        }) && shared.instance_api_version() >= vk::API_VERSION_1_1;
        let mut budget = vk::PhysicalDeviceMemoryBudgetPropertiesEXT::default();
        let props = if has_budget {
            let mut props2 = vk::PhysicalDeviceMemoryProperties2::default().push_next(&mut budget);
            // SAFETY: a Vulkan 1.1 instance (checked), so the 1.1 entry point is loaded; the
            // chained struct lives until the call returns and its extension is supported by
            // `phd` (the core-1.1 rule for physical-device queries).
            unsafe { instance.get_physical_device_memory_properties2(phd, &mut props2) };
            props2.memory_properties
        } else {
            // SAFETY: as above, a plain Vulkan 1.0 query.
            unsafe { instance.get_physical_device_memory_properties(phd) }
        };
        let n = (props.memory_heap_count as usize).min(vk::MAX_MEMORY_HEAPS);
        let heaps: Vec<usize> = match device_type {
            wgpu::DeviceType::DiscreteGpu | wgpu::DeviceType::VirtualGpu => {
                let local = (0..n)
                    .filter(|&i| {
                        props.memory_heaps[i]
                            .flags
                            .contains(vk::MemoryHeapFlags::DEVICE_LOCAL)
                    })
                    .max_by_key(|&i| props.memory_heaps[i].size)?;
                vec![local]
            }
            _ => (0..n).collect(),
        };
        // A software device's heap is a made-up figure (lavapipe: 2 GiB, not enforced): only
        // its budget, where reported, says anything.
        if device_type == wgpu::DeviceType::Cpu && !has_budget {
            return None;
        }
        let heap_bytes = heaps.iter().map(|&i| props.memory_heaps[i].size).sum();
        let available_bytes = has_budget.then(|| {
            heaps
                .iter()
                .map(|&i| budget.heap_budget[i].saturating_sub(budget.heap_usage[i]))
                .sum()
        });
        (heap_bytes > 0).then_some(DeviceMemory {
            heap_bytes,
            available_bytes,
        })
    }
}
