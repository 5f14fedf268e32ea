// The GEMV and f32 GEMM kernels; matmul_io.wgsl (Params, bindings, store) comes before.
@group(0) @binding(7) var<storage, read> dense: array<f32>;


// M0E4 GEMV: a workgroup of 256 threads computes GV_ROWS = 8 rows. Thread `lid` takes packed
// words lid, lid + 256, ... of all 8 rows, so each activation octet is loaded once and used 8
// times, and a thread has 8 independent weight loads in flight; for a fixed row the 32 lanes of
// a warp read 128 contiguous bytes. The 256 × 8 partial sums are reduced in shared memory in
// three conflict-free stages (no subgroup operations: the same path runs on every device).
const GV_ROWS: u32 = GEMV_ROWS;
const GV_WG: u32 = GEMV_WG;
// The reduction's stages: GV_WG = GV_ROWS · 32 threads, then GV_ROWS · 8 partial sums.
const_assert GV_WG == GV_ROWS * 32u && GV_ROWS == 8u;
var<workgroup> red: array<f32, GV_ROWS * GV_WG>; // [GV_ROWS][GV_WG]
var<workgroup> red2: array<f32, GV_ROWS * 32u>; // [GV_ROWS][32]
var<workgroup> red3: array<f32, GV_ROWS * 8u>; // [GV_ROWS][8]

fn x_at(i: u32, lim: u32) -> f32 {
    return select(0.0, x[min(i, lim - 1u)], i < lim);
}

// Activations 8 wi .. 8 wi + 7 of token t, zeros past k: where k is a multiple of 8 (every row
// starts on a vec4, and word wi is whole) two vector loads through `x4` (the same buffer), else
// eight scalar loads.
struct XOct {
    a: vec4<f32>,
    b: vec4<f32>,
}

fn x_oct(t: u32, wi: u32) -> XOct {
    if (params.k % 8u == 0u) {
        let i = t * (params.k / 4u) + 2u * wi;
        return XOct(x4[i], x4[i + 1u]);
    }
    let xi = t * params.k + wi * M0E4_PER_WORD;
    let lim = t * params.k + params.k;
    return XOct(vec4<f32>(x_at(xi, lim), x_at(xi + 1u, lim), x_at(xi + 2u, lim), x_at(xi + 3u, lim)),
        vec4<f32>(x_at(xi + 4u, lim), x_at(xi + 5u, lim), x_at(xi + 6u, lim), x_at(xi + 7u, lim)));
}

// Thread r < GV_ROWS gets the total of row r; every thread must call it (barriers).
fn gv_reduce(lid: u32, acc: ptr<function, array<f32, GV_ROWS>>) -> f32 {
    for (var r = 0u; r < GV_ROWS; r++) {
        red[r * GV_WG + lid] = (*acc)[r];
    }
    workgroupBarrier();
    {
        let r = lid / 32u;
        let j = lid % 32u;
        var s = 0.0;
        for (var i = 0u; i < 8u; i++) {
            s += red[r * GV_WG + j + 32u * i];
        }
        red2[lid] = s;
    }
    workgroupBarrier();
    if (lid < 64u) {
        let r = lid / 8u;
        let j = lid % 8u;
        var s = 0.0;
        for (var i = 0u; i < 4u; i++) {
            s += red2[r * 32u + j + 8u * i];
        }
        red3[lid] = s;
    }
    workgroupBarrier();
    var tot = 0.0;
    if (lid < GV_ROWS) {
        for (var i = 0u; i < 8u; i++) {
            tot += red3[lid * 8u + i];
        }
    }
    return tot;
}

// gemv_m0e4_norm and gemv_m0e4_glu_narrow: x is the raw residual stream and the RMSNorm before
// the matrix is applied on the fly: each thread scales its activations by the norm weight and
// sums their squares, which are reduced after the row sums (`norm_inv`); the norm's factor
// multiplies the row totals. The threads of a workgroup cover every column once, so no staging
// pass is needed (k a multiple of 8, the host checks).
fn norm_w_at(c4: u32) -> vec4<f32> {
    return norm_w4[min(c4, arrayLength(&norm_w4) - 1u)] + vec4<f32>(params.w_offset);
}

// rsqrt(mean(x²) + eps) from the threads' partial sums of squares; every thread gets it and
// must call it (barriers). Called after gv_reduce, whose shared arrays it reuses.
fn norm_inv(lid: u32, ss: f32) -> f32 {
    red[lid] = ss;
    workgroupBarrier();
    if (lid < 32u) {
        var s = 0.0;
        for (var i = 0u; i < 8u; i++) {
            s += red[lid + 32u * i];
        }
        red2[lid] = s;
    }
    workgroupBarrier();
    var tot = 0.0;
    for (var i = 0u; i < 32u; i++) {
        tot += red2[i];
    }
    return inverseSqrt(tot / f32(params.k) + params.eps);
}

