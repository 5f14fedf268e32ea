// Prefill attention on cooperative matrices (tensor cores): f16 operands, f32 accumulators; the
// same parameters, bindings and output as attention::prefill (attention.wgsl), for heads of
// hd ≤ ATTENTION_COOP_MAX_HD dimensions, a multiple of 16.
//
// prefill: a workgroup of 4 subgroups computes AQ = 64 queries (t0 = 64 · block ..) of head h,
// subgroup s the 16 queries t0 + 16 s .. as the rows of its 16 × 16 tiles, and then those of a
// second block (`attend`). Its q is staged once as f16 and held in registers as up to 8 A tiles
// (16 queries × 16 dimensions). The keys from the window start of the block's first query to
// its last query are taken in tiles of AK = 32, staged in shared memory as f16 (rows of hd + 8
// halves), in two passes:
//   1. S = q·kᵀ (2 × hd/16 multiply-adds per subgroup and tile), S staged in shared memory,
//      and each query's running maximum m and sum l of exp(s - m);
//   2. S again, P = exp(s - m) / l written as f16, and O += P·V (V staged beside K), so that
//      the output tiles are never rescaled (a cooperative matrix's rows cannot be scaled).
// The softmax of a tile takes every lane: lane r + 16 c of a subgroup the keys 16 c .. 16 c + 15
// of query r, the two halves' maxima and sums exchanged through shared memory. Masked keys (past
// the query, before its window) get P = 0; keys past the block's last query are staged as zeros.
// Each tile of keys (and values) is loaded into registers while the previous one is used. The
// output tiles are staged through shared memory and stored as f32 (`prefill`) or f16
// (`prefill_h`). The tiles of q and of the
// output are named variables under conditions on `params` alone: indices the compiler sees as
// constants (the first version, with arrays of them and the softmax on half the lanes, took 1.4x
// as long; PERF.md), and uniform control flow for the cooperative operations (a condition on a
// loop counter is not uniform to naga).
//
// The plan runs it where the GEMM runs on cooperative matrices (the same 16 × 16 × 16 f16 →
// f32 configuration, subgroups of exactly 32, and enough workgroup memory; Gpu::coop_gemm).
// No subgroup operations (see matmul_coop.wgsl).

// attention_io.wgsl (Params, the bindings, window_start) comes before.

// The output in f16 (`prefill_h`; `prefill` writes `out`).
@group(0) @binding(8) var<storage, read_write> out_h: array<f16>;
// The K and V caches in 16-byte load units of KVL values (`kvl_t`, from the prelude: 8 f16 as
// vec4<u32>, or 4 f32), instead of attention_io.wgsl's vec4<kv_t> (8-byte loads of f16).
@group(0) @binding(9) var<storage, read> kcache_l: array<kvl_t>;
@group(0) @binding(10) var<storage, read> vcache_l: array<kvl_t>;

const AQ: u32 = ATTENTION_COOP_QUERIES;
const AWG: u32 = ATTENTION_COOP_WG;
const AK: u32 = ATTENTION_COOP_KEYS;
const AMAX4: u32 = ATTENTION_COOP_MAX_HD / 4u;
// Row stride of the f16 tiles in vec4<f16>: hd + 8 halves at most (a 16-byte multiple, as a
// cooperative load needs, padded so that rows start in different banks).
const AS4: u32 = AMAX4 + 2u;
// Row stride of P: AK + 8 halves.
const PS4: u32 = AK / 4u + 2u;
// V's tile after K's in `tiles`.
const VOFF: u32 = AK * AS4;
const_assert AWG == 128u && AQ == 16u * (AWG / 32u) && AK == 32u && AMAX4 == 32u && 2u * AK <= AQ;
// q staged at the start ([query][dim / 4]), then K ([key][dim / 4]) and V (from VOFF).
var<workgroup> tiles: array<vec4<f16>, AQ * AS4>;
// P of each subgroup's queries: [query][key / 4].
var<workgroup> pt: array<vec4<f16>, AQ * PS4>;
// Per subgroup: S as two 16 × 16 tiles (keys 0-15, 16-31), column-major; at the end one output
// tile.
var<workgroup> st: array<f32, (AWG / 32u) * 512u>;
// Each lane's maximum and sum over its half of a tile, for the lane holding the other half.
var<workgroup> xmax: array<f32, AWG>;
var<workgroup> xsum: array<f32, AWG>;

// Load units per key at the widest head (KU), and per thread and tile (KVE): a thread loads
// elements lid + AWG i (i < KVE) of the tile's AK × KU units, held in registers while the
// previous tile is used.
const KU: u32 = AMAX4 * 4u / KVL;
const KVE: u32 = AK * KU / AWG;
const_assert KVL % 4u == 0u && KVE >= 1u;
struct KvRegs {
    k: array<kvl_t, KVE>,
    v: array<kvl_t, KVE>,
}

