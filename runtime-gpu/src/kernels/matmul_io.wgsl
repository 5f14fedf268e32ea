// y[t, out_col0 + o] (=|+=) Σ_c x[t, c] · W[w_row0 + o, c] (+ bias[bias0 + o]) for o < n.
// W is M0E4 (packed codes + f16 S/B per group) or dense f32. Per packed word the sum is
// S·Σ v_k x_k + B·Σ x_k: one FMA-style decode per weight, the group parameters once per word.
// gemv_m0e4: 8 rows per 256-thread workgroup for any shape; gemv_m0e4_norm: the same with the
// RMSNorm fused (applied on the fly), gemv_m0e4_norm_rope: that for a joined q/k/v with RoPE and
// the KV write in its epilogue, gemv_m0e4_glu_narrow for gate + up + activation; gemv_m0e4_wide (k, group
// multiples of 32): 32 lanes per row, vector loads, optional fused RMSNorm (the normalized row
// staged in shared memory), gemv_m0e4_glu the same for gate + up + activation (the plan's choice
// for fused norms below 4096 columns); gemv_dense: one workgroup per output row.
// gemm_*: shared-memory tiles of 128 rows × 64 tokens, 8 × 4 outputs per thread (prefill);
// gemm_m0e4_coop (matmul_coop.wgsl): the same product on cooperative matrices, in f16.

struct Params {
    seq: u32,
    k: u32,
    n: u32,
    out_stride: u32,
    out_col0: u32,
    w_row0: u32,
    group: u32,
    words_per_row: u32,
    groups_per_row: u32,
    accumulate: u32,
    has_bias: u32,
    bias0: u32,
    grid_width: u32,
    // Fused RMSNorm of x (gemv_m0e4_wide, gemv_m0e4_glu): x · rsqrt(mean(x²) + eps) · (w + w_offset).
    norm: u32,
    eps: f32,
    w_offset: f32,
    // gemv_m0e4_glu: activation of the gate rows (0 SiLU, 1 GELU-tanh) and the first up row.
    act: u32,
    up_row0: u32,
    // gemv_m0e4_wide / gemv_m0e4_glu: row blocks per workgroup.
    blocks: u32,
    // gemv_m0e4_norm_rope: the step's first position, rotated dimensions per head, head size, q
    // rows, k (= v) rows, the cache's positions, the layout (1: pairs (2i, 2i + 1)).
    rope_past: u32,
    rope_rot: u32,
    rope_hd: u32,
    rope_q_rows: u32,
    rope_kv_rows: u32,
    rope_max_seq: u32,
    rope_interleaved: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> packed: array<u32>;
// M0E4: each group's scale and bias as f16, one word per group (scale in the low half): the
// two in one load.
@group(0) @binding(5) var<storage, read> groups: array<u32>;
// `x` viewed as vectors (the same buffer).
@group(0) @binding(8) var<storage, read> x4: array<vec4<f32>>;
// `packed` viewed as vectors (the same buffer).
@group(0) @binding(9) var<storage, read> packed4: array<vec4<u32>>;


// (scale, bias) of group g.
fn group_at(g: u32) -> vec2<f32> {
    return unpack2x16float(groups[g]);
}

// The scales (column 0) and biases (column 1) of groups g.x .. g.w.
fn groups4(g: vec4<u32>) -> mat2x4<f32> {
    return transpose(mat4x2<f32>(group_at(g.x), group_at(g.y), group_at(g.z), group_at(g.w)));
}

fn store(t: u32, o: u32, acc: f32) {
    var v = acc;
    if (params.has_bias != 0u) {
        v += bias[params.bias0 + o];
    }
    let i = t * params.out_stride + params.out_col0 + o;
    if (params.accumulate != 0u) {
        y[i] += v;
    } else {
        y[i] = v;
    }
}
