// Attention over the cache prefix with an online softmax. partial: workgroup (split, head, t)
// covers keys [lo + split·kps, …) of query t (position past + t), causal and, when window > 0,
// limited to the last `window` positions; it writes (max, sum, acc[hd]). combine merges the
// splits: decode splits the keys across workgroups (split reduction), a prefill whose heads
// `prefill` cannot take runs one split per query. prefill: workgroup (block, head) computes
// the outputs of ATTENTION_PREFILL_QUERIES queries at once, flash-attention style: tiles of
// keys and values staged in shared memory once for all of them.
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
// The V cache again, as vectors (prefill).
@group(0) @binding(7) var<storage, read> vcache4: array<vec4<f32>>;

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

// prefill: PWG = 128 threads, PQ = 32 queries (t0 = 32 · block ..) of head h, 4 threads
// per query; thread `sub` of a query holds the vec4s 4i + sub (i < 8) of its q and of its output
// accumulator in registers. Per tile of PK = 16 keys (from the window start of the block's
// first query to its last query), the workgroup stages K and V in shared memory (loaded into
// registers during the previous tile), each thread writes its partial q·k of every key, and each
// query's threads then combine the 4 partials, mask (causal, window), soft-cap and fold the tile
// into their online softmax.
const PQ: u32 = ATTENTION_PREFILL_QUERIES;
const PWG: u32 = ATTENTION_PREFILL_WG;
const PK: u32 = 16u;
const PMAX4: u32 = ATTENTION_PREFILL_MAX_HD / 4u;
const_assert PQ * 4u == PWG && PMAX4 == 32u && PK * PMAX4 == 4u * PWG;
var<workgroup> pk: array<vec4<f32>, PK * PMAX4>;
var<workgroup> pv: array<vec4<f32>, PK * PMAX4>;
var<workgroup> ps: array<f32, PQ * PK * 4u>;

// A thread's 8 vec4s of a head (vec4 4i + sub in member i): named members, not an array, so
// that they stay in registers (a function-local array indexed in a loop can be put in local
// memory).
struct V8 {
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
    v4: vec4<f32>,
    v5: vec4<f32>,
    v6: vec4<f32>,
    v7: vec4<f32>,
}

// A tile of keys and values as loaded by one thread: elements lid + PWG i (i < 4) of the
// tile's PK · hd / 4 vec4s, held in registers while the previous tile is used.
struct KvTile {
    k0: vec4<f32>,
    k1: vec4<f32>,
    k2: vec4<f32>,
    k3: vec4<f32>,
    v0: vec4<f32>,
    v1: vec4<f32>,
    v2: vec4<f32>,
    v3: vec4<f32>,
}

// One element of a tile: the key's and the value's vec4.
struct Kv1 {
    k: vec4<f32>,
    v: vec4<f32>,
}

fn kv_load_one(e: u32, j0: u32, last: u32, kvh: u32, hd4: u32) -> Kv1 {
    var r: Kv1;
    let jj = e / hd4;
    if (e < PK * hd4 && j0 + jj <= last) {
        let b = (kvh * params.max_seq + j0 + jj) * hd4 + e % hd4;
        r.k = kcache4[b];
        r.v = vcache4[b];
    }
    return r;
}

// The tile of keys j0 .. (none past `last`: those stay zero).
fn kv_load(lid: u32, j0: u32, last: u32, kvh: u32, hd4: u32) -> KvTile {
    var r: KvTile;
    let e0 = kv_load_one(lid + 0u * PWG, j0, last, kvh, hd4);
    r.k0 = e0.k;
    r.v0 = e0.v;
    let e1 = kv_load_one(lid + 1u * PWG, j0, last, kvh, hd4);
    r.k1 = e1.k;
    r.v1 = e1.v;
    let e2 = kv_load_one(lid + 2u * PWG, j0, last, kvh, hd4);
    r.k2 = e2.k;
    r.v2 = e2.v;
    let e3 = kv_load_one(lid + 3u * PWG, j0, last, kvh, hd4);
    r.k3 = e3.k;
    r.v3 = e3.v;
    return r;
}

fn kv_stash_one(k: vec4<f32>, v: vec4<f32>, e: u32, hd4: u32) {
    if (e < PK * hd4) {
        let at = (e / hd4) * PMAX4 + e % hd4;
        pk[at] = k;
        pv[at] = v;
    }
}

fn kv_stash(kv: KvTile, lid: u32, hd4: u32) {
    kv_stash_one(kv.k0, kv.v0, lid + 0u * PWG, hd4);
    kv_stash_one(kv.k1, kv.v1, lid + 1u * PWG, hd4);
    kv_stash_one(kv.k2, kv.v2, lid + 2u * PWG, hd4);
    kv_stash_one(kv.k3, kv.v3, lid + 3u * PWG, hd4);
}

