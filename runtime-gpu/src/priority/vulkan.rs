//! Vulkan global queue priority through wgpu-hal: find `VK_KHR_global_priority` (or its EXT
//! predecessor) on the adapter, and open a device whose one queue is created with
//! `VkDeviceQueueGlobalPriorityCreateInfoKHR { LOW }` chained to its `VkDeviceQueueCreateInfo`.
//!
//! Everything here reads or creates through wgpu-hal's own handles: nothing is destroyed, no
//! handle outlives the guard it came from, and the device is handed to wgpu, which owns it.

use std::ffi::CStr;

use ash::vk;
use wgpu_hal::api::Vulkan;
use wgpu_hal::vulkan::{CreateDeviceCallback, CreateDeviceCallbackArgs};

/// What the adapter offers for global queue priority.
#[derive(Clone, Debug)]
pub struct Support {
    /// The extension to enable (the KHR one where both are exposed).
    pub extension: &'static CStr,
    /// The priorities queue family 0 (the one wgpu opens) accepts, where the driver says
    /// (`VK_KHR_global_priority` or `VK_EXT_global_priority_query`); `None` where it does not.
    pub family_levels: Option<Vec<vk::QueueGlobalPriorityKHR>>,
}

impl Support {
    /// Whether LOW can be requested: the driver either lists it or does not say (the EXT
    /// extension alone: the request is then tried and a failure falls back).
    pub fn allows_low(&self) -> bool {
        self.family_levels
            .as_ref()
            .is_none_or(|l| l.contains(&vk::QueueGlobalPriorityKHR::LOW))
    }

    pub fn describe(&self) -> String {
        let name = self.extension.to_string_lossy();
        match &self.family_levels {
            None => format!("{name}; levels not reported"),
            Some(levels) => {
                let names: Vec<&str> = levels.iter().map(|&l| level_name(l)).collect();
                format!("{name}; queue family 0 offers {}", names.join(","))
            }
        }
    }
}

fn level_name(l: vk::QueueGlobalPriorityKHR) -> &'static str {
    match l {
        vk::QueueGlobalPriorityKHR::LOW => "low",
        vk::QueueGlobalPriorityKHR::MEDIUM => "medium",
        vk::QueueGlobalPriorityKHR::HIGH => "high",
        vk::QueueGlobalPriorityKHR::REALTIME => "realtime",
        _ => "?",
    }
}

/// `Ok(None)`: a Vulkan adapter without the extension; `Err`: not a Vulkan adapter or the
/// extension list could not be read (the reason).
pub fn support(adapter: &wgpu::Adapter) -> Result<Option<Support>, String> {
    // SAFETY: the guard is only used to read the instance and physical-device handles for
    // property queries below; nothing is created or destroyed through it, and it is dropped at
    // the end of this function.
    let Some(hal) = (unsafe { adapter.as_hal::<Vulkan>() }) else {
        return Err(format!(
            "not a Vulkan adapter ({:?})",
            adapter.get_info().backend
        ));
    };
    let shared = hal.shared_instance();
    let instance = shared.raw_instance();
    let phd = hal.raw_physical_device();
    // SAFETY: `phd` is a valid physical device of `instance` (both from wgpu-hal's adapter).
    let props = unsafe { instance.enumerate_device_extension_properties(phd) }
        .map_err(|e| format!("vkEnumerateDeviceExtensionProperties: {e}"))?;
    let has = |name: &CStr| {
        props
            .iter()
            .any(|p| p.extension_name_as_c_str().is_ok_and(|n| n == name))
    };
    let khr = has(ash::khr::global_priority::NAME);
    let extension = if khr {
        ash::khr::global_priority::NAME
    } else if has(ash::ext::global_priority::NAME) {
        ash::ext::global_priority::NAME
    } else {
        return Ok(None);
    };
    let can_query = (khr || has(ash::ext::global_priority_query::NAME))
        && shared.instance_api_version() >= vk::API_VERSION_1_1;
    let family_levels = can_query.then(|| {
        // SAFETY: Vulkan 1.1 instance (checked above), so vkGetPhysicalDeviceQueueFamily-
        // Properties2 is loaded; each output element's pNext points at its own
        // `QueueFamilyGlobalPriorityPropertiesKHR`, which outlives the call, and the query
        // extension is supported by `phd` (core-1.1 rule for physical-device queries).
        unsafe {
            let n = instance.get_physical_device_queue_family_properties2_len(phd);
            let mut levels = vec![vk::QueueFamilyGlobalPriorityPropertiesKHR::default(); n];
            let mut out: Vec<vk::QueueFamilyProperties2> = levels
                .iter_mut()
                .map(|l| vk::QueueFamilyProperties2::default().push_next(l))
                .collect();
            instance.get_physical_device_queue_family_properties2(phd, &mut out);
            drop(out);
            levels.first().map_or_else(Vec::new, |l| {
                let k = (l.priority_count as usize).min(l.priorities.len());
                l.priorities[..k].to_vec()
            })
        }
    });
    Ok(Some(Support {
        extension,
        family_levels,
    }))
}

