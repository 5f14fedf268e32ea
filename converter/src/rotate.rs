//! Rotation of the residual stream (QuaRot-style): an exactly equivalent model whose weights
//! quantize with fewer outliers.
//!
//! For a pre-norm family every RMSNorm weight is folded into the linear layers that read the
//! norm's output (the input norm into q/k/v, the MLP norm into gate/up, the final norm into the
//! LM head, which is untied from the embedding where it was tied), leaving norms of weight 1.
//! Then the residual stream `h` becomes `h·Q` for a seeded orthogonal `Q`: embedding rows
//! `E·Q`, every matrix reading the residual `W·Q` (on its input side), every matrix writing into
//! it `Qᵀ·W` (o and down projections, on their output side; a bias they add, `b·Q`), the LM
//! head `W·Q`. An RMSNorm of weight 1 commutes with `Q` because it depends on `x` only through
//! `‖x‖`, which `Q` keeps, so every logit is unchanged up to rounding.
//!
//! `Q` is a randomized Hadamard transform `diag(±1)·H/√n` when the hidden size `n` is `m·2^k`
//! with `m = 1` (Sylvester) or `m = q + 1` for a prime `q ≡ 3 (mod 4)` (Paley's construction,
//! Kronecker with Sylvester's: 576 = 72·8, 896 = 224·4, 1536 = 12·128); otherwise a seeded
//! random orthogonal matrix (Gram–Schmidt of a Gaussian matrix, i.e. the Q of its QR).
//!
//! Families whose blocks pass their output through a norm before the residual add (Gemma 2/3's
//! sandwich norms) are refused: the norm's elementwise weight acts in the rotated basis and
//! cannot be folded into the block (see docs/QUANT_QUALITY.md). Gemma 1's `1 + w` norms fold like
//! any other (the folded norm is stored as `w = 0`).
//!
//! Math is in f64, tensor by tensor; the rotated weights are f32.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use safetensors::Dtype;
use serde::Serialize;
use serde_json::{Value, json};
use tlite_model::arch::NormStyle;
use tlite_model::config::ModelConfig;
use tlite_model::layer::ExpectedTensor;
use tlite_quantizer::rng::Rng;

use crate::checkpoint::Checkpoint;
use crate::events::Event;
use crate::output::Output;
use crate::safetensors_out::{OutTensor, write_streaming};
use crate::{Result, config_err, io_err};

/// Rotation settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RotateOptions {
    /// Seeds the signs of the Hadamard transform (or the random orthogonal matrix).
    pub seed: u64,
}

/// How `Q` is built.
#[derive(Clone, Debug, PartialEq)]
enum Kind {
    /// `diag(signs)·(A ⊗ S)/√n`: `A` a Paley Hadamard matrix of order `m` (none when `m` is
    /// 1), `S` Sylvester's of order `n/m`.
    Hadamard { paley: Option<Vec<f64>>, m: usize },
    /// A dense orthogonal matrix, row-major.
    Dense(Vec<f64>),
}

/// A seeded orthogonal `n × n` matrix `Q`, applied to row vectors: `x ← x·Q`.
#[derive(Clone, Debug)]
pub struct Rotation {
    n: usize,
    seed: u64,
    signs: Vec<f64>,
    kind: Kind,
}

/// Whether `q` is prime.
fn is_prime(q: usize) -> bool {
    q >= 2
        && (2..)
            .take_while(|d| d * d <= q)
            .all(|d| !q.is_multiple_of(d))
}

