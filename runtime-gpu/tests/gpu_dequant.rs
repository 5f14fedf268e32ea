//! The M0E4 dequantization kernel against the quantizer's CPU decoder, bit for bit, on fresh
//! random data. Runs on whatever adapter exists (lavapipe in CI).

use tlite_quantizer::rng::Rng;
use tlite_quantizer::{M0E4Matrix, Method, QuantOptions};
use tlite_runtime_gpu::dequant;

#[test]
fn gpu_dequant_equals_cpu_bit_for_bit() {
    let Some(gpu) = tlite_runtime_gpu::device::gpu_for_test("gpu_dequant_equals_cpu_bit_for_bit")
    else {
        return;
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Rng::new(seed);
    // (rows, cols, group): aligned, a short last group (576 = 4.5 × 128), and a ragged word.
    for (rows, cols, g) in [(64, 256, 32), (30, 576, 128), (33, 200, 64), (5, 1004, 64)] {
        for method in [Method::MinMax, Method::Search] {
            let x = if rows % 2 == 0 {
                rng.gaussian_vec(rows * cols, 0.02)
            } else {
                rng.student_t_vec(rows * cols, 3, 0.02)
            };
            let m = M0E4Matrix::quantize(&x, rows, cols, &QuantOptions::new(g, method)).unwrap();
            let cpu = m.dequantize();
            let gpu_out = dequant::dequantize(&gpu, &m).unwrap();
            assert_eq!(gpu_out.len(), cpu.len());
            let mismatches: Vec<usize> = (0..cpu.len())
                .filter(|&i| cpu[i].to_bits() != gpu_out[i].to_bits())
                .collect();
            assert!(
                mismatches.is_empty(),
                "{rows}x{cols} g{g} {method} seed {seed}: {} of {} differ, first at {} ({} vs {})",
                mismatches.len(),
                cpu.len(),
                mismatches[0],
                cpu[mismatches[0]],
                gpu_out[mismatches[0]]
            );
        }
    }
}

#[test]
fn header_reports_limits_and_features() {
    let Some(gpu) = tlite_runtime_gpu::device::gpu_for_test("header_reports_limits_and_features")
    else {
        return;
    };
    let h = gpu.header();
    assert!(h.contains(&gpu.info.name), "{h}");
    assert!(h.contains("max storage binding"), "{h}");
    // wgpu's defaults are far below real adapters': the device must carry the adapter's limits.
    assert!(
        gpu.limits.max_storage_buffer_binding_size >= 128 << 20,
        "{h}"
    );
}

#[test]
fn dispatch_grid_stays_within_limit() {
    assert_eq!(dequant::dispatch_grid(10, 65535), (10, 1));
    assert_eq!(dequant::dispatch_grid(70000, 65535), (65535, 2));
    let (x, y) = dequant::dispatch_grid(1 << 24, 65535);
    assert!(x <= 65535 && u64::from(x) * u64::from(y) >= 1 << 24);
    assert_eq!(
        dequant::halves_to_words(&[0x3c00, 0x4000, 0x1234]),
        vec![0x4000_3c00, 0x1234]
    );
}
