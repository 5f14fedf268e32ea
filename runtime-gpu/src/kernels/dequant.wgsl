// M0E4 → f32 dequantization of a packed [rows, cols] matrix: one invocation per packed word.
// w' = fma(1 + q/16, S, B), with S and B the group's f16 parameters (two per u32).

struct Params {
    rows: u32,
    cols: u32,
    group: u32,
    words_per_row: u32,
    groups_per_row: u32,
    // invocations per row of the dispatch grid (x extent × DEQUANT_WG)
    grid_width: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> packed: array<u32>;
@group(0) @binding(2) var<storage, read> scales: array<u32>;
@group(0) @binding(3) var<storage, read> biases: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn half_of(word: u32, i: u32) -> f32 {
    let v = unpack2x16float(word);
    return select(v.x, v.y, (i & 1u) == 1u);
}

@compute @workgroup_size(DEQUANT_WG)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x + gid.y * params.grid_width;
    if (i >= params.rows * params.words_per_row) {
        return;
    }
    let row = i / params.words_per_row;
    let col0 = (i % params.words_per_row) * M0E4_PER_WORD;
    let g = row * params.groups_per_row + col0 / params.group;
    let s = half_of(scales[g >> 1u], g);
    let b = half_of(biases[g >> 1u], g);
    let word = packed[i];
    let base = row * params.cols + col0;
    for (var k = 0u; k < 4u; k++) {
        let v = m0e4_pair(word, k);
        if (col0 + k < params.cols) {
            out[base + k] = fma(v.x, s, b);
        }
        if (col0 + k + 4u < params.cols) {
            out[base + k + 4u] = fma(v.y, s, b);
        }
    }
}