/// A Hadamard matrix of order `q + 1` for a prime `q ≡ 3 (mod 4)` (Paley's first
/// construction): `I + [[0, 1ᵀ], [−1, J]]` with `J[i][j] = χ(j − i)`, χ the quadratic
/// character mod `q`. Row-major, entries ±1.
pub fn paley(q: usize) -> Option<Vec<f64>> {
    if !(is_prime(q) && q % 4 == 3) {
        return None;
    }
    let mut residue = vec![false; q];
    for x in 1..q {
        residue[x * x % q] = true;
    }
    let chi = |d: usize| -> f64 {
        match d % q {
            0 => 0.0,
            r if residue[r] => 1.0,
            _ => -1.0,
        }
    };
    let m = q + 1;
    let mut h = vec![0.0; m * m];
    for i in 0..m {
        for j in 0..m {
            let s = match (i, j) {
                (0, 0) => 0.0,
                (0, _) => 1.0,
                (_, 0) => -1.0,
                _ => chi(j + q - i),
            };
            h[i * m + j] = s + if i == j { 1.0 } else { 0.0 };
        }
    }
    Some(h)
}

/// `m` of the Hadamard construction for order `n` (`n = m·2^k`, `m` 1 or `q + 1` for a prime
/// `q ≡ 3 mod 4`), the smallest such `m`.
fn hadamard_factor(n: usize) -> Option<usize> {
    if n == 0 {
        return None;
    }
    let mut m = n >> n.trailing_zeros();
    loop {
        if m == 1 || (m.is_multiple_of(4) && paley(m - 1).is_some()) {
            return Some(m);
        }
        if m == n {
            return None;
        }
        m *= 2;
    }
}

/// In-place unnormalized Walsh–Hadamard transform (`x ← x·S`, `S` Sylvester's, symmetric).
fn fwht(x: &mut [f64]) {
    let mut h = 1;
    while h < x.len() {
        for block in x.chunks_exact_mut(2 * h) {
            let (a, b) = block.split_at_mut(h);
            for (u, v) in a.iter_mut().zip(b) {
                let (s, d) = (*u + *v, *u - *v);
                *u = s;
                *v = d;
            }
        }
        h *= 2;
    }
}

impl Rotation {
    /// The rotation of order `n` for `seed`.
    pub fn new(n: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let kind = match hadamard_factor(n) {
            Some(1) => Kind::Hadamard { paley: None, m: 1 },
            Some(m) => Kind::Hadamard {
                paley: paley(m - 1),
                m,
            },
            None => Kind::Dense(random_orthogonal(n, &mut rng)),
        };
        let signs = match kind {
            Kind::Hadamard { .. } => (0..n)
                .map(|_| if rng.next_u64() >> 63 == 0 { 1.0 } else { -1.0 })
                .collect(),
            Kind::Dense(_) => vec![1.0; n],
        };
        Rotation {
            n,
            seed,
            signs,
            kind,
        }
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// What `Q` is, in words.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Hadamard { paley: None, .. } => format!(
                "randomized Hadamard diag(±1)·H{}/√{} (Sylvester), seed {}",
                self.n, self.n, self.seed
            ),
            Kind::Hadamard { m, .. } => format!(
                "randomized Hadamard diag(±1)·(H{m} ⊗ H{})/√{} (Paley q={} ⊗ Sylvester), seed {}",
                self.n / m,
                self.n,
                m - 1,
                self.seed
            ),
            Kind::Dense(_) => format!(
                "random orthogonal {n}×{n} (Gram–Schmidt of a Gaussian matrix; no Hadamard \
                 construction of order {n}), seed {}",
                self.seed,
                n = self.n
            ),
        }
    }

    /// `x ← x·Q` for a row vector of length `n`.
    pub fn apply(&self, x: &mut [f64]) {
        assert_eq!(x.len(), self.n, "rotation of order {}", self.n);
        match &self.kind {
            Kind::Hadamard { paley, m } => {
                for (v, s) in x.iter_mut().zip(&self.signs) {
                    *v *= s;
                }
                let p = self.n / m;
                for row in x.chunks_exact_mut(p) {
                    fwht(row);
                }
                if let Some(a) = paley {
                    // Y = Aᵀ·X for X the m × p view of x.
                    let xs = x.to_vec();
                    x.fill(0.0);
                    for r in 0..*m {
                        let src = &xs[r * p..(r + 1) * p];
                        for c in 0..*m {
                            let w = a[r * m + c];
                            for (y, v) in x[c * p..(c + 1) * p].iter_mut().zip(src) {
                                *y += w * v;
                            }
                        }
                    }
                }
                let scale = 1.0 / (self.n as f64).sqrt();
                for v in x.iter_mut() {
                    *v *= scale;
                }
            }
            Kind::Dense(q) => {
                let mut y = vec![0.0; self.n];
                for (i, &xi) in x.iter().enumerate() {
                    for (yj, qij) in y.iter_mut().zip(&q[i * self.n..(i + 1) * self.n]) {
                        *yj += xi * qij;
                    }
                }
                x.copy_from_slice(&y);
            }
        }
    }
}

