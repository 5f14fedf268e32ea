// Attention over the cache prefix with an online softmax. partial: workgroup (split, head, t)
// covers keys [lo + split·kps, …) of query t (position past + t), causal and, when window > 0,
// limited to the last `window` positions; it writes (max, sum, acc[hd]), or with one split
// the output itself. combine merges the splits: decode splits the keys across workgroups
// (split reduction; combine is dispatched only where there is more than one), a prefill whose
// heads `prefill` cannot take runs one split per query (and no combine). prefill: workgroup (block, head) computes
// the outputs of ATTENTION_PREFILL_QUERIES queries at once, flash-attention style: tiles of
// keys and values staged in shared memory once for all of them.
// Grouped-query heads: head h reads kv head h / (heads / kv_heads). attention_io.wgsl (Params,
// q, out, the caches as vectors, window_start) comes before.

// The caches as scalars (the K cache again; heads of any size).
@group(0) @binding(2) var<storage, read> kcache: array<kv_t>;
@group(0) @binding(3) var<storage, read> vcache: array<kv_t>;
@group(0) @binding(4) var<storage, read_write> parts: array<f32>;

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
    let start = window_start(qi) + split * params.kps;
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
                    d4 += qv4[d] * vec4<f32>(kcache4[kb / 4u + d]);
                }
                dot = d4.x + d4.y + d4.z + d4.w;
            } else {
                for (var d = 0u; d < params.hd; d++) {
                    dot += qv[d] * f32(kcache[kb + d]);
                }
            }
            s = soft_cap(dot * params.scale);
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
                    a += sc[jj] * f32(vcache[(kvh * params.max_seq + j0 + jj) * params.hd + d]);
                }
                acc[r] = a;
            }
        }
        m = nm;
        workgroupBarrier();
    }
    // One split: the output itself (combine is not dispatched).
    if (params.splits == 1u) {
        let ob = (t * params.heads + h) * params.hd;
        for (var r = 0u; r < 4u; r++) {
            let d = lid + r * REDUCE_WG;
            if (d < params.hd) {
                out[ob + d] = acc[r] / l;
            }
        }
        return;
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
// per query; thread `sub` of a query holds the vec4s 4i + sub (i < PV) of its q and of its output
// accumulator in registers. Per tile of PK = 8 keys (from the window start of the block's
// first query to its last query), the workgroup stages K and V in shared memory (loaded into
// registers during the previous tile), each thread writes its partial q·k of every key, and each
// query's threads then combine the 4 partials, mask (causal, window), soft-cap and fold the tile
// into their online softmax.
const PQ: u32 = ATTENTION_PREFILL_QUERIES;
const PWG: u32 = ATTENTION_PREFILL_WG;
// Keys per tile: 8 measured faster than 16 and 32 (PERF.md).
const PK: u32 = 8u;
const PMAX4: u32 = ATTENTION_PREFILL_MAX_HD / 4u;
// A thread's vec4s of a head, and its elements of a K/V tile.
const PV: u32 = PMAX4 / 4u;
const PKV: u32 = PK * PMAX4 / PWG;
const_assert PQ * 4u == PWG && PMAX4 == 32u && PK * PMAX4 == PKV * PWG;
var<workgroup> pk: array<vec4<f32>, PK * PMAX4>;
var<workgroup> pv: array<vec4<f32>, PK * PMAX4>;
var<workgroup> ps: array<f32, PQ * PK * 4u>;

// A tile of keys and values as loaded by one thread: elements lid + PWG i (i < PKV) of the
// tile's PK · hd / 4 vec4s, held in registers while the previous tile is used.
struct KvTile {
    k: array<vec4<f32>, PKV>,
    v: array<vec4<f32>, PKV>,
}

// The tile of keys j0 .. (none past `last`: those stay zero).
fn kv_load(lid: u32, j0: u32, last: u32, kvh: u32, hd4: u32) -> KvTile {
    var r: KvTile;
    for (var i = 0u; i < PKV; i++) {
        let e = lid + i * PWG;
        let jj = e / hd4;
        if (e < PK * hd4 && j0 + jj <= last) {
            let b = (kvh * params.max_seq + j0 + jj) * hd4 + e % hd4;
            r.k[i] = vec4<f32>(kcache4[b]);
            r.v[i] = vec4<f32>(vcache4[b]);
        }
    }
    return r;
}

fn kv_stash(kv: KvTile, lid: u32, hd4: u32) {
    for (var i = 0u; i < PKV; i++) {
        let e = lid + i * PWG;
        if (e < PK * hd4) {
            let at = (e / hd4) * PMAX4 + e % hd4;
            pk[at] = kv.k[i];
            pv[at] = kv.v[i];
        }
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
    let qlo = window_start(qi);
    let hd4 = params.hd / 4u;
    let kvh = h / (params.heads / params.kv_heads);
    let qb = (tq * params.heads + h) * params.hd;
    var qr: array<vec4<f32>, PV>;
    var acc: array<vec4<f32>, PV>;
    for (var i = 0u; i < PV; i++) {
        let v = 4u * i + sub;
        if (v < hd4) {
            let d = qb + 4u * v;
            qr[i] = vec4<f32>(q[d], q[d + 1u], q[d + 2u], q[d + 3u]);
        }
    }
    // The block's keys: uniform over the workgroup.
    let lo = window_start(params.past + t0);
    let last = params.past + min(t0 + PQ, params.seq) - 1u;
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
            var d4 = vec4<f32>(0.0);
            for (var i = 0u; i < PV; i++) {
                let v = 4u * i + sub;
                if (v < hd4) {
                    d4 += qr[i] * pk[jj * PMAX4 + v];
                }
            }
            ps[(ql * PK + jj) * 4u + sub] = d4.x + d4.y + d4.z + d4.w;
        }
        workgroupBarrier();
        // Each key's score once (masked: -3e38), then the tile folded into the softmax.
        var sc: array<f32, PK>;
        var bm = -3.0e38;
        for (var jj = 0u; jj < PK; jj++) {
            let j = j0 + jj;
            let b = (ql * PK + jj) * 4u;
            let s = soft_cap((ps[b] + ps[b + 1u] + ps[b + 2u] + ps[b + 3u]) * params.scale);
            sc[jj] = select(-3.0e38, s, j <= qi && j >= qlo);
            bm = max(bm, sc[jj]);
        }
        let nm = max(m, bm);
        let corr = exp(m - nm);
        l *= corr;
        for (var i = 0u; i < PV; i++) {
            acc[i] *= corr;
        }
        for (var jj = 0u; jj < PK; jj++) {
            let j = j0 + jj;
            let e = select(0.0, exp(sc[jj] - nm), j <= qi && j >= qlo);
            l += e;
            for (var i = 0u; i < PV; i++) {
                let v = 4u * i + sub;
                if (v < hd4) {
                    acc[i] += e * pv[jj * PMAX4 + v];
                }
            }
        }
        m = nm;
        workgroupBarrier();
    }
    if (t < params.seq) {
        let ob = (t * params.heads + h) * params.hd;
        for (var i = 0u; i < PV; i++) {
            let v = 4u * i + sub;
            if (v < hd4) {
                let o = acc[i] / l;
                let d = ob + 4u * v;
                out[d] = o.x;
                out[d + 1u] = o.y;
                out[d + 2u] = o.z;
                out[d + 3u] = o.w;
            }
        }
    }
}

