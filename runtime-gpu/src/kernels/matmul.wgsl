// y[t, out_col0 + o] (=|+=) Σ_c x[t, c] · W[w_row0 + o, c] (+ bias[bias0 + o]) for o < n.
// W is M0E4 (packed codes + f16 S/B per group) or dense f32. Per packed word the sum is
// S·Σ v_k x_k + B·Σ x_k: one FMA-style decode per weight, the group parameters once per word.
// gemv_*: one workgroup per output row, threads split the input dimension (seq = 1 or small).
// gemm_*: one thread per (token, row) in 8 × 8 tiles (prefill).

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
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> packed: array<u32>;
@group(0) @binding(5) var<storage, read> scales: array<u32>;
@group(0) @binding(6) var<storage, read> biases: array<u32>;
@group(0) @binding(7) var<storage, read> dense: array<f32>;

const WG: u32 = 64u;
var<workgroup> partial: array<f32, 64>;

fn half_at(a: u32, i: u32) -> f32 {
    let v = unpack2x16float(a);
    return select(v.x, v.y, (i & 1u) == 1u);
}

// Σ over packed word `wi` of row `row` against token `t`'s activations.
fn m0e4_word(row: u32, wi: u32, t: u32) -> f32 {
    let w = packed[row * p.words_per_row + wi];
    let col0 = wi * M0E4_PER_WORD;
    let g = row * p.groups_per_row + col0 / p.group;
    let s = half_at(scales[g >> 1u], g);
    let b = half_at(biases[g >> 1u], g);
    let xb = t * p.k + col0;
    var dv = 0.0;
    var sx = 0.0;
    for (var kk = 0u; kk < 4u; kk++) {
        let v = m0e4_pair(w, kk);
        let c0 = col0 + kk;
        if (c0 < p.k) {
            let a = x[xb + kk];
            dv += v.x * a;
            sx += a;
        }
        if (c0 + 4u < p.k) {
            let a = x[xb + kk + 4u];
            dv += v.y * a;
            sx += a;
        }
    }
    return s * dv + b * sx;
}

fn store(t: u32, o: u32, acc: f32) {
    var v = acc;
    if (p.has_bias != 0u) {
        v += bias[p.bias0 + o];
    }
    let i = t * p.out_stride + p.out_col0 + o;
    if (p.accumulate != 0u) {
        y[i] += v;
    } else {
        y[i] = v;
    }
}

fn reduce(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            partial[lid] += partial[lid + s];
        }
        workgroupBarrier();
    }
    let r = partial[0];
    workgroupBarrier();
    return r;
}

@compute @workgroup_size(64)
fn gemv_m0e4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o = wg.x + wg.y * p.grid_width;
    if (o >= p.n) {
        return;
    }
    let row = p.w_row0 + o;
    for (var t = 0u; t < p.seq; t++) {
        var acc = 0.0;
        for (var wi = lid; wi < p.words_per_row; wi += WG) {
            acc += m0e4_word(row, wi, t);
        }
        let total = reduce(lid, acc);
        if (lid == 0u) {
            store(t, o, total);
        }
    }
}

@compute @workgroup_size(64)
fn gemv_dense(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o = wg.x + wg.y * p.grid_width;
    if (o >= p.n) {
        return;
    }
    let wb = (p.w_row0 + o) * p.k;
    for (var t = 0u; t < p.seq; t++) {
        var acc = 0.0;
        for (var c = lid; c < p.k; c += WG) {
            acc += dense[wb + c] * x[t * p.k + c];
        }
        let total = reduce(lid, acc);
        if (lid == 0u) {
            store(t, o, total);
        }
    }
}

@compute @workgroup_size(8, 8)
fn gemm_m0e4(@builtin(global_invocation_id) gid: vec3<u32>) {
    let o = gid.x;
    let t = gid.y;
    if (o >= p.n || t >= p.seq) {
        return;
    }
    var acc = 0.0;
    for (var wi = 0u; wi < p.words_per_row; wi++) {
        acc += m0e4_word(p.w_row0 + o, wi, t);
    }
    store(t, o, acc);
}

@compute @workgroup_size(8, 8)
fn gemm_dense(@builtin(global_invocation_id) gid: vec3<u32>) {
    let o = gid.x;
    let t = gid.y;
    if (o >= p.n || t >= p.seq) {
        return;
    }
    let wb = (p.w_row0 + o) * p.k;
    var acc = 0.0;
    for (var c = 0u; c < p.k; c++) {
        acc += dense[wb + c] * x[t * p.k + c];
    }
    store(t, o, acc);
}
