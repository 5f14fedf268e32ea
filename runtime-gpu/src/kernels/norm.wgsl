// RMSNorm of rows of length n: y = x · rsqrt(mean(x²) + eps) · (w + w_offset), w_offset = 1
// for Gemma's `1 + w` convention. One workgroup per row. Row r reads source row rows[r] when
// `gather` is set (logits for chosen positions only). mode 0 writes y, mode 1 adds into y
// (sandwich norms fused with the residual add). `inplace` normalizes y's own rows (QK-norm).

struct Params {
    rows: u32,
    n: u32,
    mode: u32,
    gather: u32,
    eps: f32,
    w_offset: f32,
    grid_width: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> rows: array<u32>;



// rmsnorm: 256 threads per row; each thread loads its (up to) NV values of the row at once and
// keeps them in registers for the second pass, so a row costs one round of memory latency
// rather than one per loop iteration (rows longer than NV · 256 re-read the tail).
const NT: u32 = 256u;
const NV: u32 = 16u;
var<workgroup> nred: array<f32, 256>;

fn sum256(lid: u32, v: f32) -> f32 {
    nred[lid] = v;
    workgroupBarrier();
    for (var s = NT / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            nred[lid] += nred[lid + s];
        }
        workgroupBarrier();
    }
    return nred[0];
}

fn put(i: u32, v: f32) {
    if (p.mode == 1u) {
        y[i] += v;
    } else {
        y[i] = v;
    }
}

@compute @workgroup_size(256)
fn rmsnorm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wg.x + wg.y * p.grid_width;
    if (r >= p.rows) {
        return;
    }
    var src = r;
    if (p.gather != 0u) {
        src = rows[r];
    }
    let xb = src * p.n;
    var vals: array<f32, 16>;
    var ss = 0.0;
    for (var k = 0u; k < NV; k++) {
        let i = lid + k * NT;
        let v = select(0.0, x[xb + min(i, p.n - 1u)], i < p.n);
        vals[k] = v;
        ss += v * v;
    }
    for (var i = lid + NV * NT; i < p.n; i += NT) {
        let v = x[xb + i];
        ss += v * v;
    }
    let scale = inverseSqrt(sum256(lid, ss) / f32(p.n) + p.eps);
    for (var k = 0u; k < NV; k++) {
        let i = lid + k * NT;
        if (i < p.n) {
            put(r * p.n + i, vals[k] * scale * (w[i] + p.w_offset));
        }
    }
    for (var i = lid + NV * NT; i < p.n; i += NT) {
        put(r * p.n + i, x[xb + i] * scale * (w[i] + p.w_offset));
    }
}

@compute @workgroup_size(64)
fn rmsnorm_inplace(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wg.x + wg.y * p.grid_width;
    if (r >= p.rows) {
        return;
    }
    var ss = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        let v = y[r * p.n + i];
        ss += v * v;
    }
    let scale = inverseSqrt(reduce_sum(lid, ss) / f32(p.n) + p.eps);
    for (var i = lid; i < p.n; i += WG) {
        y[r * p.n + i] = y[r * p.n + i] * scale * (w[i] + p.w_offset);
    }
}
