//! The execution plan of a set of synthetic models — every family, groups 8 to 128, forced
//! weight chunking, dense (kept) tensors, odd and ragged widths, a hidden size above the fused
//! norm's limit, with and without the storage buffers the fused GLU GEMV needs — built and
//! listed (`Graph::dump`). Set `TLITE_PLAN_DUMP=FILE` to write the listing, to compare plans
//! before and after a change to the graph builder (`diff`).

use std::collections::BTreeSet;
use std::path::Path;

use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{ConvertOptions, convert};
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_model::arch::Family;
use tlite_model::config::ModelConfig;
use tlite_model::deploy::{DeployedModel, KeepRule};
use tlite_quantizer::Method;
use tlite_runtime_gpu::graph::{self, OnePass};
use tlite_runtime_gpu::kernels::Kernel;
use tlite_runtime_gpu::kernels::params::binding::matmul_coop_h::X_H;
use tlite_runtime_gpu::kernels::params::{
    ATTENTION_COOP_MAX_HD, ATTENTION_DECODE_KEYS, ATTENTION_DECODE_NARROW_KEYS,
    GEMV_ROPE_STORAGE_BUFFERS,
};
use tlite_runtime_gpu::shape::Syms;

const FAMILIES: [Family; 6] = [
    Family::Llama,
    Family::Qwen2,
    Family::Gemma,
    Family::Gemma2,
    Family::Gemma3,
    Family::ChatGlm,
];

