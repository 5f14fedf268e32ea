//! llama.cpp's Q/K row permutation for `llama` checkpoints, and its inverse.
//!
//! Hugging Face Llama applies RoPE to the two halves of each head (`rotate_half`); llama.cpp's
//! `llama` graph rotates adjacent pairs. Its converter reorders the rows of `q_proj` and
//! `k_proj` so that the two agree:
//!
//! ```text
//! w.reshape(n_head, 2, rows / n_head / 2, cols).swapaxes(1, 2).reshape(rows, cols)
//! ```
//!
//! so GGUF row `h·d + 2i + j` holds Hugging Face row `h·d + j·d/2 + i` (head size `d`,
//! `i < d/2`, `j ∈ {0, 1}`). [`unpermute_rows`] puts every row back.

/// llama.cpp's permutation of the rows of a row-major `[rows, cols]` matrix over `n_head`
/// heads, as its converter applies it. Kept as the specification [`unpermute_rows`] inverts.
///
/// Panics if `rows` is not a multiple of `2 * n_head` or `data.len() != rows * cols`.
pub fn permute_rows(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    reorder(data, rows, cols, n_head, |h, d, i, j| {
        (h * d + 2 * i + j, h * d + j * (d / 2) + i)
    })
}

/// The inverse of [`permute_rows`]: GGUF row order back to Hugging Face row order.
///
/// Panics if `rows` is not a multiple of `2 * n_head` or `data.len() != rows * cols`; the
/// importer checks both before calling.
pub fn unpermute_rows(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    reorder(data, rows, cols, n_head, |h, d, i, j| {
        (h * d + j * (d / 2) + i, h * d + 2 * i + j)
    })
}

/// Whether a `[rows, _]` matrix can be (un)permuted over `n_head` heads.
pub fn can_permute(rows: usize, n_head: usize) -> bool {
    n_head > 0 && rows.is_multiple_of(2 * n_head)
}

/// Copies row `src` to row `dst` for every `(dst, src) = map(head, head_size, i, j)`.
fn reorder(
    data: &[f32],
    rows: usize,
    cols: usize,
    n_head: usize,
    map: impl Fn(usize, usize, usize, usize) -> (usize, usize),
) -> Vec<f32> {
    assert!(can_permute(rows, n_head), "{rows} rows over {n_head} heads");
    assert_eq!(data.len(), rows * cols, "data is not [{rows}, {cols}]");
    let d = rows / n_head;
    let mut out = vec![0.0f32; data.len()];
    for h in 0..n_head {
        for i in 0..d / 2 {
            for j in 0..2 {
                let (dst, src) = map(h, d, i, j);
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}