// Activations of word wi (columns 8 wi ..) of token t times the norm weight; adds their
// squares to ss (the norm's factor is applied to the row totals).
struct XWord {
    a: vec4<f32>,
    b: vec4<f32>,
    // Σ of the 8 (normalized) activations.
    sx: f32,
}

fn x_word(t: u32, wi: u32, ss: ptr<function, f32>) -> XWord {
    let col0 = wi * M0E4_PER_WORD;
    // k is a multiple of 8 here: two vector loads.
    let i = t * (params.k / 4u) + 2u * wi;
    var xa = x4[i];
    var xb = x4[i + 1u];
    *ss += dot(xa, xa) + dot(xb, xb);
    xa *= norm_w_at(col0 / 4u);
    xb *= norm_w_at(col0 / 4u + 1u);
    return XWord(xa, xb, dot(xa, vec4<f32>(1.0)) + dot(xb, vec4<f32>(1.0)));
}

// S · Σ codes·x + B · Σ x of word `w` of group `g` of the weight (`groups`).
fn narrow_term(w: u32, g: u32, xw: XWord) -> f32 {
    let sb = group_at(g);
    return sb.x * word_dot(w, xw.a, xw.b) + sb.y * xw.sx;
}

@compute @workgroup_size(GV_WG)
fn gemv_m0e4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o0 = (wg.x + wg.y * params.grid_width) * GV_ROWS;
    if (o0 >= params.n) {
        return; // uniform over the workgroup
    }
    for (var t = 0u; t < params.seq; t++) {
        var acc = array<f32, GV_ROWS>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        for (var wi = lid; wi < params.words_per_row; wi += GV_WG) {
            let col0 = wi * M0E4_PER_WORD;
            let xo = x_oct(t, wi);
            let xa = xo.a;
            let xb = xo.b;
            let sx = dot(xa, vec4<f32>(1.0)) + dot(xb, vec4<f32>(1.0));
            let gi = col0 / params.group;
            for (var r = 0u; r < GV_ROWS; r++) {
                // Rows past n load row n - 1 again (never stored): no branch around the loads.
                let row = params.w_row0 + min(o0 + r, params.n - 1u);
                let w = packed[row * params.words_per_row + wi];
                let g = row * params.groups_per_row + gi;
                let sb = group_at(g);
                let s = sb.x;
                let b = sb.y;
                let v0 = m0e4_pair(w, 0u);
                let v1 = m0e4_pair(w, 1u);
                let v2 = m0e4_pair(w, 2u);
                let v3 = m0e4_pair(w, 3u);
                let dv = dot(vec4<f32>(v0.x, v1.x, v2.x, v3.x), xa)
                    + dot(vec4<f32>(v0.y, v1.y, v2.y, v3.y), xb);
                acc[r] += s * dv + b * sx;
            }
        }
        let total = gv_reduce(lid, &acc);
        if (lid < GV_ROWS && o0 + lid < params.n) {
            store(t, o0 + lid, total);
        }
        workgroupBarrier();
    }
}

// gemv_m0e4 over the tokens of a short prefill (2 to SMALL_PREFILL): per pass of GV_TOKENS
// tokens each thread loads and decodes a word of each of its rows once and multiplies it with
// every token's activations, so the weights are read and decoded once per pass instead of once
// per token; each token's row sums are then reduced as in gemv_m0e4.
const GV_TOKENS: u32 = GEMV_TOKENS;

@compute @workgroup_size(GV_WG)
fn gemv_m0e4_tokens(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o0 = (wg.x + wg.y * params.grid_width) * GV_ROWS;
    if (o0 >= params.n) {
        return; // uniform over the workgroup
    }
    for (var t0 = 0u; t0 < params.seq; t0 += GV_TOKENS) {
        let nt = min(GV_TOKENS, params.seq - t0);
        var acc: array<array<f32, GV_ROWS>, GV_TOKENS>;
        for (var wi = lid; wi < params.words_per_row; wi += GV_WG) {
            let col0 = wi * M0E4_PER_WORD;
            let gi = col0 / params.group;
            var xa: array<vec4<f32>, GV_TOKENS>;
            var xb: array<vec4<f32>, GV_TOKENS>;
            var sx: array<f32, GV_TOKENS>;
            for (var j = 0u; j < GV_TOKENS; j++) {
                // Tokens past the step's last repeat it (never stored): no branch around loads.
                let t = t0 + min(j, nt - 1u);
                let xo = x_oct(t, wi);
                xa[j] = xo.a;
                xb[j] = xo.b;
                sx[j] = dot(xa[j], vec4<f32>(1.0)) + dot(xb[j], vec4<f32>(1.0));
            }
            for (var r = 0u; r < GV_ROWS; r++) {
                // Rows past n load row n - 1 again (never stored).
                let row = params.w_row0 + min(o0 + r, params.n - 1u);
                let w = packed[row * params.words_per_row + wi];
                let g = row * params.groups_per_row + gi;
                let sb = group_at(g);
                let s = sb.x;
                let b = sb.y;
                let v0 = m0e4_pair(w, 0u);
                let v1 = m0e4_pair(w, 1u);
                let v2 = m0e4_pair(w, 2u);
                let v3 = m0e4_pair(w, 3u);
                let lo = vec4<f32>(v0.x, v1.x, v2.x, v3.x);
                let hi = vec4<f32>(v0.y, v1.y, v2.y, v3.y);
                for (var j = 0u; j < GV_TOKENS; j++) {
                    acc[j][r] += s * (dot(lo, xa[j]) + dot(hi, xb[j])) + b * sx[j];
                }
            }
        }
        for (var j = 0u; j < GV_TOKENS; j++) {
            if (j < nt) { // uniform
                var a = acc[j];
                let total = gv_reduce(lid, &a);
                if (lid < GV_ROWS && o0 + lid < params.n) {
                    store(t0 + j, o0 + lid, total);
                }
                workgroupBarrier();
            }
        }
    }
}