/// The rows of a seeded Gaussian `n × n` matrix made orthonormal (Gram–Schmidt, each row
/// orthogonalized twice): an orthogonal matrix, row-major.
fn random_orthogonal(n: usize, rng: &mut Rng) -> Vec<f64> {
    let mut q: Vec<f64> = (0..n * n).map(|_| rng.normal()).collect();
    for i in 0..n {
        let (done, rest) = q.split_at_mut(i * n);
        let row = &mut rest[..n];
        for _ in 0..2 {
            for prev in done.chunks_exact(n) {
                let d: f64 = row.iter().zip(prev).map(|(a, b)| a * b).sum();
                for (a, b) in row.iter_mut().zip(prev) {
                    *a -= d * b;
                }
            }
        }
        let norm = row.iter().map(|a| a * a).sum::<f64>().sqrt();
        for a in row.iter_mut() {
            *a /= norm;
        }
    }
    q
}

/// What one tensor of the rotated model is made of.
#[derive(Clone, Debug, PartialEq)]
enum Action {
    /// The source tensor unchanged (a bias added inside a block, a per-head norm).
    Copy,
    /// A norm folded away: weight 1 (stored `0` for a `1 + w` norm).
    UnitNorm,
    /// Rows of `src` (a vector is one row), each scaled by the norm `norm`'s weight where given,
    /// then rotated: `x ← (x ⊙ g)·Q`.
    Rows { src: String, norm: Option<String> },
    /// The source tensor's columns rotated: `W ← Qᵀ·W` (a matrix writing into the residual).
    Columns,
}

/// A checkpoint seen through a rotation: the rotated model's config, tensors and config.json,
/// each tensor computed when asked for.
pub struct Rotated<'a> {
    ck: &'a Checkpoint,
    rotation: Rotation,
    config: ModelConfig,
    config_json: Value,
    plan: HashMap<String, Action>,
    expected: Vec<ExpectedTensor>,
}

/// Why `ck`'s family cannot be rotated, if it cannot.
fn refusal(ck: &Checkpoint) -> Option<String> {
    let c = &ck.config;
    let sandwich = (0..c.num_layers).any(|l| {
        let lay = ck.arch().layer(c, l);
        lay.attn_out_norm.is_some() || lay.mlp_out_norm.is_some()
    });
    sandwich.then(|| {
        format!(
            "cannot rotate a `{}` model ({:?} family): its blocks normalize their output \
             (post-attention / post-feedforward RMSNorm) before the residual add, and that norm's \
             elementwise weight would act on the rotated stream, so no rotation of the stored \
             weights leaves the model equivalent; rotation supports pre-norm families only \
             (llama, mistral, qwen2, gemma, chatglm)",
            c.model_type, c.family
        )
    })
}

