// RoPE fused with the KV-cache write. q ([seq, heads·hd]) is rotated in place; k is rotated and,
// with v, written straight into the layer's cache at rows past..past+seq — the sub-tensor KV
// cache: one preallocated [kv_heads, max_seq, hd] buffer each for K and V, never copied.
// cos/sin: [max_seq, rot/2] tables. layout 0: pairs (i, i + rot/2); 1: pairs (2i, 2i + 1).
// `from_qkv` does the same from one [seq, (heads + 2 kv_heads)·hd] activation (q, k and v of a
// token side by side: the output of one fused q/k/v projection) and writes the rotated q to q.

struct Params {
    seq: u32,
    past: u32,
    heads: u32,
    kv_heads: u32,
    hd: u32,
    rot: u32,
    interleaved: u32,
    max_seq: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> kcache: array<kv_t>;
@group(0) @binding(5) var<storage, read_write> vcache: array<kv_t>;
@group(0) @binding(6) var<storage, read> cos_t: array<f32>;
@group(0) @binding(7) var<storage, read> sin_t: array<f32>;
// `from_qkv`: q, k and v of each token, side by side.
@group(0) @binding(8) var<storage, read> qkv: array<f32>;

// Indices of the pair i (0 ≤ i < rot/2) within a head.
fn pair(i: u32) -> vec2<u32> {
    if (params.interleaved == 0u) {
        return vec2<u32>(i, i + params.rot / 2u);
    }
    return vec2<u32>(2u * i, 2u * i + 1u);
}

// The partner of dimension d (< rot) of a head in its rotation pair; d itself past rot.
fn partner_of(d: u32) -> u32 {
    if (d >= params.rot) {
        return d;
    }
    let half = params.rot / 2u;
    if (params.interleaved == 0u) {
        return select(d - half, d + half, d < half);
    }
    return d ^ 1u;
}

// Dimension d of a head after RoPE at the position whose tables start at tb: `val` is its
// value, `other` its partner's (dimensions past rot are unrotated).
fn rotated(val: f32, other: f32, d: u32, tb: u32) -> f32 {
    if (d >= params.rot) {
        return val;
    }
    let half = params.rot / 2u;
    var i = d;
    var first = true;
    if (params.interleaved == 0u) {
        first = d < half;
        i = select(d - half, d, first);
    } else {
        i = d / 2u;
        first = (d & 1u) == 0u;
    }
    let c = cos_t[tb + i];
    let s = sin_t[tb + i];
    return select(val * c + other * s, val * c - other * s, first);
}

// Grid (token, ⌈max(heads · rot/2, kv_heads · hd) / ROPE_KV_WG⌉): thread j of a token rotates
// q pair j and writes k/v element j, so no thread loops.
@compute @workgroup_size(ROPE_KV_WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wg.x;
    if (t >= params.seq) {
        return;
    }
    let j = wg.y * ROPE_KV_WG + lid;
    let pos = params.past + t;
    let half = params.rot / 2u;
    let tb = pos * half;
    if (j < params.heads * half) {
        let h = j / half;
        let i = j % half;
        let ix = pair(i);
        let base = t * params.heads * params.hd + h * params.hd;
        let a = q[base + ix.x];
        let b = q[base + ix.y];
        let c = cos_t[tb + i];
        let s = sin_t[tb + i];
        q[base + ix.x] = a * c - b * s;
        q[base + ix.y] = b * c + a * s;
    }
    if (j < params.kv_heads * params.hd) {
        let h = j / params.hd;
        let d = j % params.hd;
        let src = t * params.kv_heads * params.hd + h * params.hd;
        let dst = (h * params.max_seq + pos) * params.hd;
        vcache[dst + d] = to_kv(v[src + d]);
        kcache[dst + d] = to_kv(rotated(k[src + d], k[src + partner_of(d)], d, tb));
    }
}

// Grid (token, ⌈(heads + kv_heads) · hd / ROPE_KV_WG⌉): thread j of a token writes q element j
// (rotated) or, past q, k and v element j − heads · hd.
@compute @workgroup_size(ROPE_KV_WG)
fn from_qkv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wg.x;
    if (t >= params.seq) {
        return;
    }
    let j = wg.y * ROPE_KV_WG + lid;
    let pos = params.past + t;
    let tb = pos * (params.rot / 2u);
    let qw = params.heads * params.hd;
    let kvw = params.kv_heads * params.hd;
    let row = t * (qw + 2u * kvw);
    if (j < qw) {
        let d = j % params.hd;
        let src = row + j - d;
        q[t * qw + j] = rotated(qkv[src + d], qkv[src + partner_of(d)], d, tb);
    } else if (j < qw + kvw) {
        let e = j - qw;
        let h = e / params.hd;
        let d = e % params.hd;
        let src = row + qw + h * params.hd;
        let dst = (h * params.max_seq + pos) * params.hd;
        kcache[dst + d] = to_kv(rotated(qkv[src + d], qkv[src + partner_of(d)], d, tb));
        vcache[dst + d] = to_kv(qkv[src + kvw + d]);
    }
}
