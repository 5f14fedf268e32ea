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

// `from_qkv4`: from_qkv with 4 consecutive elements per thread, loaded and stored as vectors,
// where each quad of a head's dimensions rotates with one quad of partners: hd a multiple of 4
// and rot of 8 (pairs (i, i + rot/2)) or of 4 (pairs (2i, 2i + 1)), the plan's condition.
@group(0) @binding(9) var<storage, read> qkv4: array<vec4<f32>>;
@group(0) @binding(10) var<storage, read_write> q4: array<vec4<f32>>;
@group(0) @binding(11) var<storage, read_write> kcache4: array<vec4<kv_t>>;
@group(0) @binding(12) var<storage, read_write> vcache4: array<vec4<kv_t>>;

// Dimensions d .. d + 3 (d a multiple of 4) of the head whose dimension 0 is unit src4 of qkv4,
// after RoPE at the position whose tables start at tb.
fn rotated4(src4: u32, d: u32, tb: u32) -> vec4<f32> {
    let val = qkv4[src4 + d / 4u];
    if (d >= params.rot) {
        return val;
    }
    if (params.interleaved != 0u) {
        // Pairs (d, d + 1) and (d + 2, d + 3): table entries d / 2 and d / 2 + 1.
        let i = tb + d / 2u;
        let c = vec4<f32>(cos_t[i], cos_t[i], cos_t[i + 1u], cos_t[i + 1u]);
        let s = vec4<f32>(sin_t[i], sin_t[i], sin_t[i + 1u], sin_t[i + 1u]);
        return val * c + val.yxwz * s * vec4<f32>(-1.0, 1.0, -1.0, 1.0);
    }
    let half = params.rot / 2u;
    let first = d < half;
    let i = tb + select(d - half, d, first);
    let other = qkv4[src4 + select(d - half, d + half, first) / 4u];
    let c = vec4<f32>(cos_t[i], cos_t[i + 1u], cos_t[i + 2u], cos_t[i + 3u]);
    let s = vec4<f32>(sin_t[i], sin_t[i + 1u], sin_t[i + 2u], sin_t[i + 3u]);
    return select(val * c + other * s, val * c - other * s, first);
}

fn to_kv4(x: vec4<f32>) -> vec4<kv_t> {
    return vec4<kv_t>(to_kv(x.x), to_kv(x.y), to_kv(x.z), to_kv(x.w));
}

// Grid (token, ⌈(heads + kv_heads) · hd / (4 ROPE_KV_WG)⌉): thread j of a token writes q
// elements 4 j .. 4 j + 3 (rotated) or, past q, those of k and v.
@compute @workgroup_size(ROPE_KV_WG)
fn from_qkv4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wg.x;
    if (t >= params.seq) {
        return;
    }
    let j = 4u * (wg.y * ROPE_KV_WG + lid);
    let pos = params.past + t;
    let tb = pos * (params.rot / 2u);
    let qw = params.heads * params.hd;
    let kvw = params.kv_heads * params.hd;
    let row = t * (qw + 2u * kvw);
    if (j < qw) {
        let d = j % params.hd;
        q4[(t * qw + j) / 4u] = rotated4((row + j - d) / 4u, d, tb);
    } else if (j < qw + kvw) {
        let e = j - qw;
        let h = e / params.hd;
        let d = e % params.hd;
        let src = row + qw + h * params.hd;
        let dst = ((h * params.max_seq + pos) * params.hd + d) / 4u;
        kcache4[dst] = to_kv4(rotated4(src / 4u, d, tb));
        vcache4[dst] = to_kv4(qkv4[(src + kvw + d) / 4u]);
    }
}
