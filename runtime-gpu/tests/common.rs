//! The one GPU test harness: opens the adapter, prints it outside the test runner's capture,
//! and when no adapter exists fails under CI (which always has lavapipe) or skips loudly.

use std::io::Write as _;

use tlite_runtime_gpu::{DeviceOptions, Gpu};

pub fn gpu_or_skip(test: &str) -> Option<Gpu> {
    let adapter = std::env::var("TLITE_ADAPTER").ok();
    match Gpu::new(&DeviceOptions { adapter }) {
        Ok(gpu) => {
            let _ = writeln!(std::io::stderr(), "[{test}] {}", gpu.header());
            Some(gpu)
        }
        Err(e) => {
            if std::env::var_os("CI").is_some() || std::env::var_os("TLITE_REQUIRE_GPU").is_some() {
                panic!("[{test}] no GPU adapter under CI: {e}");
            }
            let _ = writeln!(
                std::io::stderr(),
                "[{test}] SKIPPED: {e} (set CI or TLITE_REQUIRE_GPU to make this a failure)"
            );
            None
        }
    }
}