/// Whether the adapter exposes `VK_KHR_pipeline_executable_properties` (`Err`: not a Vulkan
/// adapter, or its extensions could not be read).
pub fn has_pipeline_statistics(adapter: &wgpu::Adapter) -> Result<bool, String> {
    // SAFETY: as in `support`: the guard only lends the handles for a property query.
    let Some(hal) = (unsafe { adapter.as_hal::<Vulkan>() }) else {
        return Err(format!(
            "not a Vulkan adapter ({:?})",
            adapter.get_info().backend
        ));
    };
    let instance = hal.shared_instance().raw_instance();
    // SAFETY: a valid physical device of `instance` (both from wgpu-hal's adapter).
    let props =
        unsafe { instance.enumerate_device_extension_properties(hal.raw_physical_device()) }
            .map_err(|e| format!("vkEnumerateDeviceExtensionProperties: {e}"))?;
    let name = ash::khr::pipeline_executable_properties::NAME;
    Ok(props
        .iter()
        .any(|p| p.extension_name_as_c_str().is_ok_and(|n| n == name)))
}

/// Opens a device on `adapter` through wgpu-hal (for `crate::pipeline_stats`, which creates
/// pipelines on it through ash), with `VK_KHR_pipeline_executable_properties` and its
/// `pipelineExecutableInfo` feature enabled where `capture` (the adapter exposes it:
/// `has_pipeline_statistics`); everything else as `request_device` would open it.
pub fn open_statistics(
    adapter: &wgpu::Adapter,
    desc: &wgpu::DeviceDescriptor<'_>,
    capture: bool,
) -> Result<(wgpu::Device, wgpu::Queue), String> {
    let extension = ash::khr::pipeline_executable_properties::NAME;
    let mut feature = vk::PhysicalDevicePipelineExecutablePropertiesFeaturesKHR::default()
        .pipeline_executable_info(true);
    let feature_ref = &mut feature;
    let callback: Box<CreateDeviceCallback<'_>> =
        Box::new(move |args: CreateDeviceCallbackArgs<'_, '_, '_>| {
            if !capture {
                return;
            }
            if !args.extensions.contains(&extension) {
                args.extensions.push(extension);
            }
            *args.create_info = args.create_info.push_next(feature_ref);
        });
    open_hal(
        adapter,
        desc,
        callback,
        "vkCreateDevice with pipeline statistics",
    )
}

/// Opens a device on `adapter` whose queue has global priority LOW, enabling `extension`.
/// `desc` must be what `request_device` would get (features and limits the adapter offers).
pub fn open_low(
    adapter: &wgpu::Adapter,
    desc: &wgpu::DeviceDescriptor<'_>,
    extension: &'static CStr,
) -> Result<(wgpu::Device, wgpu::Queue), String> {
    let mut low = vk::DeviceQueueGlobalPriorityCreateInfoKHR::default()
        .global_priority(vk::QueueGlobalPriorityKHR::LOW);
    let low_ref = &mut low;
    let callback: Box<CreateDeviceCallback<'_>> =
        Box::new(move |args: CreateDeviceCallbackArgs<'_, '_, '_>| {
            if !args.extensions.contains(&extension) {
                args.extensions.push(extension);
            }
            // wgpu-hal creates exactly one queue (family 0); its create info gets the chain.
            if let Some(q) = args.queue_create_infos.first_mut() {
                *q = q.push_next(low_ref);
            }
        });
    open_hal(
        adapter,
        desc,
        callback,
        "vkCreateDevice with global priority LOW",
    )
}

/// Opens a device through wgpu-hal with `callback` (which adds an extension the physical device
/// exposes and a pNext struct that outlives the call) and hands it to wgpu; `what` names the
/// attempt in an error.
fn open_hal<'a>(
    adapter: &wgpu::Adapter,
    desc: &wgpu::DeviceDescriptor<'_>,
    callback: Box<CreateDeviceCallback<'a>>,
    what: &str,
) -> Result<(wgpu::Device, wgpu::Queue), String> {
    let open = {
        // SAFETY: as in `support`, the guard only lends wgpu-hal's adapter for this call.
        let Some(hal) = (unsafe { adapter.as_hal::<Vulkan>() }) else {
            return Err("not a Vulkan adapter".into());
        };
        // SAFETY: the features and limits are the adapter's own (wgpu-hal's `open` contract);
        // the callbacks only add an extension the physical device exposes (checked by
        // `support` / `has_pipeline_statistics`) and a pNext struct that lives until this call
        // returns; they remove nothing.
        unsafe {
            hal.open_with_callback(
                desc.required_features,
                &desc.required_limits,
                &desc.memory_hints,
                Some(callback),
            )
        }
        .map_err(|e| format!("{what}: {e}"))?
    };
    // SAFETY: `open` was created from this adapter's hal handle just above, with exactly
    // `desc.required_features`.
    unsafe { adapter.create_device_from_hal(open, desc) }.map_err(|e| e.to_string())
}
