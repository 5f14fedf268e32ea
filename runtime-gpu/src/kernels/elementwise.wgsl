// Embedding lookup (M0E4 or dense rows, times a scale), the gated-MLP activation and logit
// soft-capping.

struct Params {
    seq: u32,
    n: u32,
    row0: u32,
    rows: u32,
    group: u32,
    words_per_row: u32,
    groups_per_row: u32,
    act: u32,
    scale: f32,
    cap: f32,
    grid_width: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> packed: array<u32>;
// M0E4: each group's scale (low half) and bias (high half) as f16, one word per group.
@group(0) @binding(4) var<storage, read> groups: array<u32>;
@group(0) @binding(6) var<storage, read> dense: array<f32>;
@group(0) @binding(7) var<storage, read> up: array<f32>;
// glu_h's output: f16 pairs (element 2 i in the low half of word i).
@group(0) @binding(8) var<storage, read_write> y_h: array<u32>;


// One thread per (token, packed word) of the rows this weight chunk holds.
@compute @workgroup_size(ELEMENTWISE_WG)
fn embed_m0e4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * params.grid_width;
    let t = i / params.words_per_row;
    let wi = i % params.words_per_row;
    if (t >= params.seq) {
        return;
    }
    let tok = tokens[t];
    if (tok < params.row0 || tok >= params.row0 + params.rows) {
        return;
    }
    let row = tok - params.row0;
    let w = packed[row * params.words_per_row + wi];
    let col0 = wi * M0E4_PER_WORD;
    let g = row * params.groups_per_row + col0 / params.group;
    let sb = unpack2x16float(groups[g]);
    let s = sb.x;
    let b = sb.y;
    for (var kk = 0u; kk < 4u; kk++) {
        let v = m0e4_pair(w, kk);
        if (col0 + kk < params.n) {
            y[t * params.n + col0 + kk] = fma(v.x, s, b) * params.scale;
        }
        if (col0 + kk + 4u < params.n) {
            y[t * params.n + col0 + kk + 4u] = fma(v.y, s, b) * params.scale;
        }
    }
}

@compute @workgroup_size(ELEMENTWISE_WG)
fn embed_dense(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * params.grid_width;
    let t = i / params.n;
    let c = i % params.n;
    if (t >= params.seq) {
        return;
    }
    let tok = tokens[t];
    if (tok < params.row0 || tok >= params.row0 + params.rows) {
        return;
    }
    y[t * params.n + c] = dense[(tok - params.row0) * params.n + c] * params.scale;
}

// Element e (< per) of invocation `gid`'s share: workgroup w takes per · ELEMENTWISE_WG
// consecutive elements, its threads side by side in each of `per` rounds (coalesced).
fn glu_index(gid: vec3<u32>, per: u32, e: u32) -> u32 {
    let t = gid.x + gid.y * params.grid_width;
    return (t / ELEMENTWISE_WG) * ELEMENTWISE_WG * per + e * ELEMENTWISE_WG + t % ELEMENTWISE_WG;
}

// y = act(y) · up, in place over seq × n (act 0: SiLU, 1: GELU-tanh); GLU_PER_THREAD elements
// per thread (one per thread made a workgroup of 64 threads per 64 elements, and the op ran
// at a third of glu_h's rate, PERF.md).
@compute @workgroup_size(ELEMENTWISE_WG)
fn glu(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var e = 0u; e < GLU_PER_THREAD; e++) {
        let i = glu_index(gid, GLU_PER_THREAD, e);
        if (i < params.seq * params.n) {
            y[i] = glu_act(y[i], params.act) * up[i];
        }
    }
}

// y_h = act(y) · up as f16 (clamped to the finite range), GLU_PER_THREAD / 2 pairs of elements
// per thread, for a down projection on cooperative matrices that reads it so
// (graph/elementwise.rs); n even.
@compute @workgroup_size(ELEMENTWISE_WG)
fn glu_h(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var e = 0u; e < GLU_PER_THREAD / 2u; e++) {
        let i = glu_index(gid, GLU_PER_THREAD / 2u, e);
        if (i < params.seq * params.n / 2u) {
            let a = 2u * i;
            let g = vec2<f32>(y[a], y[a + 1u]);
            let v = vec2<f32>(glu_act(g.x, params.act), glu_act(g.y, params.act)) * vec2<f32>(up[a], up[a + 1u]);
            y_h[i] = pack2x16float(clamp(v, vec2<f32>(-65504.0), vec2<f32>(65504.0)));
        }
    }
}

// y = cap · tanh(y / cap), in place.
@compute @workgroup_size(ELEMENTWISE_WG)
fn softcap(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * params.grid_width;
    if (i >= params.seq * params.n) {
        return;
    }
    y[i] = params.cap * tanh(clamp(y[i] / params.cap, -15.0, 15.0));
}
