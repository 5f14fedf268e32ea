//! Q4_0's rounding ties (issue 14, item 5): a checkpoint whose weights are symmetric 5-bit
//! values (Gemma-3-270M's Q5_0 tensors) puts about half of its elements exactly on a Q4_0 tie.
//! tlite's Q4_0 breaks a tie toward the lower code (`format::nearest_code`), llama.cpp's toward
//! the higher one (`(int)(x/d + 8.5)`, `quantize_row_q4_0_ref`). This runs both — the same
//! `d = v / -8` of the largest-magnitude element, stored f16 (llama.cpp also picks codes with the
//! unrounded `d`, tlite with the stored one) — on the same windows
//! against the same baseline, embeddings and LM head kept in f16, and prints ΔPPL and KLD.
//!
//! `cargo run --release -p tlite-eval --example q4_0_ties -- MODEL TEXT [CTX] [WINDOWS]`

use half::f16;
use tlite_converter::checkpoint::Checkpoint;
use tlite_eval::ppl::{self, PplOptions};
use tlite_eval::reference::{ReferenceModel, WeightSource};
use tlite_model::arch::Role;
use tlite_quantizer::levels::signed_absmax;
use tlite_quantizer::{Scheme, SchemeKind, fake_quantize};

/// Q4_0 with ties broken toward the higher code: `d = v / -8` for the largest-magnitude `v`,
/// stored `f16(d)`, codes picked either as llama.cpp does (`min(15, (int)(x · (1/d) + 8.5))`,
/// with the unrounded `d`) or as tlite does (the stored `d`'s nearest decode), with only the
/// tie direction changed — which separates the tie direction from the `d` used to pick codes.
struct Q4_0TiesUp {
    llama_cpp: bool,
}

impl Scheme for Q4_0TiesUp {
    fn name(&self) -> String {
        let how = if self.llama_cpp { "ggml" } else { "nearest" };
        format!("q4_0-{how}-ties-up")
    }
    fn bits_per_weight(&self, group: usize) -> f64 {
        SchemeKind::Q4_0.bits_per_weight(group)
    }
    fn quantize_group(&self, x: &[f32], _imp: Option<&[f32]>, out: &mut [f32]) {
        let d = signed_absmax(x).0 / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let dq = f16::from_f32(d).to_f32();
        let decode = |q: i32| (q as f32 - 8.0) * dq;
        for (o, &w) in out.iter_mut().zip(x) {
            let q = if self.llama_cpp {
                ((w * id + 8.5) as i32).clamp(0, 15)
            } else {
                // The last of the nearest codes.
                (0..16)
                    .min_by(|&a, &b| {
                        let (ea, eb) = ((decode(a) - w).abs(), (decode(b) - w).abs());
                        ea.total_cmp(&eb).then(b.cmp(&a))
                    })
                    .unwrap_or(8)
            };
            *o = if dq == 0.0 { 0.0 } else { decode(q) };
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model, text) = (&args[0], &args[1]);
    let ctx: usize = args.get(2).map_or(Ok(512), |s| s.parse())?;
    let windows: usize = args.get(3).map_or(Ok(8), |s| s.parse())?;
    let o = tlite_eval::load::Opened::open(model)?;
    let ck = Checkpoint::open(model)?;
    let tokens = o.tokenize_file(std::path::Path::new(text), Some((windows + 1) * ctx * 8))?;
    let opts = PplOptions {
        ctx,
        max_windows: Some(windows),
        score_all: false,
        bos: o.window_bos()?,
    };
    let base = ppl::base_logprobs(
        &ReferenceModel::load(&WeightSource::Checkpoint(&ck))?,
        &tokens,
        &opts,
        &mut |_, _| {},
    )?;
    println!(
        "baseline PPL {:.4} over {} windows of {ctx} (BOS {:?})",
        base.result.ppl, base.result.windows, opts.bos
    );
    let expected = ck.arch().expected_tensors(&ck.config);
    let schemes: [(&str, &dyn Scheme); 3] = [
        ("tlite q4_0 (ties to the lower code)", &SchemeKind::Q4_0),
        (
            "tlite's rounding, ties to the higher code",
            &Q4_0TiesUp { llama_cpp: false },
        ),
        ("llama.cpp q4_0 (ties up)", &Q4_0TiesUp { llama_cpp: true }),
    ];
    for (label, scheme) in schemes {
        let tensor = |name: &str| -> tlite_converter::Result<Vec<f32>> {
            let data = ck.tensor_f32(name)?;
            let Some(t) = expected
                .iter()
                .find(|t| t.name == name && t.role.quantizable() && t.shape.len() == 2)
            else {
                return Ok(data);
            };
            if matches!(t.role, Role::Embedding | Role::LmHead) {
                return Ok(data.iter().map(|&v| f16::from_f32(v).to_f32()).collect());
            }
            Ok(fake_quantize(
                scheme, &data, t.shape[0], t.shape[1], 32, None,
            )?)
        };
        let source = WeightSource::Computed {
            source: &ck,
            tensor: &tensor,
            label: label.into(),
        };
        let q = ReferenceModel::load(&source)?;
        let r = ppl::compare_to(&base, &q, &tokens, &opts, &mut |_, _| {})?;
        println!(
            "{label:40} PPL {:.4}  ΔPPL {:+.2}% ± {:.2}  KLD {:.4}  top-1 {:.2}%",
            r.quant.ppl, r.delta_ppl_pct, r.delta_ppl_err_pct, r.kld_mean, r.top1_agree_pct
        );
    }
    Ok(())
}
