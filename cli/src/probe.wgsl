// The priority probe, a stand-in for a UI's small GPU job: y = A·x for an n×n f32 matrix,
// one invocation per row. Its only purpose is to be small, real work whose submit→completion
// latency shows how long another context's GPU work keeps it waiting.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let r = id.x;
    if r >= p.n {
        return;
    }
    var acc = 0.0;
    for (var c = 0u; c < p.n; c++) {
        acc += a[r * p.n + c] * x[c];
    }
    y[r] = acc;
}
