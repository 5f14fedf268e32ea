// What the attention kernels (attention.wgsl, attention_coop.wgsl) share: the parameters, the
// bindings both read, the sliding window's first key and the logits' soft-cap.

struct Params {
    seq: u32,
    past: u32,
    heads: u32,
    kv_heads: u32,
    hd: u32,
    max_seq: u32,
    window: u32,
    splits: u32,
    kps: u32,
    scale: f32,
    softcap: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
// The K cache as vectors (hd % 4 == 0): a key's dot product in hd / 4 loads.
@group(0) @binding(6) var<storage, read> kcache4: array<vec4<kv_t>>;
// The V cache as vectors.
@group(0) @binding(7) var<storage, read> vcache4: array<vec4<kv_t>>;

// The first key position query position qi attends to: 0, or the start of its sliding window.
fn window_start(qi: u32) -> u32 {
    if (params.window > 0u && qi + 1u > params.window) {
        return qi + 1u - params.window;
    }
    return 0u;
}

// Score s soft-capped where the model caps attention logits (Gemma 2): cap · tanh(s / cap), the
// argument clamped to ±15 (tanh is ±1 in f32 there; a tanh built from exponentials would give
// inf / inf far past it).
fn soft_cap(s: f32) -> f32 {
    if (params.softcap > 0.0) {
        return params.softcap * tanh(clamp(s / params.softcap, -15.0, 15.0));
    }
    return s;
}
