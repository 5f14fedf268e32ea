//! `cargo bench -p tlite-quantizer`: the error of M0E4 and the baselines on 2,048 groups of
//! Gaussian (σ = 0.02) and Student-t (ν = 3) weights at g = 32/64/128, then quantization
//! throughput in millions of weights per second (median of repeats).

use std::time::Instant;

use tlite_quantizer::rng::Rng;
use tlite_quantizer::{M0E4Matrix, Method, QuantOptions, Scheme, SchemeKind, fake_quantize};

const GROUPS: usize = 2048;

fn main() {
    // `cargo bench` passes `--bench`; accept and ignore harness flags.
    let mut rng = Rng::new(20260411);
    println!("# MSE on {GROUPS} groups (rows of 8 groups); lower is better");
    println!(
        "{:<14} {:>5} {:<14} {:>6} {:>12} {:>9} {:>12}",
        "data", "g", "scheme", "bpw", "mse", "sqnr_dB", "vs int4-zp"
    );
    for (dist, sample) in [
        (
            "gaussian",
            Box::new(|r: &mut Rng, n| r.gaussian_vec(n, 0.02))
                as Box<dyn Fn(&mut Rng, usize) -> Vec<f32>>,
        ),
        (
            "student-t3",
            Box::new(|r: &mut Rng, n| r.student_t_vec(n, 3, 0.02)),
        ),
    ] {
        for g in [32, 64, 128] {
            let (rows, cols) = (GROUPS / 8, 8 * g);
            let x = sample(&mut rng, rows * cols);
            let signal: f64 = x.iter().map(|v| f64::from(*v).powi(2)).sum();
            let mse_of = |k: SchemeKind| {
                let d = fake_quantize(&k, &x, rows, cols, g, None).expect("quantize");
                x.iter()
                    .zip(&d)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>()
                    / x.len() as f64
            };
            let int4 = mse_of(SchemeKind::Int4ZeroPoint);
            for k in SchemeKind::REPORT {
                let mse = mse_of(k);
                println!(
                    "{:<14} {:>5} {:<14} {:>6.3} {:>12.4e} {:>9.2} {:>11.1}%",
                    dist,
                    g,
                    k.name(),
                    k.bits_per_weight(g),
                    mse,
                    10.0 * (signal / (mse * x.len() as f64)).log10(),
                    100.0 * (mse / int4 - 1.0)
                );
            }
        }
    }

    let (rows, cols) = (2048, 4096);
    let x = rng.gaussian_vec(rows * cols, 0.02);
    let threads = rayon::current_num_threads();
    println!(
        "\n# M0E4 quantization throughput, {rows}x{cols} Gaussian, {threads} threads, median of 5"
    );
    println!(
        "{:<8} {:>5} {:>10} {:>12}",
        "method", "g", "ms", "Mweights/s"
    );
    for method in [Method::MinMax, Method::Search] {
        for g in [32, 64, 128] {
            let opts = QuantOptions::new(g, method);
            let mut times: Vec<f64> = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    let m = M0E4Matrix::quantize(&x, rows, cols, &opts).expect("quantize");
                    std::hint::black_box(&m);
                    t.elapsed().as_secs_f64()
                })
                .collect();
            times.sort_by(f64::total_cmp);
            let med = times[2];
            println!(
                "{:<8} {:>5} {:>10.1} {:>12.1}",
                method.to_string(),
                g,
                med * 1e3,
                (rows * cols) as f64 / med / 1e6
            );
        }
    }
}
