// Prefill GEMM on cooperative matrices (tensor cores): f16 operands, f32 accumulators; the
// same product, parameters and output as gemm_m0e4 (matmul_io.wgsl comes before this file).
//
// Two kernels are built from this file, with CR (rows per workgroup), CWG = 2 · CR threads and
// TT (tokens per workgroup) set before it: `matmul_coop` (CR = COOP_ROWS = 128, TT =
// COOP_TOKENS = 128) and `matmul_coop_small` (CR = COOP_SMALL_ROWS = 128, TT =
// COOP_SMALL_TOKENS = 64: twice the workgroups, for the plan's projections of < 4096 rows and
// the others' steps of < 512 tokens, which would otherwise leave many of a large GPU's
// multiprocessors idle; 128 × 64 beat 64 × 64 and 64 × 128 there, PERF.md). A workgroup of CWG / 32 subgroups computes CR weight rows × TT
// tokens; subgroup s the rows 32 (s % (CR / 32)) .. + 31 and tokens (TT / 2) (s / (CR / 32)) .. as 2 × FT tiles of
// 16 × 16 (A: 16 rows × 16 columns of W, B: 16 columns × 16 tokens of xᵀ; FT = TT / 32). Per
// step of COOP_K = 64 columns the workgroup decodes a CR × 64 M0E4 tile into f16 in shared
// memory (row-major, `cw[row][k]`) and converts a TT × 64 activation tile (`cx[token][k]`, read
// as columns of B), then each subgroup does 8 · FT multiply-adds of 16 × 16 × 16. The next
// step's weights and activations are loaded into registers before this step's multiply-adds, so
// that their latency is hidden behind them.
//
// The plan runs it where the adapter has a 16 × 16 × 16 f16 × f16 → f32 configuration, a
// subgroup size of exactly 32, k a multiple of COOP_K, and enough workgroup memory. No subgroup
// operations here: a crash in an NVIDIA driver's pipeline creation has been reported for modules
// that declare both.

const CK: u32 = COOP_K;
// Row stride of the f16 tiles: CK + 8 halves (a 16-byte multiple, what a cooperative load
// needs, padded so that the rows of a tile start in different banks), in vec4<f16>. The tiles are
// arrays of vec4<f16> so that a thread writes 4 halves per store (a cooperative load's stride
// counts the array's elements).
const CS4: u32 = (CK + 8u) / 4u;
// Subgroups along the rows; a thread loads one vec4 of words per step (2 per row), and XN units
// of 4 vec4 of activations (a token's 16 columns).
const SR: u32 = CR / 32u;
// Load units of activations per token and step (UPT), and per thread and step (XN).
const UPT: u32 = CK / XV;
const XN: u32 = TT * UPT / CWG;
const FT: u32 = TT / 32u;
const_assert CWG == 2u * CR && (CR == 64u || CR == 128u) && (FT == 2u || FT == 4u) && CK == 64u;
const_assert XN >= 1u && CWG % UPT == 0u && XV % 4u == 0u;
var<workgroup> cw: array<vec4<f16>, CR * CS4>; // [row][k / 4]
var<workgroup> cx: array<vec4<f16>, TT * CS4>; // [token][k / 4]
// One 16 × 16 f32 tile per subgroup on its way out, column-major: [token][row].
var<workgroup> cstage: array<f32, CWG / 32u * 256u>;

// What a thread loads for one step: 4 packed words (32 weights) of row lid / 2, columns
// 32 (lid % 2) .., with each word's scale and bias; 4 · XU times 4 activations (columns
// 4 (e % 16) .. of token e / 16, e = j · CWG + lid for load j), as the input holds them (f32
// or f16: `xv_t`, coop_common.wgsl).
struct Fetch {
    q: Words4,
    x: array<xv_t, XN>,
}

