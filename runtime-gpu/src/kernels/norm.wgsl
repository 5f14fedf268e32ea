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

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(4) var<storage, read> rows: array<u32>;
// rmsnorm_h's output: y as f16 pairs (element 2 i in the low half of word i).
@group(0) @binding(5) var<storage, read_write> y_h: array<u32>;



// rmsnorm: NT = NORM_WG (256) threads per row; each thread loads its (up to) NV values of the
// row at once and keeps them in registers for the second pass, so a row costs one round of
// memory latency rather than one per loop iteration (rows longer than NV · NT re-read the
// tail). The tree reduction needs a power of two.
const NT: u32 = NORM_WG;
const NV: u32 = 16u;
const_assert ((NT & (NT - 1u)) == 0u);
var<workgroup> nred: array<f32, NT>;

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
    if (params.mode == 1u) {
        y[i] += v;
    } else {
        y[i] = v;
    }
}

@compute @workgroup_size(NORM_WG)
fn rmsnorm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wg.x + wg.y * params.grid_width;
    if (r >= params.rows) {
        return;
    }
    var src = r;
    if (params.gather != 0u) {
        src = rows[r];
    }
    let xb = src * params.n;
    var vals: array<f32, NV>;
    var ss = 0.0;
    for (var k = 0u; k < NV; k++) {
        let i = lid + k * NT;
        let v = select(0.0, x[xb + min(i, params.n - 1u)], i < params.n);
        vals[k] = v;
        ss += v * v;
    }
    for (var i = lid + NV * NT; i < params.n; i += NT) {
        let v = x[xb + i];
        ss += v * v;
    }
    let scale = inverseSqrt(sum256(lid, ss) / f32(params.n) + params.eps);
    for (var k = 0u; k < NV; k++) {
        let i = lid + k * NT;
        if (i < params.n) {
            put(r * params.n + i, vals[k] * scale * (w[i] + params.w_offset));
        }
    }
    for (var i = lid + NV * NT; i < params.n; i += NT) {
        put(r * params.n + i, x[xb + i] * scale * (w[i] + params.w_offset));
    }
}

// rmsnorm's y = norm(x) (mode 0, no gather) into y_h as f16, for a projection on cooperative
// matrices that reads it so (graph/layer.rs); n even (the host checks). Thread lid takes the
// pairs lid + NT k of the row, NP of them held in registers between the passes.
const NP: u32 = NV / 2u;
@compute @workgroup_size(NORM_WG)
fn rmsnorm_h(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wg.x + wg.y * params.grid_width;
    if (r >= params.rows) {
        return;
    }
    let pairs = params.n / 2u;
    let xb = r * params.n;
    var vals: array<vec2<f32>, NP>;
    var ss = 0.0;
    for (var k = 0u; k < NP; k++) {
        let p = min(lid + k * NT, pairs - 1u);
        let v = select(vec2<f32>(0.0), vec2<f32>(x[xb + 2u * p], x[xb + 2u * p + 1u]), lid + k * NT < pairs);
        vals[k] = v;
        ss += dot(v, v);
    }
    for (var p = lid + NP * NT; p < pairs; p += NT) {
        let v = vec2<f32>(x[xb + 2u * p], x[xb + 2u * p + 1u]);
        ss += dot(v, v);
    }
    let scale = inverseSqrt(sum256(lid, ss) / f32(params.n) + params.eps);
    for (var k = 0u; k < NP; k++) {
        let p = lid + k * NT;
        if (p < pairs) {
            put_h(r * pairs + p, vals[k] * scale, p);
        }
    }
    for (var p = lid + NP * NT; p < pairs; p += NT) {
        put_h(r * pairs + p, vec2<f32>(x[xb + 2u * p], x[xb + 2u * p + 1u]) * scale, p);
    }
}

// Pair p of a row, times the weights, to word i of y_h as f16 (clamped to the finite range).
fn put_h(i: u32, v: vec2<f32>, p: u32) {
    let wv = vec2<f32>(w[2u * p], w[2u * p + 1u]) + params.w_offset;
    y_h[i] = pack2x16float(clamp(v * wv, vec2<f32>(-65504.0), vec2<f32>(65504.0)));
}

@compute @workgroup_size(REDUCE_WG)
fn rmsnorm_inplace(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wg.x + wg.y * params.grid_width;
    if (r >= params.rows) {
        return;
    }
    var ss = 0.0;
    for (var i = lid; i < params.n; i += REDUCE_WG) {
        let v = y[r * params.n + i];
        ss += v * v;
    }
    let scale = inverseSqrt(reduce_sum(lid, ss) / f32(params.n) + params.eps);
    for (var i = lid; i < params.n; i += REDUCE_WG) {
        y[r * params.n + i] = y[r * params.n + i] * scale * (w[i] + params.w_offset);
    }
}
