//! `tlite devices`

use anyhow::ensure;
use tlite_quantizer::rng::Rng;
use tlite_quantizer::{M0E4Matrix, Method, QuantOptions};
use tlite_runtime_gpu::{DeviceOptions, Gpu, dequant};

#[derive(clap::Args)]
pub struct Args {
    /// Pick the adapter whose name contains this (case-insensitive).
    #[arg(long)]
    adapter: Option<String>,
    /// Run the M0E4 dequantization kernel on random weights and compare with the CPU decoder.
    #[arg(long)]
    check: bool,
}

pub fn run(a: Args) -> anyhow::Result<()> {
    for info in Gpu::adapters() {
        println!(
            "found: {} ({:?}, {:?})",
            info.name, info.backend, info.device_type
        );
    }
    let gpu = Gpu::new(&DeviceOptions {
        adapter: a.adapter,
        ..Default::default()
    })?;
    println!("{}", gpu.header());
    if a.check {
        let (rows, cols) = (256, 1024);
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64;
        let x = Rng::new(seed).gaussian_vec(rows * cols, 0.02);
        let m = M0E4Matrix::quantize(&x, rows, cols, &QuantOptions::new(64, Method::Search))?;
        let cpu = m.dequantize();
        let gpu_out = dequant::dequantize(&gpu, &m)?;
        let differ = cpu
            .iter()
            .zip(&gpu_out)
            .filter(|(a, b)| a.to_bits() != b.to_bits())
            .count();
        ensure!(
            differ == 0,
            "GPU dequantization differs from the CPU decoder in {differ} of {} weights",
            cpu.len()
        );
        println!(
            "check: M0E4 dequantization of {rows}x{cols} (g=64) on the GPU equals the CPU decoder bit for bit"
        );
    }
    Ok(())
}