// decode, decode_wide: the whole attention of a one-token step in one workgroup per head, where
// the keys it attends to (from the window start to the query) number at most DK; the plan then
// dispatches neither `partial` nor `combine`. `decode` has DWG threads (for few keys), and
// `decode_wide` DWG_WIDE (more keys per workgroup in flight). Each key's score is computed by
// tpk threads (ATTENTION_DECODE_TPK, ATTENTION_DECODE_WIDE_TPK), in passes of wgs / tpk keys;
// the workgroup reduces their maximum and the sum of the exponentials; then
// wgs / (hd / 4) slices of the keys (thread (slice, quad): every slices-th key, dims 4 quad .. +
// 3, one vector load each) accumulate the weighted values, added pairwise across slices through
// shared memory. Needs hd % 4 == 0.
const DWG: u32 = ATTENTION_DECODE_WG;
const DWG_WIDE: u32 = ATTENTION_DECODE_WIDE_WG;
const DK: u32 = ATTENTION_DECODE_KEYS;
const_assert DWG >= MAX_HD / 4u && (DWG & (DWG - 1u)) == 0u && DK % DWG == 0u;
const_assert DWG_WIDE >= DWG && (DWG_WIDE & (DWG_WIDE - 1u)) == 0u;
const_assert DWG % ATTENTION_DECODE_TPK == 0u && (ATTENTION_DECODE_TPK & (ATTENTION_DECODE_TPK - 1u)) == 0u;
const_assert DWG_WIDE % ATTENTION_DECODE_WIDE_TPK == 0u && (ATTENTION_DECODE_WIDE_TPK & (ATTENTION_DECODE_WIDE_TPK - 1u)) == 0u;
// Each key's score, then its weight exp(score - max).
var<workgroup> dsc: array<f32, DK>;
var<workgroup> dred: array<f32, DWG_WIDE>;
var<workgroup> dacc: array<vec4<f32>, DWG_WIDE>;

