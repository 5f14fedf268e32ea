//! The deployable-model reader: a model.m0e4.safetensors with its manifest, verified, every
//! tensor decoded, and the GPU execution plan built from it (on the CPU: no device needed).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlite_fuzz::scratch;
use tlite_model::deploy::{DeployedModel, MODEL_FILE};

fuzz_target!(|data: &[u8]| {
    let dir = scratch("deployable");
    std::fs::write(dir.join(MODEL_FILE), data).unwrap();
    if let Ok(m) = DeployedModel::open(&dir) {
        for t in m.tensors() {
            let _ = m.tensor_f32(&t.name);
        }
        for max_seq in [1, 64] {
            let _ = tlite_runtime_gpu::graph::build(&m.manifest, max_seq, 8);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
});