// Row t of q, this thread's vec4s (zero past hd).
fn q_v8(qb: u32, sub: u32, hd4: u32) -> V8 {
    var r: V8;
    if (sub < hd4) {
        let d = qb + 4u * sub;
        r.v0 = vec4<f32>(q[d], q[d + 1u], q[d + 2u], q[d + 3u]);
    }
    if (4u + sub < hd4) {
        let d = qb + 4u * (4u + sub);
        r.v1 = vec4<f32>(q[d], q[d + 1u], q[d + 2u], q[d + 3u]);
    }
    if (8u + sub < hd4) {
        let d = qb + 4u * (8u + sub);
        r.v2 = vec4<f32>(q[d], q[d + 1u], q[d + 2u], q[d + 3u]);
    }
    if (12u + sub < hd4) {
        let d = qb + 4u * (12u + sub);
        r.v3 = vec4<f32>(q[d], q[d + 1u], q[d + 2u], q[d + 3u]);
    }
    if (16u + sub < hd4) {
        let d = qb + 4u * (16u + sub);
        r.v4 = vec4<f32>(q[d], q[d + 1u], q[d + 2u], q[d + 3u]);
    }
    if (20u + sub < hd4) {
        let d = qb + 4u * (20u + sub);
        r.v5 = vec4<f32>(q[d], q[d + 1u], q[d + 2u], q[d + 3u]);
    }
    if (24u + sub < hd4) {
        let d = qb + 4u * (24u + sub);
        r.v6 = vec4<f32>(q[d], q[d + 1u], q[d + 2u], q[d + 3u]);
    }
    if (28u + sub < hd4) {
        let d = qb + 4u * (28u + sub);
        r.v7 = vec4<f32>(q[d], q[d + 1u], q[d + 2u], q[d + 3u]);
    }
    return r;
}

// This thread's part of q · k for key jj of the staged tile.
fn qk_part(q: V8, jj: u32, sub: u32, hd4: u32) -> f32 {
    let b = jj * PMAX4 + sub;
    var d = vec4<f32>(0.0);
    if (sub < hd4) {
        d += q.v0 * pk[b];
    }
    if (4u + sub < hd4) {
        d += q.v1 * pk[b + 4u];
    }
    if (8u + sub < hd4) {
        d += q.v2 * pk[b + 8u];
    }
    if (12u + sub < hd4) {
        d += q.v3 * pk[b + 12u];
    }
    if (16u + sub < hd4) {
        d += q.v4 * pk[b + 16u];
    }
    if (20u + sub < hd4) {
        d += q.v5 * pk[b + 20u];
    }
    if (24u + sub < hd4) {
        d += q.v6 * pk[b + 24u];
    }
    if (28u + sub < hd4) {
        d += q.v7 * pk[b + 28u];
    }
    return d.x + d.y + d.z + d.w;
}

// r + e · (this thread's vec4s of value jj of the staged tile).
fn add_value(a: V8, e: f32, jj: u32, sub: u32, hd4: u32) -> V8 {
    var r = a;
    let b = jj * PMAX4 + sub;
    if (sub < hd4) {
        r.v0 += e * pv[b];
    }
    if (4u + sub < hd4) {
        r.v1 += e * pv[b + 4u];
    }
    if (8u + sub < hd4) {
        r.v2 += e * pv[b + 8u];
    }
    if (12u + sub < hd4) {
        r.v3 += e * pv[b + 12u];
    }
    if (16u + sub < hd4) {
        r.v4 += e * pv[b + 16u];
    }
    if (20u + sub < hd4) {
        r.v5 += e * pv[b + 20u];
    }
    if (24u + sub < hd4) {
        r.v6 += e * pv[b + 24u];
    }
    if (28u + sub < hd4) {
        r.v7 += e * pv[b + 28u];
    }
    return r;
}

fn scaled(a: V8, c: f32) -> V8 {
    var r = a;
    r.v0 *= c;
    r.v1 *= c;
    r.v2 *= c;
    r.v3 *= c;
    r.v4 *= c;
    r.v5 *= c;
    r.v6 *= c;
    r.v7 *= c;
    return r;
}

// Key j's score of this thread's query from the staged partials (masked: -3e38).
fn tile_score(ql: u32, jj: u32, j: u32, qi: u32, qlo: u32) -> f32 {
    let b = (ql * PK + jj) * 4u;
    var s = (ps[b] + ps[b + 1u] + ps[b + 2u] + ps[b + 3u]) * params.scale;
    if (params.softcap > 0.0) {
        s = params.softcap * tanh(clamp(s / params.softcap, -15.0, 15.0));
    }
    return select(-3.0e38, s, j <= qi && j >= qlo);
}

