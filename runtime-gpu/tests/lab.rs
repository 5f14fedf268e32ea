//! `tlite lab` on the test adapter (lavapipe under CI) with tiny sizes: every row is there, every
//! number finite and positive, the table names every shape; bad options are refused.

use tlite_runtime_gpu::device::gpu_for_test;
use tlite_runtime_gpu::lab::{self, FloorMode, GemvOptions};

fn positive(what: &str, v: f64) {
    assert!(v.is_finite() && v > 0.0, "{what}: {v}");
}

#[test]
fn floor_reports_every_mode_and_count() {
    let Some(gpu) = gpu_for_test("lab floor") else {
        return;
    };
    let counts = [1, 3, 8];
    let r = lab::floor(&gpu, &counts, 2).unwrap();
    assert_eq!(r.rows.len(), counts.len() * FloorMode::ALL.len());
    let stamps = gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY);
    for &n in &counts {
        for mode in FloorMode::ALL {
            let row = r
                .rows
                .iter()
                .find(|x| x.n == n && x.mode == mode)
                .unwrap_or_else(|| panic!("no row for {} at N = {n}", mode.name()));
            let what = format!("{} N={n}", mode.name());
            positive(&what, row.wall_us);
            positive(&what, row.encode_us);
            assert!(
                row.encode_us <= row.wall_us,
                "{what}: encoding is part of the wall time"
            );
            assert_eq!(
                row.gpu_us.is_some(),
                stamps,
                "{what}: GPU time iff timestamps"
            );
            if let Some(g) = row.gpu_us {
                positive(&what, g);
            }
        }
    }
    let table = r.to_string();
    for mode in FloorMode::ALL {
        assert!(
            table.contains(&format!("| {} | 8 |", mode.name())),
            "{table}"
        );
    }
    assert!(table.contains("at N = 8:"), "{table}");
    assert!(lab::floor(&gpu, &[0], 1).is_err(), "N = 0 must be refused");
    assert!(
        lab::floor(&gpu, &[1], 0).is_err(),
        "0 repetitions must be refused"
    );
}

#[test]
fn gemv_lab_times_both_entries_against_the_copy() {
    let Some(gpu) = gpu_for_test("lab gemv") else {
        return;
    };
    if !gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
        assert!(lab::gemv(&gpu, &GemvOptions::default()).is_err());
        return;
    }
    let opts = GemvOptions {
        // Wide and narrow; narrow only (k not a multiple of 32, ragged last group).
        shapes: vec![(64, 128), (40, 72)],
        group: 64,
        rotate_bytes: 64 << 10,
        copy_bytes: 256 << 10,
        reps: 2,
        seed: 3,
        splits: vec![1, 3],
        variants: Vec::new(),
        allocations: 1,
    };
    let r = lab::gemv(&gpu, &opts).unwrap();
    positive("copy µs", r.copy_us);
    positive("copy GB/s", r.copy_gbps());
    let entries: Vec<(usize, usize, &str, bool, usize)> = r
        .rows
        .iter()
        .map(|x| (x.n, x.k, x.entry.as_str(), x.planned, x.splits))
        .collect();
    assert_eq!(
        entries,
        [
            (64, 128, "gemv_m0e4_wide", false, 1),
            (64, 128, "gemv_m0e4_wide", false, 2),
            (64, 128, "gemv_m0e4", true, 1),
            (64, 128, "gemv_m0e4", false, 3),
            (40, 72, "gemv_m0e4", true, 1),
            (40, 72, "gemv_m0e4", false, 3),
        ]
    );
    for row in &r.rows {
        let what = format!("{}×{} {}", row.n, row.k, row.entry);
        // Packed words, f16 scales and biases (two per word).
        let groups = row.n * row.k.div_ceil(64);
        assert_eq!(
            row.weight_bytes as usize,
            row.n * row.k.div_ceil(8) * 4 + 2 * 4 * groups.div_ceil(2),
            "{what}"
        );
        assert!(
            row.copies as u64 * row.weight_bytes > opts.rotate_bytes,
            "{what}: the copies must exceed the rotation size"
        );
        positive(&what, row.serial_us);
        positive(&what, row.overlap_us);
        positive(&what, row.gbps(row.serial_us));
    }
    let table = r.to_string();
    for s in [
        "| 64×128 | gemv_m0e4_wide |",
        "| 64×128 | gemv_m0e4 (plan) |",
        "| 40×72 | gemv_m0e4 (plan) |",
        "| 64×128 | gemv_m0e4_wide in 2 dispatches |",
        "copy kernel:",
    ] {
        assert!(table.contains(s), "no `{s}` in\n{table}");
    }
    let bad = GemvOptions {
        shapes: vec![(0, 64)],
        ..opts
    };
    assert!(
        lab::gemv(&gpu, &bad).is_err(),
        "an empty shape must be refused"
    );
}

