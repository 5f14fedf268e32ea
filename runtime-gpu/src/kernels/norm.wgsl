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



@compute @workgroup_size(64)
fn rmsnorm(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let r = wg.x + wg.y * p.grid_width;
    if (r >= p.rows) {
        return;
    }
    var src = r;
    if (p.gather != 0u) {
        src = rows[r];
    }
    var ss = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        let v = x[src * p.n + i];
        ss += v * v;
    }
    let scale = inverseSqrt(reduce_sum(lid, ss) / f32(p.n) + p.eps);
    for (var i = lid; i < p.n; i += WG) {
        let v = x[src * p.n + i] * scale * (w[i] + p.w_offset);
        if (p.mode == 1u) {
            y[r * p.n + i] += v;
        } else {
            y[r * p.n + i] = v;
        }
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
