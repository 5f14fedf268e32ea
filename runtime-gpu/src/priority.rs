//! Execution priority (DESIGN technique 2): how much the model's GPU work yields to other GPU
//! users such as a UI.
//!
//! - [`Priority::Normal`]: the device as wgpu creates it; each step is one submission.
//! - [`Priority::Low`]: the device's queue is created with Vulkan global priority LOW
//!   (`VK_KHR_global_priority`, or `VK_EXT_global_priority`), so the driver's scheduler
//!   prefers other contexts' work. Where the adapter does not expose the extension (or is not
//!   Vulkan, or the driver refuses), this falls back to cooperative mode with
//!   [`DEFAULT_SUBMIT_EVERY`], and the header says so.
//! - [`Priority::Cooperative`]`(n)`: each step is split into submissions of at most `n`
//!   dispatches, waiting for each to finish before encoding the next, so work another context
//!   submits meanwhile runs between them instead of behind the whole step.
//!
//! The choice is made when the device is opened ([`crate::Gpu::with_priority`]) and recorded
//! in [`crate::Gpu::priority`]; `GpuModel::step` reads `submit_every` from there.

use std::ffi::CStr;
use std::fmt;
use std::num::NonZeroUsize;

#[cfg(not(any(
    target_os = "macos",
    target_os = "ios",
    windows,
    target_arch = "wasm32"
)))]
pub(crate) mod vulkan;

/// Dispatches per submission of the cooperative mode when none is given (and of `Low`'s
/// fallback): a few layers of a decode step, ~10 submissions per token for a 1B Llama.
pub const DEFAULT_SUBMIT_EVERY: NonZeroUsize = NonZeroUsize::new(16).expect("16 is non-zero");

/// The requested execution priority.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Priority {
    #[default]
    Normal,
    Low,
    Cooperative(NonZeroUsize),
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Priority::Normal => f.write_str("normal"),
            Priority::Low => f.write_str("low"),
            Priority::Cooperative(n) => write!(f, "cooperative/{n}"),
        }
    }
}

/// What the device actually got.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PriorityState {
    /// What was asked for (`normal`, `low`, `cooperative/N`).
    pub requested: String,
    /// The extension that set the queue's global priority to LOW, when it did.
    pub global_low: Option<String>,
    /// Dispatches per submission within a step; `None`: the whole step is one submission.
    pub submit_every: Option<usize>,
    /// What the adapter offers for global priority (only looked up when `low` is requested).
    pub support: Option<String>,
    /// Why `low` was not granted, when it was not (the cooperative mode runs instead).
    pub fallback: Option<String>,
}

impl PriorityState {
    /// The header's `priority …` field.
    pub fn describe(&self) -> String {
        let mut s = match (&self.global_low, self.submit_every) {
            (Some(ext), _) => format!("priority low (global queue priority via {ext})"),
            (None, Some(n)) => format!("priority cooperative (submit every {n} dispatches)"),
            (None, None) => "priority normal".to_string(),
        };
        if let Some(why) = &self.fallback {
            s += &format!(" [low requested, FELL BACK: {why}]");
        }
        if let Some(sup) = &self.support {
            s += &format!(" [adapter: {sup}]");
        }
        s
    }
}

/// How the device will be opened, decided from the request and what the adapter offers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// `request_device` as usual, ending in this state.
    Plain(PriorityState),
    /// Through wgpu-hal with global priority LOW, enabling `extension`; ends in `granted`, or
    /// falls back to the cooperative mode if the driver refuses.
    GlobalLow {
        extension: &'static CStr,
        granted: PriorityState,
    },
}

/// What an adapter offers for global queue priority, as [`plan`] needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GlobalSupport {
    /// The extension is exposed and LOW is (or may be) accepted; `detail` is for the header.
    Available {
        extension: &'static CStr,
        detail: String,
    },
    /// Not available, and why (no extension, LOW not offered, not Vulkan).
    Unavailable(String),
}

/// The state of a `low` request that could not be granted: cooperative mode instead.
fn fell_back(why: String, support: Option<String>) -> PriorityState {
    PriorityState {
        requested: Priority::Low.to_string(),
        submit_every: Some(DEFAULT_SUBMIT_EVERY.get()),
        fallback: Some(why),
        support,
        ..Default::default()
    }
}

