// What the cooperative-matrix GEMMs (matmul_coop.wgsl, matmul_coop_few.wgsl) share: the load
// and f16 decode of 4 packed words of a weight row (the f16 conversions `h4` and `halves` come
// from the prelude, `F16_UNITS` in kernels/mod.rs).
// Each is built twice (`Kernel::source_for`): with its input in f32 (x4) and in f16 (x_h, as
// the ops before a projection write it in prefill); the prelude before this file defines the
// input's load unit `xv_t` of XV columns (f32: 4 as vec4<f32>; f16: 8 as vec4<u32>, one
// 16-byte load), `x_at(i)` (unit i) and `x_part(v, p)` (columns 4 p .. 4 p + 3 of v as f16).

// 4 consecutive packed words (32 weights) of a row, with each word's scale and bias.
struct Words4 {
    w: vec4<u32>,
    s: vec4<f32>,
    b: vec4<f32>,
}

// Words wi .. wi + 3 of weight row `row` (wi a multiple of 4; words_per_row too).
fn load_words4(row: u32, wi: u32) -> Words4 {
    var q: Words4;
    q.w = packed4[(row * params.words_per_row + wi) / 4u];
    if (params.group % 32u == 0u) {
        // The 32 columns are in one group (wi is a multiple of 4): one scale and one bias.
        let g = row * params.groups_per_row + wi * M0E4_PER_WORD / params.group;
        let sb = group_at(g);
        q.s = vec4<f32>(sb.x);
        q.b = vec4<f32>(sb.y);
        return q;
    }
    let g = vec4<u32>(row * params.groups_per_row)
        + (vec4<u32>(wi) + vec4<u32>(0u, 1u, 2u, 3u)) * M0E4_PER_WORD / params.group;
    let sb = groups4(g);
    q.s = sb[0];
    q.b = sb[1];
    return q;
}

// Word i of q decoded (S · (1 + q/16) + B) to f16: columns 0..3 and 4..7 of the word.
struct WordF16 {
    lo: vec4<f16>,
    hi: vec4<f16>,
}

fn word_f16(q: Words4, i: u32) -> WordF16 {
    let w = q.w[i];
    let s = vec2<f32>(q.s[i]);
    let b = vec2<f32>(q.b[i]);
    let p0 = fma(m0e4_pair(w, 0u), s, b);
    let p1 = fma(m0e4_pair(w, 1u), s, b);
    let p2 = fma(m0e4_pair(w, 2u), s, b);
    let p3 = fma(m0e4_pair(w, 3u), s, b);
    return WordF16(vec4<f16>(vec4<f32>(p0.x, p1.x, p2.x, p3.x)),
        vec4<f16>(vec4<f32>(p0.y, p1.y, p2.y, p3.y)));
}