impl<'a> Rotated<'a> {
    /// Plans the rotation of `ck` (refusing families it cannot keep equivalent).
    pub fn new(ck: &'a Checkpoint, opts: &RotateOptions) -> Result<Self> {
        if let Some(reason) = refusal(ck) {
            return Err(config_err(ck.dir.join("config.json"), reason));
        }
        // Shapes and dtypes of the source, checked once.
        ck.expected_tensors()?;
        let arch = ck.arch();
        let mut config = ck.config.clone();
        config.tie_word_embeddings = false;
        let rotation = Rotation::new(config.hidden_size, opts.seed);
        let spec = arch.model_spec(&ck.config);
        let mut plan = HashMap::new();
        plan.insert(
            spec.embed.clone(),
            Action::Rows {
                src: spec.embed.clone(),
                norm: None,
            },
        );
        plan.insert(
            arch.names.lm_head.to_owned(),
            Action::Rows {
                src: spec.lm_head.clone(),
                norm: Some(spec.final_norm.clone()),
            },
        );
        plan.insert(spec.final_norm.clone(), Action::UnitNorm);
        for lay in arch.layers(&ck.config) {
            for (norm, readers) in [
                (&lay.input_norm, vec![&lay.q, &lay.k, &lay.v]),
                (&lay.mlp_in_norm, vec![&lay.gate, &lay.up]),
            ] {
                plan.insert(norm.clone(), Action::UnitNorm);
                for p in readers {
                    plan.insert(
                        p.tensor.clone(),
                        Action::Rows {
                            src: p.tensor.clone(),
                            norm: Some(norm.clone()),
                        },
                    );
                }
            }
            for p in [&lay.o, &lay.down] {
                plan.insert(p.tensor.clone(), Action::Columns);
                if let Some((b, _)) = &p.bias {
                    let rows = Action::Rows {
                        src: b.clone(),
                        norm: None,
                    };
                    plan.insert(b.clone(), rows);
                }
            }
        }
        let mut config_json = ck.config_json.clone();
        if let Some(o) = config_json.as_object_mut() {
            o.insert("tie_word_embeddings".into(), json!(false));
            for key in ["torch_dtype", "dtype"] {
                if o.contains_key(key) {
                    o.insert(key.into(), json!("float32"));
                }
            }
            o.insert(
                "tlite_rotation".into(),
                json!({
                    "seed": opts.seed,
                    "matrix": rotation.describe(),
                    "norms_folded": true,
                }),
            );
        }
        let expected = arch.expected_tensors(&config);
        Ok(Rotated {
            ck,
            rotation,
            config,
            config_json,
            plan,
            expected,
        })
    }

    /// The rotated model's config (untied).
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The rotated model's config.json: the source's with `tie_word_embeddings: false`, dtype
    /// float32, and `tlite_rotation` recording the seed and the matrix.
    pub fn config_json(&self) -> &Value {
        &self.config_json
    }

    pub fn rotation(&self) -> &Rotation {
        &self.rotation
    }

    /// The rotated model's tensors, in file order.
    pub fn expected_tensors(&self) -> &[ExpectedTensor] {
        &self.expected
    }

    /// The effective weight `g` of a norm (`w`, or `1 + w`).
    fn norm_weight(&self, name: &str) -> Result<Vec<f64>> {
        let w = self.ck.tensor_f32(name)?;
        let one = match self.ck.arch().norm {
            NormStyle::Weight => 0.0,
            NormStyle::OnePlusWeight => 1.0,
        };
        Ok(w.iter().map(|&v| one + f64::from(v)).collect())
    }