/// The candidate kernels (each code decode, with and without prefetch): each computes the GEMV (the lab checks rows against the CPU, within
/// 1e-4 of Σ|w·x|) over shapes with a ragged last round of
/// steps and a partial last workgroup of rows; a malformed variant is refused by the parser.
#[test]
fn gemv_lab_times_candidate_kernels_that_compute_the_product() {
    let Some(gpu) = gpu_for_test("lab gemv variants") else {
        return;
    };
    if !gpu.features.contains(wgpu::Features::TIMESTAMP_QUERY)
        || !gpu.features.contains(wgpu::Features::SUBGROUP)
    {
        let _ = std::io::Write::write_all(
            &mut std::io::stderr(),
            b"SKIPPED: the adapter has no timestamps or subgroups\n",
        );
        assert!(std::env::var_os("CI").is_none(), "lavapipe has both");
        return;
    }
    let names = ["32x4x3", "64x2x2mp", "128x1x1u", "32x3x8p", "32x2x3up"];
    let variants: Vec<_> = names
        .iter()
        .map(|s| lab::GemvVariant::parse(s).unwrap())
        .collect();
    let opts = GemvOptions {
        shapes: vec![(64, 128), (37, 224)],
        group: 32,
        rotate_bytes: 32 << 10,
        copy_bytes: 64 << 10,
        reps: 1,
        seed: 5,
        splits: vec![1],
        variants,
        allocations: 2,
    };
    let r = lab::gemv(&gpu, &opts).unwrap();
    // Every kernel on every shape once per allocation, and the spread table.
    for a in 0..2 {
        assert!(
            r.rows
                .iter()
                .any(|x| x.entry == "gemv_m0e4" && x.allocation == a),
            "allocation {a}"
        );
    }
    assert_eq!(
        r.rows.len(),
        2 * 2 * (2 + names.len()),
        "2 shapes × 2 allocations"
    );
    let table = r.to_string();
    assert!(table.contains("spread over 2 allocations"), "{table}");
    assert!(table.contains("| 37×224 | sg32x4x3 | 1 |"), "{table}");
    assert!(
        lab::gemv(
            &gpu,
            &GemvOptions {
                allocations: 0,
                ..opts.clone()
            }
        )
        .is_err(),
        "0 allocations must be refused"
    );
    for (n, k) in [(64, 128), (37, 224)] {
        for v in &names {
            let name = format!("sg{v}");
            let row = r
                .rows
                .iter()
                .find(|x| x.n == n && x.k == k && x.entry == name)
                .unwrap_or_else(|| panic!("no row {n}×{k} {name}"));
            positive(&name, row.serial_us);
            assert!(row.rel_err.is_finite(), "{name}");
        }
    }
    for bad in [
        "",
        "128x4",
        "100x4x2",
        "128x0x2",
        "128x4x9",
        "128x4x2h",
        "128x4x2mu",
        "128x4x2pp",
        "128x4x2pm",
        "128x4mx2",
        "axbxc",
        "128x4x2x1",
    ] {
        assert!(
            lab::GemvVariant::parse(bad).is_err(),
            "`{bad}` must be refused"
        );
    }
}

/// `tlite lab stats`: every pipeline the plan can use is created through the tool's own path
/// (naga's SPIR-V, descriptor layouts reflected from the module, ash); where the driver reports
/// statistics every pipeline lists executables with statistics, elsewhere the report says the
/// extension is missing and lists none. `TLITE_REQUIRE_PIPELINE_STATS` makes a missing
/// extension a failure (for GPUs whose drivers have it: NVIDIA's).
#[test]
fn pipeline_statistics_cover_every_kernel_entry_point() {
    use tlite_runtime_gpu::pipeline_stats::{self, kernels_of};
    let Some(gpu) = gpu_for_test("lab stats") else {
        return;
    };
    let all = kernels_of(&gpu);
    assert!(all.len() >= 25, "only {} entry points", all.len());
    assert_eq!(
        all.iter().any(|(k, _)| k.needs_cooperative_matrices()),
        gpu.coop_gemm()
    );
    let r = pipeline_stats::pipeline_statistics(&gpu, &all).unwrap();
    let names: Vec<String> = all
        .iter()
        .map(|(k, e)| format!("{}::{e}", k.name()))
        .collect();
    let got: Vec<&str> = r.pipelines.iter().map(|p| p.pipeline.as_str()).collect();
    assert_eq!(got, names);
    match &r.missing {
        None => {
            for p in &r.pipelines {
                assert!(!p.executables.is_empty(), "{}: no executable", p.pipeline);
                for e in &p.executables {
                    assert!(
                        !e.statistics.is_empty(),
                        "{} {}: no statistic",
                        p.pipeline,
                        e.name
                    );
                    assert!(
                        e.statistics
                            .iter()
                            .all(|s| !s.name.is_empty() && !s.value.is_empty())
                    );
                }
            }
            eprintln!(
                "[lab stats] {}: {:?}",
                r.pipelines[0].pipeline, r.pipelines[0].executables
            );
        }
        Some(why) => {
            assert!(
                std::env::var_os("TLITE_REQUIRE_PIPELINE_STATS").is_none(),
                "statistics required: {why}"
            );
            assert!(
                why.contains("VK_KHR_pipeline_executable_properties"),
                "{why}"
            );
            assert!(r.pipelines.iter().all(|p| p.executables.is_empty()));
        }
    }
}