// Keys j0 .. j0 + AK - 1 (zeros past `last` and past hd) of kv head kvh, with `with_v` their
// values; hdl = hd / KVL units per key (hd is a multiple of 16).
fn kv_fetch(lid: u32, j0: u32, last: u32, kvh: u32, hdl: u32, with_v: bool) -> KvRegs {
    var g: KvRegs;
    for (var i = 0u; i < KVE; i++) {
        let e = lid + i * AWG;
        let jj = e / KU;
        let du = e % KU;
        if (du < hdl && j0 + jj <= last) {
            let b = (kvh * params.max_seq + j0 + jj) * hdl + du;
            g.k[i] = kcache_l[b];
            if (with_v) {
                g.v[i] = vcache_l[b];
            }
        }
    }
    return g;
}

// Writes a fetched tile into `tiles` as f16.
fn kv_stash(g: KvRegs, lid: u32, hdl: u32, with_v: bool) {
    for (var i = 0u; i < KVE; i++) {
        let e = lid + i * AWG;
        let jj = e / KU;
        let du = e % KU;
        if (du < hdl) {
            let at = jj * AS4 + du * (KVL / 4u);
            for (var p = 0u; p < KVL / 4u; p++) {
                tiles[at + p] = kv_part(g.k[i], p);
                if (with_v) {
                    tiles[VOFF + at + p] = kv_part(g.v[i], p);
                }
            }
        }
    }
}

// A tile of q (rows r0 .. r0 + 15 of the staged queries, dimensions 16 i ..).
fn q_tile(r0: u32, i: u32) -> coop_mat16x16<f16, A> {
    return coopLoadT<coop_mat16x16<f16, A>>(&tiles[r0 * AS4 + 4u * i], AS4);
}

// B tile of kᵀ: dimensions 16 i .. of keys 16 kb .. of the staged K.
fn k_tile(kb: u32, i: u32) -> coop_mat16x16<f16, B> {
    return coopLoad<coop_mat16x16<f16, B>>(&tiles[kb * 16u * AS4 + 4u * i], AS4);
}

// B tile of V: keys 16 kb .., dimensions 16 i ...
fn v_tile(kb: u32, i: u32) -> coop_mat16x16<f16, B> {
    return coopLoadT<coop_mat16x16<f16, B>>(&tiles[VOFF + kb * 16u * AS4 + 4u * i], AS4);
}

// S tile s (keys 16 kb ..) plus q tile a (dimensions 16 i ..) times the staged keys.
fn qk(a: coop_mat16x16<f16, A>, kb: u32, i: u32, s: coop_mat16x16<f32, C>) -> coop_mat16x16<f32, C> {
    return coopMultiplyAdd(a, k_tile(kb, i), s);
}

// Subgroup sg's scores of keys 16 kb .. against the staged keys, into its S tile kb in `st`
// (column-major: query r, key n at sg·512 + kb·256 + n·16 + r). Every thread calls it.
fn scores(sg: u32, kb: u32, q0: coop_mat16x16<f16, A>, q1: coop_mat16x16<f16, A>,
    q2: coop_mat16x16<f16, A>, q3: coop_mat16x16<f16, A>, q4: coop_mat16x16<f16, A>,
    q5: coop_mat16x16<f16, A>, q6: coop_mat16x16<f16, A>, q7: coop_mat16x16<f16, A>) {
    let nd = params.hd / 16u;
    var s = coop_mat16x16<f32, C>();
    if (nd > 0u) { s = qk(q0, kb, 0u, s); }
    if (nd > 1u) { s = qk(q1, kb, 1u, s); }
    if (nd > 2u) { s = qk(q2, kb, 2u, s); }
    if (nd > 3u) { s = qk(q3, kb, 3u, s); }
    if (nd > 4u) { s = qk(q4, kb, 4u, s); }
    if (nd > 5u) { s = qk(q5, kb, 5u, s); }
    if (nd > 6u) { s = qk(q6, kb, 6u, s); }
    if (nd > 7u) { s = qk(q7, kb, 7u, s); }
    coopStore(s, &st[sg * 512u + kb * 256u], 16u);
}

// Query r's (scaled, soft-capped) score of key 16 c + n of the staged tile, at position j, or
// -3e38 where masked.
fn score_at(sg: u32, r: u32, c: u32, n: u32, j: u32, qi: u32, qlo: u32) -> f32 {
    let s = soft_cap(st[sg * 512u + c * 256u + n * 16u + r] * params.scale);
    return select(-3.0e38, s, j <= qi && j >= qlo);
}