// gemv_m0e4 with the RMSNorm before the matrix fused in (separate from gemv_m0e4, which stays
// free of the norm's code: measured slower with it on every plain projection of the 1.17B body).
// gemv_m0e4_norm's product for token t over the block's weight rows `rows`: thread r < GV_ROWS
// gets row r's total, normalized; every thread must call it (barriers).
fn norm_rows_total(t: u32, lid: u32, rows: array<u32, GV_ROWS>) -> f32 {
    var acc = array<f32, GV_ROWS>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    var ss = 0.0;
    for (var wi = lid; wi < params.words_per_row; wi += GV_WG) {
        let xw = x_word(t, wi, &ss);
        let gi = (wi * M0E4_PER_WORD) / params.group;
        for (var r = 0u; r < GV_ROWS; r++) {
            let w = packed[rows[r] * params.words_per_row + wi];
            acc[r] += narrow_term(w, rows[r] * params.groups_per_row + gi, xw);
        }
    }
    return gv_reduce(lid, &acc) * norm_inv(lid, ss);
}

@compute @workgroup_size(GV_WG)
fn gemv_m0e4_norm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o0 = (wg.x + wg.y * params.grid_width) * GV_ROWS;
    if (o0 >= params.n) {
        return; // uniform over the workgroup
    }
    // Rows past n load row n - 1 again (never stored): no branch around the loads.
    var rows: array<u32, GV_ROWS>;
    for (var r = 0u; r < GV_ROWS; r++) {
        rows[r] = params.w_row0 + min(o0 + r, params.n - 1u);
    }
    for (var t = 0u; t < params.seq; t++) {
        let total = norm_rows_total(t, lid, rows);
        if (lid < GV_ROWS && o0 + lid < params.n) {
            store(t, o0 + lid, total);
        }
        workgroupBarrier();
    }
}

// The decode of a joined q/k/v projection with RoPE and the KV-cache write in its epilogue
// (gemv_m0e4_norm's loop; rope_kv.wgsl's arithmetic): rows [0, rope_q_rows) are q, then k and v
// (rope_kv_rows each; head size rope_hd, a multiple of 8, as are rope_rot and so every block of
// 8 rows lies in one head and one side of rope_rot). In a rotated block of a q or k head with
// pairs (i, i + rot/2) the workgroup's 8 rows are pairs i0 .. i0 + 3 and their partners, so that
// each pair meets in one workgroup; elsewhere (pairs (2i, 2i + 1), unrotated dimensions, v) 8
// consecutive rows. The rotated q goes to y ([seq, rope_q_rows], out_stride), k and v into the
// layer's caches at position rope_past + t, as rope_kv's from_qkv writes them.
@group(0) @binding(15) var<storage, read_write> kcache: array<kv_t>;
@group(0) @binding(16) var<storage, read_write> vcache: array<kv_t>;
@group(0) @binding(17) var<storage, read> cos_t: array<f32>;
@group(0) @binding(18) var<storage, read> sin_t: array<f32>;
var<workgroup> rope_vals: array<f32, GV_ROWS>;

// Row r (< GV_ROWS) of the workgroup whose block starts at row o0.
fn rope_row(o0: u32, r: u32) -> u32 {
    let d0 = o0 % params.rope_hd;
    if (o0 >= params.rope_q_rows + params.rope_kv_rows || params.rope_interleaved != 0u
        || d0 >= params.rope_rot) {
        return o0 + r;
    }
    // Block d0 / 8 of a head's rotated dimensions: pairs 4 (d0 / 8) .. + 3 and their partners.
    return o0 - d0 + (d0 / 8u) * 4u + r % 4u + (r / 4u) * (params.rope_rot / 2u);
}