fn fetch(lid: u32, o0: u32, t0: u32, k0: u32) -> Fetch {
    var f: Fetch;
    let o = o0 + lid / 2u;
    if (o < params.n) {
        f.q = load_words4(params.w_row0 + o, k0 / M0E4_PER_WORD + (lid % 2u) * 4u);
    }
    // Load j of the workgroup covers tokens j · CWG / 16 .. : 16 threads read a token's 64
    // columns (256 contiguous bytes).
    for (var j = 0u; j < XN; j++) {
        let e = j * CWG + lid;
        let t = t0 + e / UPT;
        if (t < params.seq) {
            f.x[j] = x_at((t * params.k + k0) / XV + e % UPT);
        }
    }
    return f;
}

// Writes a step's loads into the shared tiles as f16 (rows past n are zero: their words are).
fn stash(lid: u32, f: Fetch) {
    // Word i: codes 0..3 and 4..7 (the pairs' first and second halves) as two vec4.
    let wb = (lid / 2u) * CS4 + (lid % 2u) * 8u;
    for (var i = 0u; i < 4u; i++) {
        let d = word_f16(f.q, i);
        cw[wb + 2u * i] = d.lo;
        cw[wb + 2u * i + 1u] = d.hi;
    }
    for (var j = 0u; j < XN; j++) {
        let e = j * CWG + lid;
        let at = (e / UPT) * CS4 + (e % UPT) * (XV / 4u);
        for (var p = 0u; p < XV / 4u; p++) {
            cx[at + p] = x_part(f.x[j], p);
        }
    }
}


// Experiment (TLITE_EXP_COOP): COOP_EXP 1 keeps the prefetched weights as 4 words and one raw
// group word (group a multiple of 32), 2 also loads the activations at stash time (only the
// weights prefetched), 3 prefetches nothing.
struct WRaw {
    w: vec4<u32>,
    g: u32,
}

fn fetch_w(lid: u32, o0: u32, k0: u32) -> WRaw {
    var f: WRaw;
    let o = o0 + lid / 2u;
    if (o < params.n) {
        let row = params.w_row0 + o;
        let wi = k0 / M0E4_PER_WORD + (lid % 2u) * 4u;
        f.w = packed4[(row * params.words_per_row + wi) / 4u];
        f.g = groups[row * params.groups_per_row + wi * M0E4_PER_WORD / params.group];
    }
    return f;
}

fn fetch_x(lid: u32, t0: u32, k0: u32) -> array<xv_t, XN> {
    var x: array<xv_t, XN>;
    for (var j = 0u; j < XN; j++) {
        let e = j * CWG + lid;
        let t = t0 + e / UPT;
        if (t < params.seq) {
            x[j] = x_at((t * params.k + k0) / XV + e % UPT);
        }
    }
    return x;
}

fn stash_w(lid: u32, f: WRaw) {
    var q: Words4;
    q.w = f.w;
    let sb = unpack2x16float(f.g);
    q.s = vec4<f32>(sb.x);
    q.b = vec4<f32>(sb.y);
    let wb = (lid / 2u) * CS4 + (lid % 2u) * 8u;
    for (var i = 0u; i < 4u; i++) {
        let d = word_f16(q, i);
        cw[wb + 2u * i] = d.lo;
        cw[wb + 2u * i + 1u] = d.hi;
    }
}

fn stash_x(lid: u32, x: array<xv_t, XN>) {
    for (var j = 0u; j < XN; j++) {
        let e = j * CWG + lid;
        let at = (e / UPT) * CS4 + (e % UPT) * (XV / 4u);
        for (var p = 0u; p < XV / 4u; p++) {
            cx[at + p] = x_part(x[j], p);
        }
    }
}