// Output tile o plus P (keys 0-15: p0, 16-31: p1) times the staged values' dimensions 16 i ...
fn pv(p0: coop_mat16x16<f16, A>, p1: coop_mat16x16<f16, A>, i: u32, o: coop_mat16x16<f32, C>) -> coop_mat16x16<f32, C> {
    return coopMultiplyAdd(p1, v_tile(1u, i), coopMultiplyAdd(p0, v_tile(0u, i), o));
}

// Output tile i of subgroup sg (its 16 queries, dimensions 16 i ..) to `out` (f32) or, with
// `half`, to `out_h` (f16) through its staging tile; every thread calls it.
fn put_out(o: coop_mat16x16<f32, C>, i: u32, sg: u32, lane: u32, t0: u32, h: u32, half: bool) {
    coopStore(o, &st[sg * 512u], 16u);
    workgroupBarrier();
    for (var e = lane; e < 256u; e += 32u) {
        let r = e % 16u;
        let t = t0 + sg * 16u + r;
        if (t < params.seq) {
            let at = (t * params.heads + h) * params.hd + 16u * i + e / 16u;
            let v = st[sg * 512u + e];
            if (half) {
                out_h[at] = f16(clamp(v, -65504.0, 65504.0));
            } else {
                out[at] = v;
            }
        }
    }
    workgroupBarrier();
}

// The output in f32 (`out`).
@compute @workgroup_size(AWG)
fn prefill(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    attend(wg, lid, false);
}

// The output in f16 (`out_h`), for an output projection that reads it so (graph/attention.rs).
@compute @workgroup_size(AWG)
fn prefill_h(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    attend(wg, lid, true);
}

// Workgroup x takes query block x, then block nb - 1 - x where that is another one: under the
// causal mask a light block and a heavy one, so that every workgroup takes about as many key
// tiles (at pp512 the 8 blocks of a head, 2 to 16 tiles per pass each, ran in one wave and the
// step waited for the heaviest; docs/PERF.md). The grid is ⌈blocks / 2⌉ wide.
fn attend(wg: vec3<u32>, lid: u32, half: bool) {
    let nb = (params.seq + AQ - 1u) / AQ;
    attend_block(wg.x, wg.y, lid, half);
    let other = nb - 1u - wg.x;
    if (other > wg.x) {
        workgroupBarrier();
        attend_block(other, wg.y, lid, half);
    }
}

