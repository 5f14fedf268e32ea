//! q, k and v in one projection: a layer's three stored M0E4 tensors joined at load into one
//! weight ([`Joined`]: their packed words, scales and biases concatenated part by part), so that
//! one GEMV (decode) or GEMM (prefill) computes all three into one activation, `[seq, q | k |
//! v]`, which `rope_kv::from_qkv` splits (q rotated into its own activation, k and v into the
//! cache; in decode the GEMV does it itself, `gemv_m0e4_norm_rope`). A model that stores q, k
//! and v in one tensor (ChatGLM, Phi-3) needs no join. Layers with QK-norms keep three
//! projections: the norms run between the projections and RoPE.

use std::collections::{HashMap, HashSet};

use tlite_model::arch::Role;
use tlite_model::deploy::{Chunk, Storage, TensorLayout};
use tlite_model::layer::{LayerSpec, Proj};
use tlite_quantizer::M0E4Matrix;

use super::decision::{Layouts, Limits};

/// A weight tensor the load assembles from stored ones: its layout (one chunk, no parts of its
/// own) and the stored tensors (one chunk each) whose parts it concatenates, part by part.
#[derive(Clone, Debug, PartialEq)]
pub struct Joined {
    pub layout: TensorLayout,
    pub members: Vec<String>,
}

/// One weight buffer of a load: its key (tensor, chunk, part), the stored parts it holds, in
/// order, and whether they are f16 (widened to f32 on the GPU). An M0E4 tensor has two: its
/// packed words (part 0) and its groups' parameters (part [`GROUPS_PART`]): each group's scale
/// and bias as one word, the scale's f16 in the low half and the bias's in the high half, so that
/// a kernel reads both with one load. Such a buffer interleaves the halves of `parts` (the stored
/// scales) with those of `high` (the stored biases); `high` is empty for every other buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightBuffer {
    pub key: (String, usize, usize),
    pub parts: Vec<String>,
    pub high: Vec<String>,
    pub f16: bool,
}

/// The buffer part of an M0E4 tensor that holds its groups' scales and biases, word by word.
pub const GROUPS_PART: usize = 1;

/// The stored parts of an M0E4 chunk: packed words, scales, biases.
const M0E4_PARTS: usize = 3;

/// The weight buffers of one stored chunk, or of the joined chunks of several tensors: `parts`
/// gives each member's stored part names in order.
fn chunk_buffers(
    key: impl Fn(usize) -> (String, usize, usize),
    storage: Storage,
    parts: &[&[String]],
) -> Vec<WeightBuffer> {
    let of = |pi: usize| parts.iter().map(|p| p[pi].clone()).collect::<Vec<_>>();
    let n = parts.first().map_or(0, |p| p.len());
    let f16 = storage == Storage::F16;
    if storage == Storage::M0E4 && n == M0E4_PARTS {
        return vec![
            WeightBuffer {
                key: key(0),
                parts: of(0),
                high: vec![],
                f16,
            },
            WeightBuffer {
                key: key(GROUPS_PART),
                parts: of(1),
                high: of(2),
                f16,
            },
        ];
    }
    (0..n)
        .map(|pi| WeightBuffer {
            key: key(pi),
            parts: of(pi),
            high: vec![],
            f16,
        })
        .collect()
}

/// Every weight buffer of a load of the stored `tensors` (the manifest's) with the joined
/// tensors `joined`: each stored part that no joined tensor takes, in manifest order, then each
/// joined tensor's parts.
pub fn weight_buffers(tensors: &[TensorLayout], joined: &[Joined]) -> Vec<WeightBuffer> {
    let taken: HashSet<&str> = joined
        .iter()
        .flat_map(|j| j.members.iter().map(String::as_str))
        .collect();
    let stored: HashMap<&str, &TensorLayout> =
        tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut out = Vec::new();
    for t in tensors.iter().filter(|t| !taken.contains(t.name.as_str())) {
        for (ci, ch) in t.chunks.iter().enumerate() {
            let key = |pi| (t.name.clone(), ci, pi);
            out.extend(chunk_buffers(key, t.storage, &[&ch.parts]));
        }
    }
    for j in joined {
        let members: Vec<&[String]> = (j.members.iter())
            .filter_map(|m| stored.get(m.as_str()))
            .map(|m| m.chunks[0].parts.as_slice())
            .collect();
        let key = |pi| (j.layout.name.clone(), 0, pi);
        out.extend(chunk_buffers(key, j.layout.storage, &members));
    }
    out
}