// Tile `c` of subgroup slot `slot` (rows o.., tokens t..) to y through the staging slot; every
// thread calls it (barriers).
fn put_tile(c: coop_mat16x16<f32, C>, slot: u32, lane: u32, o: u32, t: u32) {
    coopStore(c, &cstage[slot], 16u);
    workgroupBarrier();
    for (var e = lane; e < 256u; e += 32u) {
        let r = e % 16u;
        let j = e / 16u;
        if (o + r < params.n && t + j < params.seq) {
            store(t + j, o + r, cstage[slot + e]);
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(CWG)
fn gemm_m0e4_coop(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let sg = lid / 32u;
    let lane = lid % 32u;
    let mr = (sg % SR) * 32u;
    let nt = (sg / SR) * (TT / 2u);
    let o0 = wg.x * CR;
    let t0 = wg.y * TT;
    var c00 = coop_mat16x16<f32, C>();
    var c01 = coop_mat16x16<f32, C>();
    var c10 = coop_mat16x16<f32, C>();
    var c11 = coop_mat16x16<f32, C>();
    // Token tiles 2 and 3 (FT = 4 only).
    var c02 = coop_mat16x16<f32, C>();
    var c03 = coop_mat16x16<f32, C>();
    var c12 = coop_mat16x16<f32, C>();
    var c13 = coop_mat16x16<f32, C>();
    var f: Fetch;
    var fw: WRaw;
    var fx: array<xv_t, XN>;
    if (COOP_EXP == 0u) {
        f = fetch(lid, o0, t0, 0u);
    } else {
        fw = fetch_w(lid, o0, 0u);
    }
    if (COOP_EXP == 1u) {
        fx = fetch_x(lid, t0, 0u);
    }
    for (var k0 = 0u; k0 < params.k; k0 += CK) {
        if (COOP_EXP == 0u) {
            stash(lid, f);
        } else {
            stash_w(lid, fw);
            stash_x(lid, fx);
        }
        workgroupBarrier();
        if (k0 + CK < params.k) {
            if (COOP_EXP == 0u) {
                f = fetch(lid, o0, t0, k0 + CK);
            } else {
                fw = fetch_w(lid, o0, k0 + CK);
            }
            if (COOP_EXP == 1u) {
                fx = fetch_x(lid, t0, k0 + CK);
            }
        }
        for (var kk = 0u; kk < CK; kk += 16u) {
            let a0 = coopLoadT<coop_mat16x16<f16, A>>(&cw[mr * CS4 + kk / 4u], CS4);
            let a1 = coopLoadT<coop_mat16x16<f16, A>>(&cw[(mr + 16u) * CS4 + kk / 4u], CS4);
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&cx[nt * CS4 + kk / 4u], CS4);
            let b1 = coopLoad<coop_mat16x16<f16, B>>(&cx[(nt + 16u) * CS4 + kk / 4u], CS4);
            c00 = coopMultiplyAdd(a0, b0, c00);
            c01 = coopMultiplyAdd(a0, b1, c01);
            c10 = coopMultiplyAdd(a1, b0, c10);
            c11 = coopMultiplyAdd(a1, b1, c11);
            if (FT == 4u) {
                let b2 = coopLoad<coop_mat16x16<f16, B>>(&cx[(nt + 32u) * CS4 + kk / 4u], CS4);
                let b3 = coopLoad<coop_mat16x16<f16, B>>(&cx[(nt + 48u) * CS4 + kk / 4u], CS4);
                c02 = coopMultiplyAdd(a0, b2, c02);
                c03 = coopMultiplyAdd(a0, b3, c03);
                c12 = coopMultiplyAdd(a1, b2, c12);
                c13 = coopMultiplyAdd(a1, b3, c13);
            }
        }
        workgroupBarrier();
    }
    let slot = sg * 256u;
    put_tile(c00, slot, lane, o0 + mr, t0 + nt);
    put_tile(c01, slot, lane, o0 + mr, t0 + nt + 16u);
    put_tile(c10, slot, lane, o0 + mr + 16u, t0 + nt);
    put_tile(c11, slot, lane, o0 + mr + 16u, t0 + nt + 16u);
    if (FT == 4u) {
        put_tile(c02, slot, lane, o0 + mr, t0 + nt + 32u);
        put_tile(c03, slot, lane, o0 + mr, t0 + nt + 48u);
        put_tile(c12, slot, lane, o0 + mr + 16u, t0 + nt + 32u);
        put_tile(c13, slot, lane, o0 + mr + 16u, t0 + nt + 48u);
    }
}