// Query block `blk` (queries 64 blk ..) of head h.
fn attend_block(blk: u32, h: u32, lid: u32, half: bool) {
    let t0 = blk * AQ;
    let sg = lid / 32u;
    let lane = lid % 32u;
    let hd4 = params.hd / 4u;
    let hdl = params.hd / KVL;
    let nd = params.hd / 16u;
    let kvh = h / (params.heads / params.kv_heads);
    // q as f16: queries past the last repeat it (never stored).
    for (var i = 0u; i < AQ * AMAX4 / AWG; i++) {
        let e = lid + i * AWG;
        let qq = e / AMAX4;
        let d4 = e % AMAX4;
        if (d4 < hd4) {
            let t = min(t0 + qq, params.seq - 1u);
            let b = (t * params.heads + h) * params.hd + 4u * d4;
            tiles[qq * AS4 + d4] = h4(vec4<f32>(q[b], q[b + 1u], q[b + 2u], q[b + 3u]));
        }
    }
    workgroupBarrier();
    let r0 = sg * 16u;
    var q0 = coop_mat16x16<f16, A>();
    var q1 = coop_mat16x16<f16, A>();
    var q2 = coop_mat16x16<f16, A>();
    var q3 = coop_mat16x16<f16, A>();
    var q4 = coop_mat16x16<f16, A>();
    var q5 = coop_mat16x16<f16, A>();
    var q6 = coop_mat16x16<f16, A>();
    var q7 = coop_mat16x16<f16, A>();
    if (nd > 0u) { q0 = q_tile(r0, 0u); }
    if (nd > 1u) { q1 = q_tile(r0, 1u); }
    if (nd > 2u) { q2 = q_tile(r0, 2u); }
    if (nd > 3u) { q3 = q_tile(r0, 3u); }
    if (nd > 4u) { q4 = q_tile(r0, 4u); }
    if (nd > 5u) { q5 = q_tile(r0, 5u); }
    if (nd > 6u) { q6 = q_tile(r0, 6u); }
    if (nd > 7u) { q7 = q_tile(r0, 7u); }
    workgroupBarrier();
    // Lane r + 16 c: query t0 + 16 sg + r (position qi, first key qlo), keys 16 c .. of a tile;
    // the other half's lane is lid ^ 16.
    let r = lane % 16u;
    let c = lane / 16u;
    let qi = params.past + min(t0 + r0 + r, params.seq - 1u);
    let qlo = window_start(qi);
    // The block's keys: uniform over the workgroup.
    let lo = window_start(params.past + t0);
    let last = params.past + min(t0 + AQ, params.seq) - 1u;
    var m = -3.0e38;
    var l = 0.0;
    // Pass 1: each query's maximum and sum.
    // The next tile is loaded into registers before this one is used (its latency hidden).
    var g = kv_fetch(lid, lo, last, kvh, hdl, false);
    for (var j0 = lo; j0 <= last; j0 += AK) {
        kv_stash(g, lid, hdl, false);
        workgroupBarrier();
        if (j0 + AK <= last) {
            g = kv_fetch(lid, j0 + AK, last, kvh, hdl, false);
        }
        scores(sg, 0u, q0, q1, q2, q3, q4, q5, q6, q7);
        scores(sg, 1u, q0, q1, q2, q3, q4, q5, q6, q7);
        workgroupBarrier();
        var sc: array<f32, 16>;
        var bm = -3.0e38;
        for (var n = 0u; n < 16u; n++) {
            sc[n] = score_at(sg, r, c, n, j0 + 16u * c + n, qi, qlo);
            bm = max(bm, sc[n]);
        }
        xmax[lid] = bm;
        workgroupBarrier();
        let nm = max(m, max(bm, xmax[lid ^ 16u]));
        var sum = 0.0;
        for (var n = 0u; n < 16u; n++) {
            sum += select(0.0, exp(sc[n] - nm), sc[n] > -1.0e38);
        }
        xsum[lid] = sum;
        workgroupBarrier();
        l = l * exp(m - nm) + sum + xsum[lid ^ 16u];
        m = nm;
    }
    // Pass 2: P = exp(s - m) / l, O += P·V.
    var o0 = coop_mat16x16<f32, C>();
    var o1 = coop_mat16x16<f32, C>();
    var o2 = coop_mat16x16<f32, C>();
    var o3 = coop_mat16x16<f32, C>();
    var o4 = coop_mat16x16<f32, C>();
    var o5 = coop_mat16x16<f32, C>();
    var o6 = coop_mat16x16<f32, C>();
    var o7 = coop_mat16x16<f32, C>();
    let inv_l = 1.0 / l;
    g = kv_fetch(lid, lo, last, kvh, hdl, true);
    for (var j0 = lo; j0 <= last; j0 += AK) {
        kv_stash(g, lid, hdl, true);
        workgroupBarrier();
        if (j0 + AK <= last) {
            g = kv_fetch(lid, j0 + AK, last, kvh, hdl, true);
        }
        scores(sg, 0u, q0, q1, q2, q3, q4, q5, q6, q7);
        scores(sg, 1u, q0, q1, q2, q3, q4, q5, q6, q7);
        workgroupBarrier();
        for (var n4 = 0u; n4 < 4u; n4++) {
            var p = vec4<f32>(0.0);
            for (var k = 0u; k < 4u; k++) {
                let s = score_at(sg, r, c, 4u * n4 + k, j0 + 16u * c + 4u * n4 + k, qi, qlo);
                p[k] = select(0.0, exp(s - m) * inv_l, s > -1.0e38);
            }
            pt[(r0 + r) * PS4 + 4u * c + n4] = vec4<f16>(p);
        }
        workgroupBarrier();
        let p0 = coopLoadT<coop_mat16x16<f16, A>>(&pt[r0 * PS4], PS4);
        let p1 = coopLoadT<coop_mat16x16<f16, A>>(&pt[r0 * PS4 + 4u], PS4);
        if (nd > 0u) { o0 = pv(p0, p1, 0u, o0); }
        if (nd > 1u) { o1 = pv(p0, p1, 1u, o1); }
        if (nd > 2u) { o2 = pv(p0, p1, 2u, o2); }
        if (nd > 3u) { o3 = pv(p0, p1, 3u, o3); }
        if (nd > 4u) { o4 = pv(p0, p1, 4u, o4); }
        if (nd > 5u) { o5 = pv(p0, p1, 5u, o5); }
        if (nd > 6u) { o6 = pv(p0, p1, 6u, o6); }
        if (nd > 7u) { o7 = pv(p0, p1, 7u, o7); }
        workgroupBarrier();
    }
    if (nd > 0u) { put_out(o0, 0u, sg, lane, t0, h, half); }
    if (nd > 1u) { put_out(o1, 1u, sg, lane, t0, h, half); }
    if (nd > 2u) { put_out(o2, 2u, sg, lane, t0, h, half); }
    if (nd > 3u) { put_out(o3, 3u, sg, lane, t0, h, half); }
    if (nd > 4u) { put_out(o4, 4u, sg, lane, t0, h, half); }
    if (nd > 5u) { put_out(o5, 5u, sg, lane, t0, h, half); }
    if (nd > 6u) { put_out(o6, 6u, sg, lane, t0, h, half); }
    if (nd > 7u) { put_out(o7, 7u, sg, lane, t0, h, half); }
}
