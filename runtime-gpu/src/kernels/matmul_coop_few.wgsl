// Short prefills on cooperative matrices: the product of gemm_m0e4 (same parameters and
// output) for steps of a few tokens, where the GEMM's tiles of 64-128 tokens would be mostly
// padding and its few workgroups (one per 64-128 rows) would leave most multiprocessors idle.
// matmul_io.wgsl and coop_common.wgsl come before this file.
//
// A workgroup computes COOP_FEW_ROWS = 16 weight rows × COOP_FEW_TOKENS = 16 tokens (grid x:
// rows, y: tokens) with FS = COOP_FEW_WG / 32 subgroups that split k: subgroup s takes the steps
// of COOP_K = 64 columns s, s + FS, s + 2 FS, ... Per step each lane decodes 4 packed words of
// row lane / 2 (columns 32 (lane % 2) ..) and converts its FN load units of activations into the
// subgroup's own f16 tiles, and the subgroup does 4 multiply-adds of 16 × 16 × 16; the next
// step's words and activations are loaded before them. Each weight is read and decoded once per
// 16 tokens, and a projection of n rows has n / 16 workgroups. At the end the FS partial tiles
// are summed through shared memory. k must be a multiple of COOP_K (the host checks).
//
// Measured on an H200 (docs/PERF.md, "Short prefills on cooperative matrices"): loading the
// weights 2 or 4 steps ahead was slower than 1; 4 subgroups per workgroup faster than 8.

const FK: u32 = COOP_K;
const FWG: u32 = COOP_FEW_WG;
const FS: u32 = FWG / 32u;
// Row stride of the f16 tiles in vec4<f16>: FK + 8 halves (see matmul_coop.wgsl).
const FS4: u32 = (FK + 8u) / 4u;
// A subgroup's tile: 16 rows (weights) or 16 tokens (activations) of FS4 vec4.
const FT4: u32 = 16u * FS4;
// Load units (XV columns, coop_common.wgsl) per token and step, and per lane and step.
const FU: u32 = FK / XV;
const FN: u32 = 16u * FU / 32u;
const_assert COOP_FEW_ROWS == 16u && COOP_FEW_TOKENS == 16u && FK == 64u && FS >= 1u && FN >= 1u;
var<workgroup> fw: array<vec4<f16>, FS * FT4>; // [subgroup][row][k / 4]
var<workgroup> fx: array<vec4<f16>, FS * FT4>; // [subgroup][token][k / 4]
var<workgroup> fsum: array<f32, FS * 256u>; // [subgroup][token][row]

// A lane's words of step `step` of its subgroup: 4 words of row o0 + lane / 2 from column
// 64 step + 32 (lane % 2); zeros for rows or steps past the end.
fn few_words(lane: u32, o0: u32, step: u32) -> Words4 {
    var q: Words4;
    let k0 = step * FK;
    let o = o0 + lane / 2u;
    if (o < params.n && k0 < params.k) {
        q = load_words4(params.w_row0 + o, (k0 + (lane % 2u) * 32u) / M0E4_PER_WORD);
    }
    return q;
}

// A lane's activations of step `step`: load j holds unit e % FU (columns 64 step + XV (e % FU)
// ..) of token t0 + e / FU, e = 32 j + lane (FU lanes read a token's 64 contiguous columns);
// zeros past the end.
fn few_x(lane: u32, t0: u32, step: u32) -> array<xv_t, FN> {
    var x: array<xv_t, FN>;
    let k0 = step * FK;
    for (var j = 0u; j < FN; j++) {
        let e = 32u * j + lane;
        let t = t0 + e / FU;
        if (t < params.seq && k0 < params.k) {
            x[j] = x_at((t * params.k + k0) / XV + e % FU);
        }
    }
    return x;
}

@compute @workgroup_size(FWG)
fn gemm_m0e4_coop_few(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let sg = lid / 32u;
    let lane = lid % 32u;
    let o0 = wg.x * COOP_FEW_ROWS;
    let t0 = wg.y * COOP_FEW_TOKENS;
    // Every subgroup runs the same number of rounds (barriers); steps past k load zeros.
    let rounds = (params.k / FK + FS - 1u) / FS;
    let base = sg * FT4;
    // This lane's words in its subgroup's weight tile: row lane / 2, columns 32 (lane % 2).
    let at = base + (lane / 2u) * FS4 + (lane % 2u) * 8u;
    var c = coop_mat16x16<f32, C>();
    var q = few_words(lane, o0, sg);
    var x = few_x(lane, t0, sg);
    for (var r = 0u; r < rounds; r++) {
        for (var i = 0u; i < 4u; i++) {
            let w = word_f16(q, i);
            fw[at + 2u * i] = w.lo;
            fw[at + 2u * i + 1u] = w.hi;
        }
        for (var j = 0u; j < FN; j++) {
            let e = 32u * j + lane;
            let xa = base + (e / FU) * FS4 + (e % FU) * (XV / 4u);
            for (var p = 0u; p < XV / 4u; p++) {
                fx[xa + p] = x_part(x[j], p);
            }
        }
        workgroupBarrier();
        q = few_words(lane, o0, (r + 1u) * FS + sg);
        x = few_x(lane, t0, (r + 1u) * FS + sg);
        for (var kk = 0u; kk < FK; kk += 16u) {
            let a = coopLoadT<coop_mat16x16<f16, A>>(&fw[base + kk / 4u], FS4);
            let b = coopLoad<coop_mat16x16<f16, B>>(&fx[base + kk / 4u], FS4);
            c = coopMultiplyAdd(a, b, c);
        }
        workgroupBarrier();
    }
    coopStore(c, &fsum[sg * 256u], 16u);
    workgroupBarrier();
    for (var e = lid; e < 256u; e += FWG) {
        var s = 0.0;
        for (var i = 0u; i < FS; i++) {
            s += fsum[i * 256u + e];
        }
        let row = e % 16u;
        let j = e / 16u;
        if (o0 + row < params.n && t0 + j < params.seq) {
            store(t0 + j, o0 + row, s);
        }
    }
}
