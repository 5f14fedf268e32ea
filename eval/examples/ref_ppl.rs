//! Times the CPU reference's perplexity (`tlite_eval::ppl::perplexity`) on a model and a text,
//! tokenization and loading excluded, and the matrix products alone at the same shapes (the
//! floor the forward pass is measured against).
//!
//! `cargo run --release -p tlite-eval --example ref_ppl -- MODEL TEXT [CTX] [WINDOWS]`

use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use tlite_eval::load::Opened;
use tlite_eval::ppl::{self, PplOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (model, text) = (&args[0], &args[1]);
    let ctx: usize = args.get(2).map_or(Ok(512), |s| s.parse())?;
    let windows: usize = args.get(3).map_or(Ok(4), |s| s.parse())?;
    let t = Instant::now();
    let o = Opened::open(model)?;
    let m = o.load_reference()?;
    let load_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let tokens = o.tokenize_file(std::path::Path::new(text), Some((windows + 1) * ctx * 8))?;
    let tok_s = t.elapsed().as_secs_f64();
    let opts = PplOptions {
        ctx,
        max_windows: Some(windows),
        score_all: false,
        bos: o.window_bos()?,
    };
    println!(
        "threads {} | load {load_s:.2} s | tokenize {tok_s:.2} s",
        candle_core::utils::get_num_threads()
    );
    let r = ppl::perplexity(&m, &tokens, &opts, &mut |_, _| {})?;
    println!(
        "ppl {:.6} nll_mean {:.17} | {} windows × {ctx} in {:.3} s = {:.1} tok/s",
        r.ppl, r.nll_mean, r.windows, r.seconds, r.tokens_per_second
    );

    // The matrix products of one window alone: every linear layer at `ctx` rows, the LM head
    // at the scored rows.
    let c = &m.config;
    let (h, i) = (c.hidden_size, c.intermediate_size);
    let (qd, kvd) = (c.num_heads * c.head_dim, c.num_kv_heads * c.head_dim);
    let rnd = |r: usize, k: usize| Tensor::randn(0f32, 0.02, (r, k), &Device::Cpu);
    let shapes = [(qd, h), (kvd, h), (kvd, h), (h, qd), (i, h), (i, h), (h, i)];
    let ws: Vec<Tensor> = shapes
        .iter()
        .map(|&(o, k)| rnd(o, k))
        .collect::<Result<_, _>>()?;
    let head = rnd(c.vocab_size, h)?;
    let xh = rnd(ctx, h)?;
    let xi = rnd(ctx, i.max(qd))?;
    let t = Instant::now();
    for _ in 0..c.num_layers {
        for (w, &(_, k)) in ws.iter().zip(&shapes) {
            let x = if k == h {
                xh.clone()
            } else {
                xi.narrow(1, 0, k)?
            };
            let _ = x.matmul(&w.t()?)?;
        }
    }
    let lin = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let _ = xh
        .narrow(0, 0, ctx / 2)?
        .matmul(&head.t()?)?
        .to_dtype(DType::F32)?;
    let lm = t.elapsed().as_secs_f64();
    let flops =
        2.0 * (ctx * c.num_layers * shapes.iter().map(|(o, k)| o * k).sum::<usize>()) as f64;
    println!(
        "matmuls of one window: layers {lin:.3} s ({:.1} GFLOP/s), LM head {lm:.3} s; \
         window {:.3} s",
        flops / lin / 1e9,
        r.seconds / r.windows as f64
    );
    Ok(())
}