// The maximum (take_max) or the sum of v over the wgs threads; every thread must call it.
fn d_reduce(lid: u32, wgs: u32, v: f32, take_max: bool) -> f32 {
    dred[lid] = v;
    workgroupBarrier();
    for (var s = wgs / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            if (take_max) {
                dred[lid] = max(dred[lid], dred[lid + s]);
            } else {
                dred[lid] += dred[lid + s];
            }
        }
        workgroupBarrier();
    }
    let r = dred[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(DWG)
fn decode(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    decode_head(wg.x, lid, DWG, ATTENTION_DECODE_TPK);
}

@compute @workgroup_size(DWG_WIDE)
fn decode_wide(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    decode_head(wg.x, lid, DWG_WIDE, ATTENTION_DECODE_WIDE_TPK);
}

// Head h's attention by the wgs threads of a workgroup (lid < wgs ≤ DWG_WIDE), each key's score
// by tpk of them (a power of 2 dividing wgs): thread (key, part) adds the dims 4 (part + tpk i).
fn decode_head(h: u32, lid: u32, wgs: u32, tpk: u32) {
    let qi = params.past;
    let start = window_start(qi);
    // At most DK keys (the plan's condition; a wrong one loses keys, never reads past them).
    let n = min(qi + 1u - start, DK);
    let kvh = h / (params.heads / params.kv_heads);
    let hd4 = params.hd / 4u;
    let qb = h * params.hd;
    if (lid < hd4) {
        let d = 4u * lid;
        qv4[lid] = vec4<f32>(q[qb + d], q[qb + d + 1u], q[qb + d + 2u], q[qb + d + 3u]);
    }
    workgroupBarrier();
    var mx = -3.0e38;
    let part = lid % tpk;
    let kl = lid / tpk;
    // Passes of wgs / tpk keys; the same count for every thread (barriers inside).
    for (var j0 = 0u; j0 < n; j0 += wgs / tpk) {
        let j = j0 + kl;
        var d4 = vec4<f32>(0.0);
        if (j < n) {
            // 8 loads issued before any is used, into 4 accumulators; then the rest.
            let kb4 = (kvh * params.max_seq + start + j) * hd4;
            var d = part;
            var e4 = vec4<f32>(0.0);
            var f4 = vec4<f32>(0.0);
            var g4 = vec4<f32>(0.0);
            for (; d + 7u * tpk < hd4; d += 8u * tpk) {
                let k0 = kcache4[kb4 + d];
                let k1 = kcache4[kb4 + d + tpk];
                let k2 = kcache4[kb4 + d + 2u * tpk];
                let k3 = kcache4[kb4 + d + 3u * tpk];
                let k4 = kcache4[kb4 + d + 4u * tpk];
                let k5 = kcache4[kb4 + d + 5u * tpk];
                let k6 = kcache4[kb4 + d + 6u * tpk];
                let k7 = kcache4[kb4 + d + 7u * tpk];
                d4 += qv4[d] * vec4<f32>(k0) + qv4[d + 4u * tpk] * vec4<f32>(k4);
                e4 += qv4[d + tpk] * vec4<f32>(k1) + qv4[d + 5u * tpk] * vec4<f32>(k5);
                f4 += qv4[d + 2u * tpk] * vec4<f32>(k2) + qv4[d + 6u * tpk] * vec4<f32>(k6);
                g4 += qv4[d + 3u * tpk] * vec4<f32>(k3) + qv4[d + 7u * tpk] * vec4<f32>(k7);
            }
            d4 += e4 + f4 + g4;
            for (; d < hd4; d += tpk) {
                d4 += qv4[d] * vec4<f32>(kcache4[kb4 + d]);
            }
        }
        var s = d4.x + d4.y + d4.z + d4.w;
        if (tpk > 1u) {
            dred[lid] = s;
            workgroupBarrier();
            s = 0.0;
            for (var p = 0u; p < tpk; p++) {
                s += dred[kl * tpk + p];
            }
            workgroupBarrier();
        }
        if (part == 0u && j < n) {
            s = soft_cap(s * params.scale);
            dsc[j] = s;
            mx = max(mx, s);
        }
    }
    let m = d_reduce(lid, wgs, mx, true);
    var sum = 0.0;
    for (var j = lid; j < n; j += wgs) {
        let e = exp(dsc[j] - m);
        dsc[j] = e;
        sum += e;
    }
    let l = d_reduce(lid, wgs, sum, false);
    let slices = wgs / hd4;
    let quad = lid % hd4;
    let slice = lid / hd4;
    var a = vec4<f32>(0.0);
    if (slice < slices) {
        // 4 loads issued before any is used, into 4 accumulators; then the rest.
        let vb = (kvh * params.max_seq + start) * hd4 + quad;
        var j = slice;
        var b = vec4<f32>(0.0);
        var c = vec4<f32>(0.0);
        var e = vec4<f32>(0.0);
        for (; j + 3u * slices < n; j += 4u * slices) {
            let v0 = vcache4[vb + j * hd4];
            let v1 = vcache4[vb + (j + slices) * hd4];
            let v2 = vcache4[vb + (j + 2u * slices) * hd4];
            let v3 = vcache4[vb + (j + 3u * slices) * hd4];
            a += dsc[j] * vec4<f32>(v0);
            b += dsc[j + slices] * vec4<f32>(v1);
            c += dsc[j + 2u * slices] * vec4<f32>(v2);
            e += dsc[j + 3u * slices] * vec4<f32>(v3);
        }
        a += b + c + e;
        for (; j < n; j += slices) {
            a += dsc[j] * vec4<f32>(vcache4[vb + j * hd4]);
        }
    }
    dacc[lid] = a;
    workgroupBarrier();
    // Slices added pairwise: the upper half of the remaining ones onto the lower.
    for (var cnt = slices; cnt > 1u; cnt = (cnt + 1u) / 2u) {
        let half = (cnt + 1u) / 2u;
        if (slice + half < cnt) {
            a += dacc[lid + half * hd4];
            dacc[lid] = a;
        }
        workgroupBarrier();
    }
    if (slice == 0u) {
        let ob = h * params.hd + 4u * quad;
        out[ob] = a.x / l;
        out[ob + 1u] = a.y / l;
        out[ob + 2u] = a.z / l;
        out[ob + 3u] = a.w / l;
    }
}