/// (name, spec, group, binding limit, keep rules)
type Variant = (String, SynthSpec, usize, Option<u64>, Vec<&'static str>);

fn variants() -> Vec<Variant> {
    let mut v = Vec::new();
    for f in FAMILIES {
        let spec = SynthSpec::tiny(f);
        for g in [32, 64] {
            v.push((format!("{} g{g}", f.name()), spec.clone(), g, None, vec![]));
        }
        v.push((
            format!("{} g32 chunked", f.name()),
            spec.clone(),
            32,
            Some(1024),
            vec![],
        ));
        v.push((format!("{} g16", f.name()), spec.clone(), 16, None, vec![]));
        v.push((
            format!("{} g32 dense", f.name()),
            spec.clone(),
            32,
            None,
            vec![".*=f32"],
        ));
        v.push((
            format!("{} g32 mlp f16", f.name()),
            spec.clone(),
            32,
            None,
            vec!["mlp=f16"],
        ));
    }
    let odd = |hidden, intermediate, layers| SynthSpec {
        hidden,
        intermediate,
        layers,
        ..SynthSpec::tiny(Family::Llama)
    };
    v.push((
        "llama h72 g32 (ragged)".into(),
        odd(72, 100, 2),
        32,
        None,
        vec![],
    ));
    v.push(("llama h72 g8".into(), odd(72, 100, 2), 8, None, vec![]));
    v.push((
        "llama h192 g128".into(),
        odd(192, 320, 2),
        128,
        None,
        vec![],
    ));
    // Heads of a multiple of 4 but not of 16: prefill attention in query blocks, never on
    // cooperative matrices.
    let hd20 = SynthSpec {
        head_dim: 20,
        ..SynthSpec::tiny(Family::Llama)
    };
    v.push(("llama hd20 g32".into(), hd20, 32, None, vec![]));
    v.push((
        "llama h4160 g64 (k > 4096)".into(),
        odd(4160, 64, 1),
        64,
        None,
        vec![],
    ));
    v
}

fn convert_variant(
    dir: &Path,
    spec: &SynthSpec,
    group: usize,
    limit: Option<u64>,
    keep: &[&str],
) -> DeployedModel {
    write_checkpoint(spec, &dir.join("ck")).unwrap();
    let ck = Checkpoint::open_dir(&dir.join("ck")).unwrap();
    let mut opts = ConvertOptions {
        group,
        method: Method::MinMax,
        keep: keep
            .iter()
            .map(|k| k.parse::<KeepRule>().unwrap())
            .collect(),
        overwrite: true,
        ..Default::default()
    };
    if let Some(l) = limit {
        opts.binding_limit = l;
    }
    convert(
        &ck,
        &dir.join("m"),
        &opts,
        &mut tlite_converter::events::ignore,
    )
    .unwrap();
    DeployedModel::open(&dir.join("m")).unwrap()
}

#[test]
fn plans_of_the_synthetic_models() {
    let points = [
        (1, 0, 1),
        (1, 5, 1),
        (1, 999, 1),
        (7, 0, 1),
        (7, 13, 2),
        (64, 100, 64),
        (200, 37, 3),
    ]
    .map(|(seq, past, out)| Syms { seq, past, out });
    let root = tempfile_dir();
    let mut out = String::new();
    // Plans with prefill attention on cooperative matrices, and with the f32 kernel beside them.
    let (mut coop_attention, mut f32_attention) = (0, 0);
    for (i, (name, spec, g, limit, keep)) in variants().into_iter().enumerate() {
        let dir = root.join(format!("v{i}"));
        let m = convert_variant(&dir, &spec, g, limit, &keep);
        let mut m0e4_gemms = 0;
        // The small device (8 storage buffers) also lacks the one-pass decode's workgroups.
        for (max_storage_buffers, coop_gemm) in [(16, false), (8, false), (16, true)] {
            let one_pass_decode = match max_storage_buffers > 8 {
                true => OnePass::Both,
                false => OnePass::None,
            };
            let limits = graph::PlanLimits {
                max_storage_buffers,
                coop_gemm,
                max_binding: 128 << 20,
                kv_f16: false,
                one_pass_decode,
            };
            let plan = graph::build(&m.manifest, 1000, limits).unwrap();
            // Cooperative matrices change which kernels run M0E4 prefill GEMMs and prefill
            // attention (checked below), nothing else.
            let count = |e: &str| plan.ops.iter().filter(|o| o.entry == e).count();
            // A projection on the 128 × 128 tiles has a twin on the 128 × 64 ones for steps
            // below COOP_WIDE_PREFILL tokens (checked below): one GEMM of the projection.
            let mid = |o: &graph::Op| o.when == graph::When::PrefillCoopMid;
            let is_coop = |o: &graph::Op| o.entry == "gemm_m0e4_coop";
            let coop = (plan.ops.iter()).filter(|o| is_coop(o) && !mid(o)).count();
            let f32_gemms = count("gemm_m0e4");
            match coop_gemm {
                false => {
                    assert_eq!(coop, 0, "{name}: no cooperative matrices asked for");
                    m0e4_gemms = f32_gemms;
                }
                true => {
                    assert_eq!(coop + f32_gemms, m0e4_gemms, "{name}: the same GEMMs");
                    assert!(m0e4_gemms == 0 || coop > 0, "{name}: GEMMs on matrix cores");
                    // Every coop GEMM but the LM head's has a short-prefill twin, which takes
                    // the steps of 2 to COOP_SHORT_PREFILL tokens from it; the LM head (its
                    // rows are the step's outputs) keeps the GEMVs (so would a chunk of more
                    // rows than 16-row workgroups cover: none here, decision.rs tests it).
                    let head = |o: &graph::Op| o.label.starts_with("lm_head");
                    for o in plan.ops.iter().filter(|o| is_coop(o) && !mid(o)) {
                        let twin = o.label.replace(" gemm", " gemm_few");
                        let few = plan.ops.iter().find(|f| f.label == twin);
                        match head(o) {
                            true => assert!(few.is_none(), "{name}: {}", o.label),
                            false => {
                                let few = few.unwrap_or_else(|| panic!("{name}: {twin}"));
                                assert_eq!(few.entry, "gemm_m0e4_coop_few");
                                // In f32 or f16 as the op before writes the input
                                // (check_f16_inputs).
                                let kinds = [Kernel::MatmulCoopFew, Kernel::MatmulCoopFewH];
                                assert!(kinds.contains(&few.kernel), "{name}: {}", o.label);
                                assert_eq!(few.when, graph::When::PrefillCoopShort);
                                let twin = plan.ops.iter().find(|m| m.label == o.label && mid(m));
                                match (o.kernel, o.when) {
                                    (Kernel::MatmulCoopSmall, graph::When::PrefillCoopLarge) => {
                                        assert!(twin.is_none(), "{name}: {}", o.label)
                                    }
                                    // The 128 × 128 tiles (f32 or f16 input): the shorter steps
                                    // on the 128 × 64 ones (f32).
                                    (
                                        Kernel::MatmulCoop | Kernel::MatmulCoopH,
                                        graph::When::PrefillCoopWide,
                                    ) => {
                                        let twin = twin.unwrap_or_else(|| panic!("{name}"));
                                        assert_eq!(twin.kernel, Kernel::MatmulCoopSmall);
                                    }
                                    other => panic!("{name}: {}: {other:?}", o.label),
                                }
                            }
                        }
                    }
                    // The 4160-wide variant's projections of 4160 rows take both tiles.
                    let wide = |o: &graph::Op| {
                        o.kernel == Kernel::MatmulCoop || o.kernel == Kernel::MatmulCoopH
                    };
                    assert_eq!(plan.ops.iter().any(wide), name.contains("h4160"), "{name}");
                    let gemvs = plan.ops.iter().filter(|o| {
                        ["gemv_few", "gemv_small"]
                            .iter()
                            .any(|t| o.label.ends_with(t))
                    });
                    for o in gemvs {
                        let coop_twin = o.label.rsplit_once(' ').map(|(l, _)| format!("{l} gemm"));
                        let on_coop = plan
                            .ops
                            .iter()
                            .any(|g| Some(&g.label) == coop_twin.as_ref() && is_coop(g));
                        assert!(
                            !on_coop || head(o),
                            "{name}: {} beside a coop GEMM",
                            o.label
                        );
                    }
                }
            }
            // Prefill attention in query blocks: on cooperative matrices where the GEMMs are and
            // the heads are of whole 16 × 16 tiles (at most ATTENTION_COOP_MAX_HD wide).
            let hd = m.manifest.config.head_dim;
            let on_coop = coop_gemm && hd.is_multiple_of(16) && hd <= ATTENTION_COOP_MAX_HD;
            for o in plan
                .ops
                .iter()
                .filter(|o| o.label.ends_with(".attention_prefill"))
            {
                let want = match on_coop {
                    true => Kernel::AttentionCoop,
                    false => Kernel::Attention,
                };
                assert_eq!(o.kernel, want, "{name}: {}", o.label);
                let entries: &[&str] = match on_coop {
                    true => &["prefill", "prefill_h"],
                    false => &["prefill"],
                };
                assert!(entries.contains(&o.entry), "{name}: {}", o.label);
                match (coop_gemm, on_coop) {
                    (true, true) => coop_attention += 1,
                    (true, false) => f32_attention += 1,
                    _ => {}
                }
            }
            // RoPE and the KV write of a joined q/k/v projection run in its decode GEMV where the
            // device has the storage buffers; rope_kv then runs for prefill only. Layers with
            // QK-norms (Gemma 3) keep three projections and rope_kv.
            let fused = count("gemv_m0e4_norm_rope");
            let rope_prefill = (plan.ops.iter())
                .filter(|o| o.label.ends_with(".rope_kv") && o.when == graph::When::Prefill)
                .count();
            assert_eq!(
                fused, rope_prefill,
                "{name}: rope_kv for prefill only where fused"
            );
            let expect_fused = max_storage_buffers >= GEMV_ROPE_STORAGE_BUFFERS
                && ["llama g32", "qwen2 g32", "chatglm g32"].contains(&name.as_str());
            match expect_fused {
                true => assert_eq!(fused, spec.layers, "{name}: every layer's q/k/v"),
                false
                    if max_storage_buffers < GEMV_ROPE_STORAGE_BUFFERS
                        || name.contains("gemma3") =>
                {
                    assert_eq!(fused, 0, "{name}")
                }
                false => {}
            }
            check_one_pass(&name, &plan, &m.manifest.config, one_pass_decode);
            let halves = check_f16_inputs(&name, &plan);
            // On cooperative matrices the norms, the gated activation and (heads of whole
            // tiles) the attention write the inputs of the coop projections in f16 for the
            // 16 × 16 tiles and (the 4160-wide variant) the 128 × 128 ones.
            let f16_gemms = count_kernel(&plan, Kernel::MatmulCoopH)
                + count_kernel(&plan, Kernel::MatmulCoopFewH);
            assert_eq!(halves > 0, f16_gemms > 0, "{name}: f16 inputs");
            assert_eq!(f16_gemms > 0, coop_gemm && coop > 0, "{name}");
            let suffix = if coop_gemm { " | coop_gemm" } else { "" };
            out.push_str(&format!(
                "==== {name} | max_storage_buffers {max_storage_buffers}{suffix}\n"
            ));
            out.push_str(&plan.dump(&points));
        }
        // A device with 256-thread but not 1024-thread workgroups: `decode`, then the split.
        let narrow = graph::PlanLimits {
            max_storage_buffers: 16,
            coop_gemm: false,
            max_binding: 128 << 20,
            kv_f16: false,
            one_pass_decode: OnePass::Narrow,
        };
        let plan = graph::build(&m.manifest, 1000, narrow).unwrap();
        check_one_pass(&name, &plan, &m.manifest.config, OnePass::Narrow);
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&root);
    assert!(
        coop_attention > 0 && f32_attention > 0,
        "coop devices: {coop_attention} prefill attentions on cooperative matrices, \
         {f32_attention} on the f32 kernel (heads not of whole tiles); both kinds must be covered"
    );
    if let Some(path) = std::env::var_os("TLITE_PLAN_DUMP") {
        std::fs::write(&path, &out).unwrap();
    }
}

fn count_kernel(plan: &graph::Graph, k: Kernel) -> usize {
    plan.ops.iter().filter(|o| o.kernel == k).count()
}

/// The activations written in f16 (`rmsnorm_h`, `glu_h`, `attention_coop::prefill_h`): in a
/// step of each length, an activation one op writes in f16 is written only so and read only by
/// the coop GEMMs built for f16 input, at `x_h`, which read nothing else there; only steps of
/// `COOP_WIDE_PREFILL` tokens or more have them. Returns how many activations are ever f16.
fn check_f16_inputs(name: &str, plan: &graph::Graph) -> usize {
    let f16_writer = |o: &graph::Op| {
        matches!(o.entry, "rmsnorm_h" | "glu_h")
            || (o.kernel == Kernel::AttentionCoop && o.entry == "prefill_h")
    };
    // Reads activation `a` as f16: bound at x_h.
    let f16_reader = |o: &graph::Op, a: usize| {
        let at_x_h = o.bindings.contains(&(X_H, graph::BufRef::Act(a)));
        if at_x_h {
            let kernels = [Kernel::MatmulCoopH, Kernel::MatmulCoopFewH];
            assert!(kernels.contains(&o.kernel), "{name}: {}", o.label);
        }
        at_x_h
    };
    let mut ever = BTreeSet::new();
    let wide = graph::COOP_WIDE_PREFILL;
    for seq in [
        1,
        2,
        graph::COOP_SHORT_PREFILL,
        graph::COOP_SHORT_PREFILL + 1,
        100,
        wide - 1,
        wide,
        3 * wide,
    ] {
        let ops: Vec<&graph::Op> = plan.ops.iter().filter(|o| o.when.runs(seq)).collect();
        for a in 0..plan.acts.len() {
            let writers: Vec<&&graph::Op> = ops.iter().filter(|o| o.writes.contains(&a)).collect();
            let half = writers.iter().any(|o| f16_writer(o));
            let label = &plan.acts[a].0;
            if half {
                assert!(seq > 1, "{name}: {label} in f16 at one token");
                ever.insert(a);
                for o in &writers {
                    assert!(
                        f16_writer(o),
                        "{name}: {label}: {} writes f32 at {seq}",
                        o.label
                    );
                }
            }
            let readers = ops.iter().filter(|o| o.reads.contains(&a));
            for o in readers {
                let f16 = f16_reader(o, a);
                assert_eq!(f16, half, "{name}: {label}: {} at {seq} tokens", o.label);
            }
        }
    }
    ever.len()
}

/// Decode attention: `decode` over at most ATTENTION_DECODE_NARROW_KEYS keys, `decode_wide` over
/// at most ATTENTION_DECODE_KEYS, `partial` (and `combine`) past the entries the device runs
/// (`one_pass`); exactly one of the three runs at every position, windows included.
fn check_one_pass(name: &str, plan: &graph::Graph, cfg: &ModelConfig, one_pass: OnePass) {
    let entries =
        |e: &str| -> Vec<&graph::Op> { plan.ops.iter().filter(|o| o.entry == e).collect() };
    let (narrow, wide) = (entries("decode"), entries("decode_wide"));
    let layers = cfg.num_layers;
    let (has_narrow, has_wide) = match one_pass {
        OnePass::None => (false, false),
        OnePass::Narrow => (true, false),
        OnePass::Both => (true, true),
    };
    assert_eq!(
        narrow.len(),
        usize::from(has_narrow) * layers,
        "{name}: `decode`"
    );
    assert_eq!(
        wide.len(),
        usize::from(has_wide) * layers,
        "{name}: `decode_wide`"
    );
    for l in 0..layers {
        let find =
            |e: &str, label: String| plan.ops.iter().find(|p| p.entry == e && p.label == label);
        let o = find("decode", format!("l{l}.attention_decode"));
        let w = find("decode_wide", format!("l{l}.attention_decode_wide"));
        let partial = find("partial", format!("l{l}.attention"))
            .unwrap_or_else(|| panic!("{name}: l{l}'s partial"));
        let window = match cfg.sliding_layers[l] {
            true => cfg.sliding_window.unwrap_or(0) as u64,
            false => 0,
        };
        for past in [0, 63, 64, 100, 127, 128, 255, 256, 511, 512, 999] {
            let at = Syms {
                seq: 1,
                past,
                out: 1,
            };
            let keys = match window {
                0 => past + 1,
                w => (past + 1).min(w),
            };
            let runs = |op: Option<&graph::Op>| {
                op.is_some_and(|op| op.grid.iter().all(|g| g.eval(&at) > 0))
            };
            let few = keys <= u64::from(ATTENTION_DECODE_NARROW_KEYS);
            let some = keys <= u64::from(ATTENTION_DECODE_KEYS);
            let want = match (has_narrow && few, has_wide && !few && some) {
                (true, _) => [true, false, false],
                (false, true) => [false, true, false],
                (false, false) => [false, false, true],
            };
            assert_eq!(
                [runs(o), runs(w), runs(Some(partial))],
                want,
                "{name} ({one_pass:?}): l{l} at {past} ({keys} keys)"
            );
        }
    }
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("tlite-plan-dump-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