/// Decides how to open the device (pure, so the fallback is testable on any adapter).
pub fn plan(requested: Priority, support: &GlobalSupport) -> Plan {
    let base = PriorityState {
        requested: requested.to_string(),
        ..Default::default()
    };
    match (requested, support) {
        (Priority::Normal, _) => Plan::Plain(base),
        (Priority::Cooperative(n), _) => Plan::Plain(PriorityState {
            submit_every: Some(n.get()),
            ..base
        }),
        (Priority::Low, GlobalSupport::Available { extension, detail }) => Plan::GlobalLow {
            extension,
            granted: PriorityState {
                global_low: Some(extension.to_string_lossy().into_owned()),
                support: Some(detail.clone()),
                ..base
            },
        },
        (Priority::Low, GlobalSupport::Unavailable(why)) => {
            Plan::Plain(fell_back(why.clone(), None))
        }
    }
}

/// Looks up the adapter's global-priority support (Vulkan only).
pub fn global_support(adapter: &wgpu::Adapter) -> GlobalSupport {
    #[cfg(not(any(
        target_os = "macos",
        target_os = "ios",
        windows,
        target_arch = "wasm32"
    )))]
    {
        match vulkan::support(adapter) {
            Err(why) => GlobalSupport::Unavailable(why),
            Ok(None) => GlobalSupport::Unavailable(
                "the adapter exposes neither VK_KHR_global_priority nor VK_EXT_global_priority"
                    .into(),
            ),
            Ok(Some(s)) if !s.allows_low() => {
                GlobalSupport::Unavailable(format!("LOW is not offered ({})", s.describe()))
            }
            Ok(Some(s)) => GlobalSupport::Available {
                extension: s.extension,
                detail: s.describe(),
            },
        }
    }
    #[cfg(any(
        target_os = "macos",
        target_os = "ios",
        windows,
        target_arch = "wasm32"
    ))]
    {
        GlobalSupport::Unavailable(format!(
            "global queue priority is only wired for Vulkan on this build ({:?})",
            adapter.get_info().backend
        ))
    }
}

/// Opens the device as `plan` says; returns the state it ended in.
pub(crate) async fn open(
    adapter: &wgpu::Adapter,
    desc: &wgpu::DeviceDescriptor<'_>,
    plan: Plan,
) -> Result<(wgpu::Device, wgpu::Queue, PriorityState), wgpu::RequestDeviceError> {
    let state = match plan {
        Plan::Plain(state) => state,
        #[cfg(not(any(
            target_os = "macos",
            target_os = "ios",
            windows,
            target_arch = "wasm32"
        )))]
        Plan::GlobalLow { extension, granted } => {
            match vulkan::open_low(adapter, desc, extension) {
                Ok((device, queue)) => return Ok((device, queue, granted)),
                Err(why) => fell_back(why, granted.support),
            }
        }
        #[cfg(any(
            target_os = "macos",
            target_os = "ios",
            windows,
            target_arch = "wasm32"
        ))]
        Plan::GlobalLow { granted, .. } => fell_back(
            "global queue priority is only wired for Vulkan on this build".into(),
            granted.support,
        ),
    };
    let (device, queue) = adapter.request_device(desc).await?;
    Ok((device, queue, state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_follow_the_request_and_the_adapter() {
        let none = GlobalSupport::Unavailable("no extension".into());
        let khr = GlobalSupport::Available {
            extension: c"VK_KHR_global_priority",
            detail: "d".into(),
        };
        let Plan::Plain(s) = plan(Priority::Normal, &khr) else {
            panic!("normal is plain")
        };
        assert_eq!(
            (s.submit_every, s.global_low, s.fallback),
            (None, None, None)
        );
        let n = NonZeroUsize::new(5).unwrap();
        let Plan::Plain(s) = plan(Priority::Cooperative(n), &none) else {
            panic!("cooperative is plain")
        };
        assert_eq!(s.submit_every, Some(5));
        assert_eq!(
            s.describe(),
            "priority cooperative (submit every 5 dispatches)"
        );
        let Plan::GlobalLow { extension, granted } = plan(Priority::Low, &khr) else {
            panic!("low with the extension goes through wgpu-hal")
        };
        assert_eq!(extension, c"VK_KHR_global_priority");
        assert_eq!(granted.submit_every, None);
        assert!(
            granted
                .describe()
                .starts_with("priority low (global queue priority via VK_KHR")
        );
        let Plan::Plain(s) = plan(Priority::Low, &none) else {
            panic!("low without the extension falls back")
        };
        assert_eq!(s.submit_every, Some(DEFAULT_SUBMIT_EVERY.get()));
        assert_eq!(s.requested, "low");
        assert!(s.describe().contains("FELL BACK: no extension"));
    }
}