    /// One tensor of the rotated model, as f32.
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self
            .expected
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| tlite_model::ModelError::MissingTensor {
                path: self.ck.dir.clone(),
                tensor: name.to_owned(),
            })?;
        let n = self.rotation.n();
        match self.plan.get(name).unwrap_or(&Action::Copy) {
            Action::Copy => self.ck.tensor_f32(name),
            Action::UnitNorm => {
                let v = match self.ck.arch().norm {
                    NormStyle::Weight => 1.0,
                    NormStyle::OnePlusWeight => 0.0,
                };
                Ok(vec![v; t.numel()])
            }
            Action::Rows { src, norm } => {
                let data = self.ck.tensor_f32(src)?;
                let g = norm.as_deref().map(|g| self.norm_weight(g)).transpose()?;
                let mut out = vec![0f32; data.len()];
                out.par_chunks_mut(n).zip(data.par_chunks(n)).for_each_init(
                    || vec![0f64; n],
                    |x, (o, row)| {
                        match &g {
                            Some(g) => {
                                for ((x, &v), g) in x.iter_mut().zip(row).zip(g) {
                                    *x = f64::from(v) * g;
                                }
                            }
                            None => {
                                for (x, &v) in x.iter_mut().zip(row) {
                                    *x = f64::from(v);
                                }
                            }
                        }
                        self.rotation.apply(x);
                        for (o, x) in o.iter_mut().zip(x.iter()) {
                            *o = *x as f32;
                        }
                    },
                );
                Ok(out)
            }
            Action::Columns => {
                let data = self.ck.tensor_f32(name)?;
                let cols = data.len() / n;
                let rotated: Vec<Vec<f32>> = (0..cols)
                    .into_par_iter()
                    .map(|j| {
                        let mut x: Vec<f64> =
                            (0..n).map(|i| f64::from(data[i * cols + j])).collect();
                        self.rotation.apply(&mut x);
                        x.iter().map(|&v| v as f32).collect()
                    })
                    .collect();
                let mut out = vec![0f32; data.len()];
                for (j, col) in rotated.iter().enumerate() {
                    for (i, v) in col.iter().enumerate() {
                        out[i * cols + j] = *v;
                    }
                }
                Ok(out)
            }
        }
    }
}