/// The projection of layer `lay` that computes q, k and v together, side by side, and the
/// joined tensors it needs that are not in `joined` yet (added there); `None` where the layer
/// keeps three projections.
pub(super) fn qkv_proj(
    lay: &LayerSpec,
    layouts: &Layouts,
    limits: Limits,
    joined: &mut Vec<Joined>,
) -> Option<Proj> {
    let (q, k, v) = (&lay.q, &lay.k, &lay.v);
    if lay.q_norm.is_some() || lay.k_norm.is_some() {
        return None;
    }
    if lay.fused_qkv() {
        // One stored tensor: its rows q | k | v in this order, and their biases likewise.
        let adjacent = q.rows.end == k.rows.start && k.rows.end == v.rows.start;
        let tensor = k.tensor == v.tensor;
        let bias = match (&q.bias, &k.bias, &v.bias) {
            (None, None, None) => Some(None),
            (Some((qb, qr)), Some((kb, kr)), Some((vb, vr)))
                if qb == kb && kb == vb && qr.end == kr.start && kr.end == vr.start =>
            {
                Some(Some((qb.clone(), qr.start..vr.end)))
            }
            _ => None,
        };
        return match (adjacent && tensor, bias) {
            (true, Some(bias)) => Some(Proj {
                tensor: q.tensor.clone(),
                rel: "qkv",
                rows: q.rows.start..v.rows.end,
                cols: q.cols,
                bias,
            }),
            _ => None,
        };
    }
    let ws = [q, k, v].map(|p| layouts.get(p.tensor.as_str()).copied());
    let [Some(wq), Some(wk), Some(wv)] = ws else {
        return None;
    };
    let ws = [wq, wk, wv];
    let cols = wq.rows_cols().1;
    let joinable = ws.iter().zip([q, k, v]).all(|(w, p)| {
        w.storage == Storage::M0E4
            && w.group.is_some()
            && w.group == wq.group
            && w.rows_cols() == (p.out(), cols)
            && p.rows.start == 0
            && w.chunks.len() == 1
    });
    if !joinable {
        return None;
    }
    let rows: usize = ws.iter().map(|w| w.rows_cols().0).sum();
    let group = wq.group?;
    let packed = (rows as u64) * (M0E4Matrix::words_per_row(cols) as u64) * 4;
    // One word per group on the GPU: its scale and bias (GROUPS_PART).
    let params = (rows as u64) * (M0E4Matrix::groups_per_row(cols, group) as u64) * 4;
    if packed.max(params) > limits.max_binding {
        return None;
    }
    let bias = match [&q.bias, &k.bias, &v.bias] {
        [None, None, None] => None,
        [Some(qb), Some(kb), Some(vb)] => Some(join_bias([qb, kb, vb], layouts)?),
        _ => return None,
    };
    let name = format!("{}+k+v", q.tensor);
    if layouts.contains_key(name.as_str()) {
        return None; // a stored tensor of that name: nothing is replaced
    }
    let weight = Joined {
        layout: whole(
            &name,
            vec![rows, cols],
            Role::Linear,
            Storage::M0E4,
            Some(group),
        ),
        members: [q, k, v].map(|p| p.tensor.clone()).to_vec(),
    };
    // Only now that the layer joins: its weight and its bias.
    let bias = bias.map(|b| {
        let range = 0..b.layout.shape[0];
        let name = b.layout.name.clone();
        add(joined, b);
        (name, range)
    });
    add(joined, weight);
    Some(Proj {
        tensor: name,
        rel: "qkv",
        rows: 0..rows,
        cols,
        bias,
    })
}

/// Adds `j` to `joined` unless a joined tensor of its name is there.
fn add(joined: &mut Vec<Joined>, j: Joined) {
    if !joined.iter().any(|o| o.layout.name == j.layout.name) {
        joined.push(j);
    }
}

/// The layout of a joined tensor: one chunk of all its rows, no parts of its own.
fn whole(
    name: &str,
    shape: Vec<usize>,
    role: Role,
    storage: Storage,
    group: Option<usize>,
) -> TensorLayout {
    TensorLayout {
        name: name.to_owned(),
        chunks: vec![Chunk {
            rows: (0, shape[0]),
            parts: vec![],
        }],
        shape,
        role,
        storage,
        group,
        sha256: String::new(),
    }
}