// out[ob + 4 (4i + sub) ..] = a's vec4 i · f (below hd).
fn store_v8(a: V8, ob: u32, sub: u32, hd4: u32, f: f32) {
    if (sub < hd4) {
        let d = ob + 4u * sub;
        out[d] = a.v0.x * f;
        out[d + 1u] = a.v0.y * f;
        out[d + 2u] = a.v0.z * f;
        out[d + 3u] = a.v0.w * f;
    }
    if (4u + sub < hd4) {
        let d = ob + 4u * (4u + sub);
        out[d] = a.v1.x * f;
        out[d + 1u] = a.v1.y * f;
        out[d + 2u] = a.v1.z * f;
        out[d + 3u] = a.v1.w * f;
    }
    if (8u + sub < hd4) {
        let d = ob + 4u * (8u + sub);
        out[d] = a.v2.x * f;
        out[d + 1u] = a.v2.y * f;
        out[d + 2u] = a.v2.z * f;
        out[d + 3u] = a.v2.w * f;
    }
    if (12u + sub < hd4) {
        let d = ob + 4u * (12u + sub);
        out[d] = a.v3.x * f;
        out[d + 1u] = a.v3.y * f;
        out[d + 2u] = a.v3.z * f;
        out[d + 3u] = a.v3.w * f;
    }
    if (16u + sub < hd4) {
        let d = ob + 4u * (16u + sub);
        out[d] = a.v4.x * f;
        out[d + 1u] = a.v4.y * f;
        out[d + 2u] = a.v4.z * f;
        out[d + 3u] = a.v4.w * f;
    }
    if (20u + sub < hd4) {
        let d = ob + 4u * (20u + sub);
        out[d] = a.v5.x * f;
        out[d + 1u] = a.v5.y * f;
        out[d + 2u] = a.v5.z * f;
        out[d + 3u] = a.v5.w * f;
    }
    if (24u + sub < hd4) {
        let d = ob + 4u * (24u + sub);
        out[d] = a.v6.x * f;
        out[d + 1u] = a.v6.y * f;
        out[d + 2u] = a.v6.z * f;
        out[d + 3u] = a.v6.w * f;
    }
    if (28u + sub < hd4) {
        let d = ob + 4u * (28u + sub);
        out[d] = a.v7.x * f;
        out[d + 1u] = a.v7.y * f;
        out[d + 2u] = a.v7.z * f;
        out[d + 3u] = a.v7.w * f;
    }
}

@compute @workgroup_size(PWG)
fn prefill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wg.y;
    let ql = lid / 4u;
    let sub = lid % 4u;
    let t0 = wg.x * PQ;
    let t = t0 + ql;
    // Threads past the last query repeat it (their output is not stored).
    let tq = min(t, params.seq - 1u);
    let qi = params.past + tq;
    let hd4 = params.hd / 4u;
    let kvh = h / (params.heads / params.kv_heads);
    let qr = q_v8((tq * params.heads + h) * params.hd, sub, hd4);
    var acc: V8;
    var qlo = 0u;
    if (params.window > 0u && qi + 1u > params.window) {
        qlo = qi + 1u - params.window;
    }
    // The block's keys: uniform over the workgroup.
    let first = params.past + t0;
    let last = params.past + min(t0 + PQ, params.seq) - 1u;
    var lo = 0u;
    if (params.window > 0u && first + 1u > params.window) {
        lo = first + 1u - params.window;
    }
    var m = -3.0e38;
    var l = 0.0;
    // The next tile's keys and values are loaded into registers before this tile is used, so
    // that their latency is hidden behind it.
    var kv = kv_load(lid, lo, last, kvh, hd4);
    for (var j0 = lo; j0 <= last; j0 += PK) {
        kv_stash(kv, lid, hd4);
        workgroupBarrier();
        if (j0 + PK <= last) {
            kv = kv_load(lid, j0 + PK, last, kvh, hd4);
        }
        for (var jj = 0u; jj < PK; jj++) {
            ps[(ql * PK + jj) * 4u + sub] = qk_part(qr, jj, sub, hd4);
        }
        workgroupBarrier();
        var bm = -3.0e38;
        for (var jj = 0u; jj < PK; jj++) {
            bm = max(bm, tile_score(ql, jj, j0 + jj, qi, qlo));
        }
        let nm = max(m, bm);
        let corr = exp(m - nm);
        l *= corr;
        acc = scaled(acc, corr);
        for (var jj = 0u; jj < PK; jj++) {
            let j = j0 + jj;
            let e = select(0.0, exp(tile_score(ql, jj, j, qi, qlo) - nm), j <= qi && j >= qlo);
            l += e;
            acc = add_value(acc, e, jj, sub, hd4);
        }
        m = nm;
        workgroupBarrier();
    }
    if (t < params.seq) {
        store_v8(acc, (t * params.heads + h) * params.hd, sub, hd4, 1.0 / l);
    }
}