/// What `rotate` wrote.
#[derive(Clone, Debug, Serialize)]
pub struct RotateReport {
    pub output: PathBuf,
    /// `Q`, in words.
    pub rotation: String,
    pub tensors: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// Files of a checkpoint folder copied next to the rotated weights: the tokenizer and
/// generation settings, and the family's own Python code where it has some (ChatGLM).
fn copied_file(name: &str) -> bool {
    matches!(
        name,
        "tokenizer.json"
            | "tokenizer_config.json"
            | "special_tokens_map.json"
            | "added_tokens.json"
            | "tokenizer.model"
            | "vocab.json"
            | "merges.txt"
            | "generation_config.json"
            | "chat_template.jinja"
            | "chat_template.json"
    ) || name.ends_with(".py")
        || name.ends_with(".tiktoken")
}

/// Writes the rotated checkpoint of `ck` to `out` as a Hugging Face folder: `config.json`
/// (untied, float32, with `tlite_rotation`), one `model.safetensors` of f32 tensors, and the
/// tokenizer files; crash-safe as `convert` ([`Output`]).
pub fn rotate(
    ck: &Checkpoint,
    out: &Path,
    opts: &RotateOptions,
    overwrite: bool,
    progress: &mut dyn FnMut(Event),
) -> Result<RotateReport> {
    let t0 = Instant::now();
    let rot = Rotated::new(ck, opts)?;
    let output = Output::prepare(out, &[&ck.dir], overwrite)?;
    let dir = output.dir();
    let tensors: Vec<OutTensor> = rot
        .expected_tensors()
        .iter()
        .map(|t| OutTensor {
            name: t.name.clone(),
            dtype: Dtype::F32,
            shape: t.shape.clone(),
        })
        .collect();
    progress(Event::Start {
        phase: "rotate",
        total: tensors.len(),
    });
    let model = dir.join("model.safetensors");
    let mut done = 0;
    let bytes = write_streaming(&model, None, &tensors, |i, w| {
        let name = &tensors[i].name;
        let data = rot.tensor_f32(name)?;
        for block in data.chunks(1 << 16) {
            let raw: Vec<u8> = block.iter().flat_map(|v| v.to_le_bytes()).collect();
            w.write_all(&raw).map_err(io_err(&model))?;
        }
        progress(Event::Item {
            index: done,
            name: name.clone(),
        });
        done += 1;
        Ok(())
    })?;
    let cfg = dir.join("config.json");
    let text = serde_json::to_string_pretty(rot.config_json()).expect("config serializes");
    std::fs::write(&cfg, text + "\n").map_err(io_err(&cfg))?;
    let entries = std::fs::read_dir(&ck.dir).map_err(io_err(&ck.dir))?;
    for e in entries {
        let e = e.map_err(io_err(&ck.dir))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if copied_file(&name) && e.path().is_file() {
            std::fs::copy(e.path(), dir.join(&name)).map_err(io_err(&e.path()))?;
        }
    }
    output.install()?;
    progress(Event::Done { phase: "rotate" });
    Ok(RotateReport {
        output: out.to_owned(),
        rotation: rot.rotation().describe(),
        tensors: tensors.len(),
        bytes,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Q·Qᵀ` as rows `e_i·Q`: the largest deviation from the identity.
    fn orthogonality_error(r: &Rotation) -> f64 {
        let n = r.n();
        let rows: Vec<Vec<f64>> = (0..n)
            .map(|i| {
                let mut e = vec![0.0; n];
                e[i] = 1.0;
                r.apply(&mut e);
                e
            })
            .collect();
        let mut worst = 0f64;
        for i in 0..n {
            for j in 0..n {
                let d: f64 = rows[i].iter().zip(&rows[j]).map(|(a, b)| a * b).sum();
                worst = worst.max((d - if i == j { 1.0 } else { 0.0 }).abs());
            }
        }
        worst
    }

    #[test]
    fn paley_matrices_are_hadamard() {
        for q in [3, 7, 11, 19, 23, 71] {
            let h = paley(q).unwrap();
            let m = q + 1;
            for i in 0..m {
                for j in 0..m {
                    let d: f64 = (0..m).map(|k| h[i * m + k] * h[j * m + k]).sum();
                    assert_eq!(d, if i == j { m as f64 } else { 0.0 }, "q={q} ({i},{j})");
                }
            }
        }
        assert!(paley(13).is_none() && paley(15).is_none());
    }

    #[test]
    fn hadamard_orders_and_fallback() {
        assert_eq!(hadamard_factor(64), Some(1));
        assert_eq!(hadamard_factor(576), Some(72));
        assert_eq!(hadamard_factor(896), Some(224));
        assert_eq!(hadamard_factor(640), Some(20));
        assert_eq!(hadamard_factor(1536), Some(12));
        assert_eq!(hadamard_factor(10), None);
        for n in [1, 2, 8, 64, 24, 40, 576, 10, 30] {
            let r = Rotation::new(n, 7);
            let e = orthogonality_error(&r);
            assert!(e < 1e-12, "n={n}: |QQᵀ − I| = {e:e} ({})", r.describe());
        }
        assert!(
            Rotation::new(10, 1)
                .describe()
                .contains("random orthogonal")
        );
        assert!(Rotation::new(576, 1).describe().contains("Paley q=71"));
    }

    /// The seed changes the matrix; the same seed gives the same one.
    #[test]
    fn seeded() {
        let v = |n, seed| {
            let mut x: Vec<f64> = (0..n).map(|i| i as f64).collect();
            Rotation::new(n, seed).apply(&mut x);
            x
        };
        assert_eq!(v(64, 3), v(64, 3));
        assert_ne!(v(64, 3), v(64, 4));
        assert_ne!(v(30, 3), v(30, 4));
        // Norms are kept.
        let n2 = |x: &[f64]| x.iter().map(|a| a * a).sum::<f64>();
        let x: Vec<f64> = (0..64).map(|i| i as f64).collect();
        assert!((n2(&v(64, 9)) - n2(&x)).abs() < 1e-9 * n2(&x));
    }
}