/// The joined bias of q, k and v (each a whole stored vector of one chunk, all stored alike).
fn join_bias(biases: [&(String, std::ops::Range<usize>); 3], layouts: &Layouts) -> Option<Joined> {
    let mut total = 0;
    let mut storage = None;
    for (t, r) in biases {
        let l = layouts.get(t.as_str())?;
        let n = l.shape.iter().product::<usize>();
        if r.start != 0 || r.end != n || l.chunks.len() != 1 || l.storage == Storage::M0E4 {
            return None;
        }
        if storage.is_some_and(|s| s != l.storage) {
            return None;
        }
        storage = Some(l.storage);
        total += n;
    }
    let name = format!("{}+k+v", biases[0].0);
    if layouts.contains_key(name.as_str()) {
        return None;
    }
    Some(Joined {
        layout: whole(&name, vec![total], Role::Bias, storage?, None),
        members: biases.iter().map(|(t, _)| t.clone()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use super::*;

    fn m0e4(name: &str, rows: usize, group: usize, chunks: &[(usize, usize)]) -> TensorLayout {
        TensorLayout {
            name: name.into(),
            shape: vec![rows, 64],
            role: Role::Linear,
            storage: Storage::M0E4,
            group: Some(group),
            chunks: (chunks.iter())
                .enumerate()
                .map(|(i, &rows)| Chunk {
                    rows,
                    parts: (0..3).map(|p| format!("{name}.{i}.{p}")).collect(),
                })
                .collect(),
            sha256: String::new(),
        }
    }

    fn vector(name: &str, n: usize, storage: Storage) -> TensorLayout {
        TensorLayout {
            name: name.into(),
            shape: vec![n],
            role: Role::Bias,
            storage,
            group: None,
            chunks: vec![Chunk {
                rows: (0, n),
                parts: vec![format!("{name}.0.0")],
            }],
            sha256: String::new(),
        }
    }

    fn proj(tensor: &str, rows: Range<usize>, bias: Option<&str>) -> Proj {
        Proj {
            tensor: tensor.into(),
            rel: "p",
            rows: rows.clone(),
            cols: 64,
            bias: bias.map(|b| (b.to_owned(), rows)),
        }
    }

    /// A layer with q (64 rows), k and v (32 each) in tensors `q`, `k`, `v`.
    fn layer(q: Proj, k: Proj, v: Proj) -> LayerSpec {
        let other = proj("o", 0..64, None);
        LayerSpec {
            index: 0,
            input_norm: "n".into(),
            q,
            k,
            v,
            q_norm: None,
            k_norm: None,
            o: other.clone(),
            attn_out_norm: None,
            mlp_in_norm: "n2".into(),
            mlp_out_norm: None,
            gate: other.clone(),
            up: other.clone(),
            down: other,
            tensors: vec![],
        }
    }

    fn apart() -> LayerSpec {
        layer(
            proj("q", 0..64, None),
            proj("k", 0..32, None),
            proj("v", 0..32, None),
        )
    }

    const LIMITS: Limits = crate::graph::decision::TEST_LIMITS;

    fn join(lay: &LayerSpec, ts: &[TensorLayout], limits: Limits) -> (Option<Proj>, Vec<Joined>) {
        let layouts: Layouts = ts.iter().map(|t| (t.name.as_str(), t)).collect();
        let mut joined = Vec::new();
        let p = qkv_proj(lay, &layouts, limits, &mut joined);
        (p, joined)
    }

    #[test]
    fn q_k_and_v_of_one_group_size_are_joined_with_their_biases() {
        let ts = [
            m0e4("q", 64, 32, &[(0, 64)]),
            m0e4("k", 32, 32, &[(0, 32)]),
            m0e4("v", 32, 32, &[(0, 32)]),
            vector("qb", 64, Storage::F16),
            vector("kb", 32, Storage::F16),
            vector("vb", 32, Storage::F16),
        ];
        let (p, joined) = join(&apart(), &ts, LIMITS);
        let p = p.unwrap();
        assert_eq!((p.tensor.as_str(), p.rows, p.bias), ("q+k+v", 0..128, None));
        assert_eq!(joined.len(), 1);
        assert_eq!(joined[0].members, ["q", "k", "v"]);
        assert_eq!(joined[0].layout.shape, [128, 64]);
        assert_eq!(joined[0].layout.group, Some(32));

        let biased = layer(
            proj("q", 0..64, Some("qb")),
            proj("k", 0..32, Some("kb")),
            proj("v", 0..32, Some("vb")),
        );
        let (p, joined) = join(&biased, &ts, LIMITS);
        assert_eq!(p.unwrap().bias, Some(("qb+k+v".into(), 0..128)));
        let bias = joined.iter().find(|j| j.layout.name == "qb+k+v").unwrap();
        assert_eq!(bias.members, ["qb", "kb", "vb"]);
        assert_eq!(
            (bias.layout.shape.as_slice(), bias.layout.storage),
            (&[128][..], Storage::F16)
        );

        // The weight buffers: the members' parts are uploaded only inside the joined ones.
        let mut with_o = ts.to_vec();
        with_o.insert(0, m0e4("o", 64, 32, &[(0, 64)]));
        let bufs = weight_buffers(&with_o, &joined);
        let keys: Vec<(&str, usize)> = bufs.iter().map(|b| (b.key.0.as_str(), b.key.2)).collect();
        // An M0E4 tensor's scales and biases share one buffer (part 1).
        let want = [("o", 0), ("o", 1), ("qb+k+v", 0)];
        assert_eq!(keys[..3], want);
        assert_eq!(
            (&bufs[1].parts, &bufs[1].high),
            (&vec!["o.0.1".to_owned()], &vec!["o.0.2".to_owned()])
        );
        assert_eq!(keys[3..], [("q+k+v", 0), ("q+k+v", 1)]);
        assert_eq!(bufs[4].parts, ["q.0.1", "k.0.1", "v.0.1"]);
        assert_eq!(bufs[4].high, ["q.0.2", "k.0.2", "v.0.2"]);
        assert!(bufs[3].high.is_empty() && bufs[2].high.is_empty());
        assert_eq!(
            (bufs[2].parts.len(), bufs[2].f16, bufs[3].f16),
            (3, true, false)
        );
    }

    #[test]
    fn layers_whose_q_k_and_v_differ_or_are_normed_keep_three_projections() {
        let good = [
            m0e4("q", 64, 32, &[(0, 64)]),
            m0e4("k", 32, 32, &[(0, 32)]),
            m0e4("v", 32, 32, &[(0, 32)]),
        ];
        let none = |lay: &LayerSpec, ts: &[TensorLayout], l: Limits| {
            let (p, joined) = join(lay, ts, l);
            assert!(p.is_none() && joined.is_empty());
        };
        let mut other_group = good.clone();
        other_group[2] = m0e4("v", 32, 64, &[(0, 32)]);
        none(&apart(), &other_group, LIMITS);
        let mut chunked = good.clone();
        chunked[0] = m0e4("q", 64, 32, &[(0, 32), (32, 64)]);
        none(&apart(), &chunked, LIMITS);
        let mut dense = good.clone();
        dense[1].storage = Storage::F16;
        none(&apart(), &dense, LIMITS);
        let normed = LayerSpec {
            q_norm: Some("qn".into()),
            k_norm: Some("kn".into()),
            ..apart()
        };
        none(&normed, &good, LIMITS);
        // 128 rows × 8 words × 4 B = 4 KiB of packed words.
        let small = Limits {
            max_binding: 4095,
            ..LIMITS
        };
        none(&apart(), &good, small);
        assert!(
            join(
                &apart(),
                &good,
                Limits {
                    max_binding: 4096,
                    ..LIMITS
                }
            )
            .0
            .is_some()
        );
        // A stored tensor already has the joined weight's or bias's name: no join.
        let mut taken = good.to_vec();
        taken.push(m0e4("q+k+v", 128, 32, &[(0, 128)]));
        none(&apart(), &taken, LIMITS);
        let biased = layer(
            proj("q", 0..64, Some("qb")),
            proj("k", 0..32, Some("kb")),
            proj("v", 0..32, Some("vb")),
        );
        let mut with_biases = good.to_vec();
        with_biases.extend(["qb", "kb", "vb"].map(|b| vector(b, 64, Storage::F32)));
        with_biases[4] = vector("kb", 32, Storage::F32);
        with_biases[5] = vector("vb", 32, Storage::F32);
        assert!(join(&biased, &with_biases, LIMITS).0.is_some());
        // The weight's name taken: neither the weight nor the bias is joined.
        let mut weight_taken = with_biases.clone();
        weight_taken.push(m0e4("q+k+v", 128, 32, &[(0, 128)]));
        none(&biased, &weight_taken, LIMITS);
        with_biases.push(vector("qb+k+v", 128, Storage::F32));
        none(&biased, &with_biases, LIMITS);
        let one_bias = layer(
            proj("q", 0..64, Some("qb")),
            proj("k", 0..32, None),
            proj("v", 0..32, None),
        );
        none(&one_bias, &good, LIMITS);
    }

    #[test]
    fn a_stored_qkv_tensor_is_one_projection_without_a_join() {
        let ts = [m0e4("qkv", 128, 32, &[(0, 128)])];
        let fused = layer(
            proj("qkv", 0..64, None),
            proj("qkv", 64..96, None),
            proj("qkv", 96..128, None),
        );
        let (p, joined) = join(&fused, &ts, LIMITS);
        let p = p.unwrap();
        assert_eq!((p.tensor.as_str(), p.rows), ("qkv", 0..128));
        assert!(joined.is_empty());
        // Rows not in q | k | v order: three projections.
        let swapped = layer(
            proj("qkv", 0..64, None),
            proj("qkv", 96..128, None),
            proj("qkv", 64..96, None),
        );
        assert!(join(&swapped, &ts, LIMITS).0.is_none());
    }
}
