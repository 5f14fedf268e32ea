// Attention over the cache prefix with an online softmax. partial: workgroup (split, head, t)
// covers keys [lo + split·kps, …) of query t (position past + t), causal and, when window > 0,
// limited to the last `window` positions; it writes (max, sum, acc[hd]). combine merges the
// splits: prefill runs one split, decode splits the keys across workgroups (split reduction).
// Grouped-query heads: head h reads kv head h / (heads / kv_heads).

struct Params {
    seq: u32,
    past: u32,
    heads: u32,
    kv_heads: u32,
    hd: u32,
    max_seq: u32,
    window: u32,
    splits: u32,
    kps: u32,
    scale: f32,
    softcap: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kcache: array<f32>;
@group(0) @binding(3) var<storage, read> vcache: array<f32>;
@group(0) @binding(4) var<storage, read_write> parts: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
// The K cache again, as vectors (hd % 4 == 0): a key's dot product in hd / 4 loads.
@group(0) @binding(6) var<storage, read> kcache4: array<vec4<f32>>;

const MAX_HD: u32 = ATTENTION_MAX_HD;
// A thread stages q as one vector and accumulates up to 4 output dimensions (acc).
const_assert MAX_HD % 4u == 0u && MAX_HD / 4u <= REDUCE_WG && MAX_HD <= 4u * REDUCE_WG;
var<workgroup> qv: array<f32, MAX_HD>;
var<workgroup> qv4: array<vec4<f32>, MAX_HD / 4u>;
var<workgroup> sc: array<f32, REDUCE_WG>;



@compute @workgroup_size(REDUCE_WG)
fn partial(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let split = wg.x;
    let h = wg.y;
    let t = wg.z;
    let qi = params.past + t;
    var lo = 0u;
    if (params.window > 0u && qi + 1u > params.window) {
        lo = qi + 1u - params.window;
    }
    let start = lo + split * params.kps;
    let end = min(qi + 1u, start + params.kps);
    let kvh = h / (params.heads / params.kv_heads);
    let qb = (t * params.heads + h) * params.hd;
    // q staged once, as vectors where hd % 4 == 0, as scalars otherwise.
    let vec = params.hd % 4u == 0u;
    if (vec) {
        if (lid < params.hd / 4u) {
            let d = 4u * lid;
            qv4[lid] = vec4<f32>(q[qb + d], q[qb + d + 1u], q[qb + d + 2u], q[qb + d + 3u]);
        }
    } else {
        for (var d = lid; d < params.hd; d += REDUCE_WG) {
            qv[d] = q[qb + d];
        }
    }
    workgroupBarrier();
    var m = -3.0e38;
    var l = 0.0;
    var acc = array<f32, 4>(0.0, 0.0, 0.0, 0.0);
    for (var j0 = start; j0 < end; j0 += REDUCE_WG) {
        let j = j0 + lid;
        var s = -3.0e38;
        if (j < end) {
            let kb = (kvh * params.max_seq + j) * params.hd;
            var dot = 0.0;
            if (vec) {
                var d4 = vec4<f32>(0.0);
                for (var d = 0u; d < params.hd / 4u; d++) {
                    d4 += qv4[d] * kcache4[kb / 4u + d];
                }
                dot = d4.x + d4.y + d4.z + d4.w;
            } else {
                for (var d = 0u; d < params.hd; d++) {
                    dot += qv[d] * kcache[kb + d];
                }
            }
            s = dot * params.scale;
            if (params.softcap > 0.0) {
                s = params.softcap * tanh(clamp(s / params.softcap, -15.0, 15.0));
            }
        }
        let bm = reduce_max(lid, s);
        let nm = max(m, bm);
        var e = 0.0;
        if (j < end) {
            e = exp(s - nm);
        }
        sc[lid] = e;
        let bs = reduce_sum(lid, e);
        let corr = exp(m - nm);
        l = l * corr + bs;
        let n = min(REDUCE_WG, end - j0);
        for (var r = 0u; r < 4u; r++) {
            let d = lid + r * REDUCE_WG;
            if (d < params.hd) {
                var a = acc[r] * corr;
                for (var jj = 0u; jj < n; jj++) {
                    a += sc[jj] * vcache[(kvh * params.max_seq + j0 + jj) * params.hd + d];
                }
                acc[r] = a;
            }
        }
        m = nm;
        workgroupBarrier();
    }
    let pb = ((t * params.heads + h) * params.splits + split) * (params.hd + 2u);
    if (lid == 0u) {
        parts[pb] = m;
        parts[pb + 1u] = l;
    }
    for (var r = 0u; r < 4u; r++) {
        let d = lid + r * REDUCE_WG;
        if (d < params.hd) {
            parts[pb + 2u + d] = acc[r];
        }
    }
}

@compute @workgroup_size(REDUCE_WG)
fn combine(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wg.x;
    let t = wg.y;
    let base = (t * params.heads + h) * params.splits;
    var gm = -3.0e38;
    for (var s = 0u; s < params.splits; s++) {
        gm = max(gm, parts[(base + s) * (params.hd + 2u)]);
    }
    var gl = 0.0;
    for (var s = 0u; s < params.splits; s++) {
        let b = (base + s) * (params.hd + 2u);
        gl += parts[b + 1u] * exp(parts[b] - gm);
    }
    for (var d = lid; d < params.hd; d += REDUCE_WG) {
        var o = 0.0;
        for (var s = 0u; s < params.splits; s++) {
            let b = (base + s) * (params.hd + 2u);
            o += parts[b + 2u + d] * exp(parts[b] - gm);
        }
        out[(t * params.heads + h) * params.hd + d] = o / gl;
    }
}