@compute @workgroup_size(GV_WG)
fn gemv_m0e4_norm_rope(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o0 = (wg.x + wg.y * params.grid_width) * GV_ROWS;
    if (o0 >= params.n) {
        return; // uniform over the workgroup
    }
    let hd = params.rope_hd;
    let half = params.rope_rot / 2u;
    let qk = params.rope_q_rows + params.rope_kv_rows;
    // The weight rows of the block (rows past n, none where n is a multiple of 8 as the plan
    // ensures, load row n - 1 again), and thread lid < GV_ROWS's output row: its dimension d of
    // a head, whether it is rotated, its pair's index i, whether it is the pair's first, and the
    // thread holding its partner.
    var rows: array<u32, GV_ROWS>;
    for (var r = 0u; r < GV_ROWS; r++) {
        rows[r] = params.w_row0 + min(rope_row(o0, r), params.n - 1u);
    }
    let lr = lid % GV_ROWS;
    let row = rope_row(o0, lr);
    let d = row % hd;
    let rotated = row < qk && d < params.rope_rot;
    var first = lr < 4u;
    var i = select(d - half, d, first);
    var partner = lr ^ 4u;
    if (params.rope_interleaved != 0u) {
        first = (d & 1u) == 0u;
        i = d / 2u;
        partner = lr ^ 1u;
    }
    var b = 0.0;
    if (params.has_bias != 0u && lid < GV_ROWS) {
        b = bias[params.bias0 + min(row, params.n - 1u)];
    }
    for (var t = 0u; t < params.seq; t++) {
        let pos = params.rope_past + t;
        // The epilogue's table entries, loaded before the loop so that it hides their latency.
        var c = 1.0;
        var sn = 0.0;
        if (rotated && lid < GV_ROWS) {
            c = cos_t[pos * half + i];
            sn = sin_t[pos * half + i];
        }
        var v = norm_rows_total(t, lid, rows) + b;
        if (lid < GV_ROWS) {
            rope_vals[lid] = v;
        }
        workgroupBarrier();
        if (lid < GV_ROWS && row < params.n) {
            if (rotated) {
                let other = rope_vals[partner];
                v = select(v * c + other * sn, v * c - other * sn, first);
            }
            if (row < params.rope_q_rows) {
                y[t * params.out_stride + params.out_col0 + row] = v;
            } else if (row < qk) {
                let e = row - params.rope_q_rows;
                kcache[((e / hd) * params.rope_max_seq + pos) * hd + d] = to_kv(v);
            } else {
                let e = row - qk;
                vcache[((e / hd) * params.rope_max_seq + pos) * hd + d] = to_kv(v);
            }
        }
        workgroupBarrier();
    }
}

// The gate and up projections, their norm and the gated activation in one dispatch, in the
// structure of gemv_m0e4: a workgroup computes GV_ROWS / 2 = 4 outputs from 4 gate rows
// (packed, groups) and the 4 matching up rows up_row0 + o (packed_up, groups_up, possibly the
// same tensor), and writes act(gate) · up. The norm is always fused.
@group(0) @binding(14) var<storage, read> packed_up: array<u32>;
var<workgroup> glu_rows: array<f32, GV_ROWS>;

@compute @workgroup_size(GV_WG)
fn gemv_m0e4_glu_narrow(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let half_rows = GV_ROWS / 2u;
    let o0 = (wg.x + wg.y * params.grid_width) * half_rows;
    if (o0 >= params.n) {
        return; // uniform over the workgroup
    }
    for (var t = 0u; t < params.seq; t++) {
        var acc = array<f32, GV_ROWS>(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
        var ss = 0.0;
        for (var wi = lid; wi < params.words_per_row; wi += GV_WG) {
            let xw = x_word(t, wi, &ss);
            let gi = (wi * M0E4_PER_WORD) / params.group;
            for (var r = 0u; r < half_rows; r++) {
                // Outputs past n repeat output n - 1 (never stored).
                let o = min(o0 + r, params.n - 1u);
                let g_row = params.w_row0 + o;
                acc[r] += narrow_term(packed[g_row * params.words_per_row + wi],
                    g_row * params.groups_per_row + gi, xw);
                let u_row = params.up_row0 + o;
                let w = packed_up[u_row * params.words_per_row + wi];
                let g = u_row * params.groups_per_row + gi;
                let sb = group_up_at(g);
                acc[half_rows + r] += sb.x * word_dot(w, xw.a, xw.b) + sb.y * xw.sx;
            }
        }
        let total = gv_reduce(lid, &acc) * norm_inv(lid, ss);
        if (lid < GV_ROWS) {
            glu_rows[lid] = total;
        }
        workgroupBarrier();
        if (lid < half_rows && o0 + lid < params.n) {
            y[t * params.out_stride + params.out_col0 + o0 + lid] = glu_act(glu_rows[lid], params.act) * glu_rows[half_rows + lid];
        }
        workgroupBarrier();
    }
}

// Wide M0E4 GEMV, for k and group both multiples of 32 (the common case): a 128-thread
// workgroup is 4 lane groups of 32, lane group g computes rows o0 + 4g .. o0 + 4g + 3
// (gemv_m0e4_glu: a gate row and an up row). Per step lane l reads, of each of its rows, 4
// packed words (32 weights of one group) as one vec4<u32> — a lane group reads 512 contiguous
// bytes of a row — with one scale and one bias, and the matching 32 activations as 8
// vec4<f32>, shared by all its rows. `x4` and `packed4` are the same buffers as `x` and
// `packed`, viewed as vectors. With `norm` set, x is the raw residual stream and the RMSNorm
// that precedes the matrix is applied on the fly (each workgroup stages the normalized row in
// shared memory): one dispatch instead of two.
@group(0) @binding(10) var<storage, read> norm_w4: array<vec4<f32>>;
// gemv_m0e4_glu: the up projection's packed words and group parameters (as `groups`).
@group(0) @binding(11) var<storage, read> packed4_up: array<vec4<u32>>;
@group(0) @binding(12) var<storage, read> groups_up: array<u32>;

// (scale, bias) of group g of the up projection.
fn group_up_at(g: u32) -> vec2<f32> {
    return unpack2x16float(groups_up[g]);
}
// The lane groups: GEMV_WIDE_WG / 32 of 32 lanes, 4 rows each; a step reads 4 packed words.
const_assert GEMV_WIDE_WG == 128u && GEMV_WIDE_ROWS == 4u * (GEMV_WIDE_WG / 32u);
const_assert GEMV_GLU_OUTPUTS * 2u == GEMV_WIDE_ROWS && GEMV_WIDE_COLS == 4u * M0E4_PER_WORD;
var<workgroup> wred: array<f32, 256>; // stage_x's partial sums; gemv_m0e4_glu's row totals
var<workgroup> wred2: array<f32, 129>; // [16 rows][8]; [64]: the norm factor in stage_x
var<workgroup> wred16: array<f32, 512>; // [16 rows][32 lanes]
// The normalized activations of a fused norm (hidden size ≤ NORM_MAX_K).
var<workgroup> xs: array<vec4<f32>, NORM_MAX_K / 4u>;

// Σ of word `w`'s 8 decoded codes (1 + q/16, before scale and bias) against columns xa, xb.
fn word_dot(w: u32, xa: vec4<f32>, xb: vec4<f32>) -> f32 {
    let v0 = m0e4_pair(w, 0u);
    let v1 = m0e4_pair(w, 1u);
    let v2 = m0e4_pair(w, 2u);
    let v3 = m0e4_pair(w, 3u);
    return dot(vec4<f32>(v0.x, v1.x, v2.x, v3.x), xa) + dot(vec4<f32>(v0.y, v1.y, v2.y, v3.y), xb);
}

// With `norm` set: stages row t of x times the norm weight in `xs` (once per workgroup, so
// the loop below reads it from shared memory) and returns the norm's rsqrt(mean(x²) + eps), a
// factor of every row sum applied after the reduction; without, returns 1. Every thread must
// call it.
fn stage_x(t: u32, lid: u32) -> f32 {
    if (params.norm == 0u) {
        return 1.0;
    }
    let q = params.k / 4u;
    var ss = 0.0;
    for (var i = lid; i < q; i += GEMV_WIDE_WG) {
        let v = x4[t * q + i];
        ss += dot(v, v);
        xs[i] = v * (norm_w4[i] + vec4<f32>(params.w_offset));
    }
    wred[lid] = ss;
    workgroupBarrier();
    if (lid < 32u) {
        wred2[lid] = wred[lid] + wred[lid + 32u] + wred[lid + 64u] + wred[lid + 96u];
    }
    workgroupBarrier();
    if (lid == 0u) {
        var tot = 0.0;
        for (var i = 0u; i < 32u; i++) {
            tot += wred2[i];
        }
        wred2[64] = inverseSqrt(tot / f32(params.k) + params.eps);
    }
    workgroupBarrier();
    // Read before the next barrier in reduce_rows16; wred2 is written again only after it.
    return wred2[64];
}

// Activations i (a vec4 index within row t): staged and normalized, or straight from x.
fn x_vec(t: u32, i: u32) -> vec4<f32> {
    if (params.norm != 0u) {
        return xs[i];
    }
    return x4[t * (params.k / 4u) + i];
}

struct Dot4 {
    // Σ codes·x of each of the 4 rows.
    d: vec4<f32>,
    // Σ x over the 32 columns.
    sx: f32,
}

// Against token t and columns 32 i .. 32 i + 31, with 4 packed words of each of 4 rows.
fn quad_dot(w0: vec4<u32>, w1: vec4<u32>, w2: vec4<u32>, w3: vec4<u32>, t: u32, i: u32) -> Dot4 {
    var d = vec4<f32>(0.0);
    var sx = vec4<f32>(0.0);
    for (var u = 0u; u < 4u; u++) {
        let xa = x_vec(t, i * 8u + 2u * u);
        let xb = x_vec(t, i * 8u + 2u * u + 1u);
        sx += xa + xb;
        d += vec4<f32>(word_dot(w0[u], xa, xb), word_dot(w1[u], xa, xb), word_dot(w2[u], xa, xb),
            word_dot(w3[u], xa, xb));
    }
    return Dot4(d, dot(sx, vec4<f32>(1.0)));
}

// Step i (columns 32 i .. 32 i + 31) of the 4 rows `rows` of the matrix, against token t.
fn wide_step(rows: vec4<u32>, t: u32, i: u32) -> vec4<f32> {
    let q4 = params.words_per_row / 4u;
    let g = rows * params.groups_per_row + vec4<u32>((i * GEMV_WIDE_COLS) / params.group);
    let r = quad_dot(packed4[rows.x * q4 + i], packed4[rows.y * q4 + i], packed4[rows.z * q4 + i],
        packed4[rows.w * q4 + i], t, i);
    let sb = groups4(g);
    return sb[0] * r.d + sb[1] * r.sx;
}

// Sums each lane group's 4 row partials over its 32 lanes: thread r < 16 gets the total of
// row r (rows 4·lg .. 4·lg + 3 from lane group lg). Every thread must call it.
fn reduce_rows16(lid: u32, acc: vec4<f32>) -> f32 {
    let lane = lid % 32u;
    let lg = lid / 32u;
    for (var k = 0u; k < 4u; k++) {
        wred16[(4u * lg + k) * 32u + lane] = acc[k];
    }
    workgroupBarrier();
    {
        // 128 threads: row lid / 8, partial sums of 4 lanes each.
        let r = lid / 8u;
        let j = lid % 8u;
        wred2[lid] = wred16[r * 32u + j] + wred16[r * 32u + j + 8u] + wred16[r * 32u + j + 16u]
            + wred16[r * 32u + j + 24u];
    }
    workgroupBarrier();
    var tot = 0.0;
    if (lid < 16u) {
        for (var i = 0u; i < 8u; i++) {
            tot += wred2[lid * 8u + i];
        }
    }
    workgroupBarrier();
    return tot;
}

// Step i of gate rows g.x, g.y and up rows u.x, u.y, against token t: (gate x, up x, gate y,
// up y).
fn glu_step(g: vec2<u32>, u: vec2<u32>, t: u32, i: u32) -> vec4<f32> {
    let q4 = params.words_per_row / 4u;
    let gi = (i * GEMV_WIDE_COLS) / params.group;
    let gg = g * params.groups_per_row + vec2<u32>(gi);
    let gu = u * params.groups_per_row + vec2<u32>(gi);
    let r = quad_dot(packed4[g.x * q4 + i], packed4_up[u.x * q4 + i], packed4[g.y * q4 + i],
        packed4_up[u.y * q4 + i], t, i);
    // Scales (column 0) and biases (column 1) of gate, up, gate, up.
    let sb = transpose(mat4x2<f32>(group_at(gg.x), group_up_at(gu.x), group_at(gg.y),
        group_up_at(gu.y)));
    return sb[0] * r.d + sb[1] * r.sx;
}

// A workgroup of gemv_m0e4_wide covers `blocks` consecutive blocks of GEMV_WIDE_ROWS = 16 rows
// (gemv_m0e4_glu: of GEMV_GLU_OUTPUTS = 8 outputs) one after the other, so a fused norm's
// staging is shared by all of them.
@compute @workgroup_size(GEMV_WIDE_WG)
fn gemv_m0e4_wide(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let first = (wg.x + wg.y * params.grid_width) * params.blocks * GEMV_WIDE_ROWS;
    if (first >= params.n) {
        return; // uniform over the workgroup
    }
    let lane = lid % 32u;
    let lg = lid / 32u;
    let q4 = params.words_per_row / 4u;
    for (var t = 0u; t < params.seq; t++) {
        let inv = stage_x(t, lid);
        for (var blk = 0u; blk < params.blocks; blk++) {
            let o0 = first + blk * GEMV_WIDE_ROWS;
            if (o0 >= params.n) {
                break; // uniform
            }
            // Lane group lg: rows o0 + 4·lg .. + 3; rows past n repeat row n - 1 (never
            // stored), so the loads need no branch.
            let rows = vec4<u32>(params.w_row0) + min(vec4<u32>(o0 + 4u * lg) + vec4<u32>(0u, 1u, 2u, 3u),
                vec4<u32>(params.n - 1u));
            var acc = vec4<f32>(0.0);
            // Two steps per iteration, both issued before either is used: twice the loads
            // in flight; then the odd step left over, if any.
            var i = lane;
            for (; i + 32u < q4; i += 64u) {
                acc += wide_step(rows, t, i) + wide_step(rows, t, i + 32u);
            }
            if (i < q4) {
                acc += wide_step(rows, t, i);
            }
            let total = reduce_rows16(lid, acc) * inv;
            if (lid < GEMV_WIDE_ROWS && o0 + lid < params.n) {
                store(t, o0 + lid, total);
            }
        }
    }
}

// Gate and up projections and the gated activation in one dispatch: lane group g of the
// 128-thread workgroup computes outputs o0 + 2g and o0 + 2g + 1 of a block of 8, each from a
// gate row (packed4/groups) and an up row up_row0 + o (the *_up buffers, possibly the
// same tensor), and writes act(gate) · up.
@compute @workgroup_size(GEMV_WIDE_WG)
fn gemv_m0e4_glu(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let first = (wg.x + wg.y * params.grid_width) * params.blocks * GEMV_GLU_OUTPUTS;
    if (first >= params.n) {
        return; // uniform over the workgroup
    }
    let lane = lid % 32u;
    let lg = lid / 32u;
    let q4 = params.words_per_row / 4u;
    for (var t = 0u; t < params.seq; t++) {
        let inv = stage_x(t, lid);
        for (var blk = 0u; blk < params.blocks; blk++) {
            let o0 = first + blk * GEMV_GLU_OUTPUTS;
            if (o0 >= params.n) {
                break; // uniform
            }
            // Outputs past n repeat output n - 1 (never stored).
            let o = min(vec2<u32>(o0 + 2u * lg) + vec2<u32>(0u, 1u), vec2<u32>(params.n - 1u));
            let g = vec2<u32>(params.w_row0) + o;
            let u = vec2<u32>(params.up_row0) + o;
            var acc = vec4<f32>(0.0);
            var i = lane;
            for (; i + 32u < q4; i += 64u) {
                acc += glu_step(g, u, t, i) + glu_step(g, u, t, i + 32u);
            }
            if (i < q4) {
                acc += glu_step(g, u, t, i);
            }
            // Rows 4·lg + 2m (gate) and 4·lg + 2m + 1 (up) belong to output o0 + 2·lg + m.
            let total = reduce_rows16(lid, acc) * inv;
            if (lid < 16u) {
                wred[lid] = total;
            }
            workgroupBarrier();
            if (lid < GEMV_GLU_OUTPUTS && o0 + lid < params.n) {
                y[t * params.out_stride + params.out_col0 + o0 + lid] = glu_act(wred[2u * lid], params.act) * wred[2u * lid + 1u];
            }
            workgroupBarrier();
        }
    }
}

@compute @workgroup_size(REDUCE_WG)
fn gemv_dense(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o = wg.x + wg.y * params.grid_width;
    if (o >= params.n) {
        return;
    }
    let wb = (params.w_row0 + o) * params.k;
    for (var t = 0u; t < params.seq; t++) {
        var acc = 0.0;
        for (var c = lid; c < params.k; c += REDUCE_WG) {
            acc += dense[wb + c] * x[t * params.k + c];
        }
        let total = reduce_sum(lid, acc);
        if (lid == 0u) {
            store(t, o, total);
        }
    }
}

// Tiled GEMM (prefill): a workgroup of 256 threads computes TO = 128 output rows × TT = 64
// tokens, each thread 8 rows × 4 tokens held in registers. Per step of TK = 32 input columns
// the workgroup dequantizes a 128 × 32 weight tile into shared memory k-major (`wt[kk][row]`,
// read back as two vec4 per kk) and loads a 64 × 32 activation tile token-major with a padded
// row (`xt[tok][kk]`, stride 33: conflict-free); each kk then costs 6 shared loads for 32 FMAs.
const TO: u32 = GEMM_ROWS;
const TT: u32 = GEMM_TOKENS;
const TK: u32 = 32u;
const XS: u32 = TK + 1u;
// 16 × 16 threads of 8 rows × 4 tokens; the weight tile loads as 2 halves of 4 words per row.
const_assert GEMM_WG == 256u && TO == 16u * 8u && TT == 16u * 4u && TK == 4u * M0E4_PER_WORD;
var<workgroup> wt: array<vec4<f32>, TK * TO / 4u>; // [TK][TO / 4]
var<workgroup> xt: array<f32, TT * XS>; // [TT][XS]

fn load_x_tile(lid: u32, t0: u32, k0: u32) {
    for (var i = lid; i < TT * TK; i += GEMM_WG) {
        let tl = i / TK;
        let kk = i % TK;
        let t = t0 + tl;
        let c = k0 + kk;
        xt[tl * XS + kk] = select(0.0, x[min(t * params.k + c, arrayLength(&x) - 1u)], t < params.seq && c < params.k);
    }
}

fn wt_set(kk: u32, row: u32, v: f32) {
    wt[kk * (TO / 4u) + row / 4u][row % 4u] = v;
}

fn tile_product(tx: u32, ty: u32, acc: ptr<function, array<vec4<f32>, 8>>) {
    for (var kk = 0u; kk < TK; kk++) {
        let a0 = wt[kk * (TO / 4u) + tx];
        let a1 = wt[kk * (TO / 4u) + 16u + tx];
        let xb = ty * 4u * XS + kk;
        let b = vec4<f32>(xt[xb], xt[xb + XS], xt[xb + 2u * XS], xt[xb + 3u * XS]);
        (*acc)[0] += a0.x * b;
        (*acc)[1] += a0.y * b;
        (*acc)[2] += a0.z * b;
        (*acc)[3] += a0.w * b;
        (*acc)[4] += a1.x * b;
        (*acc)[5] += a1.y * b;
        (*acc)[6] += a1.z * b;
        (*acc)[7] += a1.w * b;
    }
}

// acc[r][j]: row wg.x · TO + (r / 4) · 64 + tx · 4 + r % 4, token wg.y · TT + ty · 4 + j (the
// two row quads of a thread are 64 apart so that a warp's vec4 reads of `wt` are contiguous).
fn store_tile(wg: vec3<u32>, tx: u32, ty: u32, acc: array<vec4<f32>, 8>) {
    for (var r = 0u; r < 8u; r++) {
        let o = wg.x * TO + (r / 4u) * 64u + tx * 4u + r % 4u;
        for (var j = 0u; j < 4u; j++) {
            let t = wg.y * TT + ty * 4u + j;
            if (o < params.n && t < params.seq) {
                store(t, o, acc[r][j]);
            }
        }
    }
}

@compute @workgroup_size(GEMM_WG)
fn gemm_m0e4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    var acc: array<vec4<f32>, 8>;
    let tx = lid % 16u;
    let ty = lid / 16u;
    let words = TK / M0E4_PER_WORD;
    for (var k0 = 0u; k0 < params.k; k0 += TK) {
        // 128 rows × 4 words: thread lid takes word lid % 4 of rows lid / 4 and lid / 4 + 64
        // (four neighbouring threads read 16 contiguous bytes of a row).
        for (var h = 0u; h < 2u; h++) {
            let ro = lid / words + h * 64u;
            let wl = lid % words;
            let wi = k0 / M0E4_PER_WORD + wl;
            let o = wg.x * TO + ro;
            if (o < params.n && wi < params.words_per_row) {
                let row = params.w_row0 + o;
                let w = packed[row * params.words_per_row + wi];
                let g = row * params.groups_per_row + (wi * M0E4_PER_WORD) / params.group;
                let sb = group_at(g);
                let s = sb.x;
                let b = sb.y;
                for (var kk = 0u; kk < 4u; kk++) {
                    let v = m0e4_pair(w, kk);
                    let c = wi * M0E4_PER_WORD + kk;
                    wt_set(wl * 8u + kk, ro, select(0.0, fma(v.x, s, b), c < params.k));
                    wt_set(wl * 8u + kk + 4u, ro, select(0.0, fma(v.y, s, b), c + 4u < params.k));
                }
            } else {
                for (var kk = 0u; kk < 8u; kk++) {
                    wt_set(wl * 8u + kk, ro, 0.0);
                }
            }
        }
        load_x_tile(lid, wg.y * TT, k0);
        workgroupBarrier();
        tile_product(tx, ty, &acc);
        workgroupBarrier();
    }
    store_tile(wg, tx, ty, acc);
}

@compute @workgroup_size(GEMM_WG)
fn gemm_dense(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    var acc: array<vec4<f32>, 8>;
    let tx = lid % 16u;
    let ty = lid / 16u;
    for (var k0 = 0u; k0 < params.k; k0 += TK) {
        for (var i = lid; i < TO * TK; i += GEMM_WG) {
            let ro = i % TO;
            let kk = i / TO;
            let o = wg.x * TO + ro;
            let c = k0 + kk;
            var v = 0.0;
            if (o < params.n && c < params.k) {
                v = dense[(params.w_row0 + o) * params.k + c];
            }
            wt_set(kk, ro, v);
        }
        load_x_tile(lid, wg.y * TT, k0);
        workgroupBarrier();
        tile_product(tx, ty, &acc);
        workgroupBarrier();
    }
    store_tile(wg, tx, ty, acc);
}
