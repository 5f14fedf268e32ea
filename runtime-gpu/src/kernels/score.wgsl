// Scoring rows of logits for perplexity and KL divergence (`tlite ppl / compare / sweep` on the
// GPU), one workgroup of REDUCE_WG threads per row, so that nothing vocabulary-sized is read
// back: the row's log-sum-exp, the log-probability of its target token, its argmax, optionally
// its top `k_out` log-probabilities, and optionally KL(base ‖ this row) against a baseline given
// either as the baseline's own logits of the same rows (`base_mode` 1: exact) or as the
// baseline's top `k_in` log-probabilities per row with the rest of its mass as one bucket
// (`base_mode` 2: a lower bound of the exact divergence, by the log-sum inequality).
//
// Per row, SCORE_OUT words of `out` (f32 bits, indices as u32): [lse, logprob of target,
// argmax, KL, baseline lse, baseline logprob of target, baseline argmax, this row's mass on
// the baseline's top k_in]. Entries a mode does not compute are 0.
//
// The host checks every size: `logits` holds rows × vocab values, `base` (mode 1) as many,
// `base_ids` / `base_lp` (mode 2) rows × k_in, `top_ids` / `top_lp` rows × k_out, k_out ≤ vocab;
// token ids read from buffers are clamped into the vocabulary.

struct Params {
    rows: u32,
    vocab: u32,
    // 0: no baseline, 1: baseline logits (`base`), 2: baseline top-k (`base_ids`, `base_lp`).
    base_mode: u32,
    k_in: u32,
    k_out: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read> base: array<f32>;
@group(0) @binding(4) var<storage, read> base_ids: array<u32>;
@group(0) @binding(5) var<storage, read> base_lp: array<f32>;
@group(0) @binding(6) var<storage, read_write> out: array<u32>;
@group(0) @binding(7) var<storage, read_write> top_ids: array<u32>;
@group(0) @binding(8) var<storage, read_write> top_lp: array<f32>;

const NEG_INF: f32 = -3.4028235e38;

var<workgroup> am_v: array<f32, REDUCE_WG>;
var<workgroup> am_i: array<u32, REDUCE_WG>;

// Whether (v, i) ranks before (w, j): larger value first, the lower index on ties.
fn ranks_before(v: f32, i: u32, w: f32, j: u32) -> bool {
    return v > w || (v == w && i < j);
}

struct Ranked {
    v: f32,
    i: u32,
}

// The first-ranked (value, index) over the workgroup.
fn reduce_argmax(lid: u32, v: f32, i: u32) -> Ranked {
    am_v[lid] = v;
    am_i[lid] = i;
    workgroupBarrier();
    for (var s = REDUCE_WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s && ranks_before(am_v[lid + s], am_i[lid + s], am_v[lid], am_i[lid])) {
            am_v[lid] = am_v[lid + s];
            am_i[lid] = am_i[lid + s];
        }
        workgroupBarrier();
    }
    let r = Ranked(am_v[0], am_i[0]);
    workgroupBarrier();
    return r;
}

// Log-sum-exp (`v`) and argmax (`i`) of the row of `vocab` values of `src` (0: logits, 1: base)
// at `off`.
fn row_stats(lid: u32, src: u32, off: u32) -> Ranked {
    let n = params.vocab;
    var m = NEG_INF;
    var mi = 0xffffffffu;
    for (var v = lid; v < n; v += REDUCE_WG) {
        var x: f32;
        if (src == 0u) { x = logits[off + v]; } else { x = base[off + v]; }
        if (ranks_before(x, v, m, mi)) {
            m = x;
            mi = v;
        }
    }
    let best = reduce_argmax(lid, m, mi);
    let mx = best.v;
    var s = 0.0;
    for (var v = lid; v < n; v += REDUCE_WG) {
        var x: f32;
        if (src == 0u) { x = logits[off + v]; } else { x = base[off + v]; }
        s += exp(x - mx);
    }
    let total = reduce_sum(lid, s);
    return Ranked(mx + log(total), best.i);
}

@compute @workgroup_size(REDUCE_WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = wg.x;
    if (row >= params.rows) {
        return;
    }
    let n = params.vocab;
    let off = row * n;
    let tgt = min(targets[row], n - 1u);
    let st = row_stats(lid, 0u, off);
    let lse = st.v;
    var kl = 0.0;
    var base_lse = 0.0;
    var base_target = 0.0;
    var base_arg = 0u;
    var mass = 0.0;
    if (params.base_mode == 1u) {
        let bs = row_stats(lid, 1u, off);
        base_lse = bs.v;
        base_arg = bs.i;
        base_target = base[off + tgt] - base_lse;
        var part = 0.0;
        for (var v = lid; v < n; v += REDUCE_WG) {
            let lb = base[off + v] - base_lse;
            part += exp(lb) * (lb - (logits[off + v] - lse));
        }
        kl = reduce_sum(lid, part);
    } else if (params.base_mode == 2u) {
        let k = params.k_in;
        var part = 0.0;
        var mp = 0.0;
        var mq = 0.0;
        for (var j = lid; j < k; j += REDUCE_WG) {
            let id = min(base_ids[row * k + j], n - 1u);
            let lb = base_lp[row * k + j];
            let lq = logits[off + id] - lse;
            let pb = exp(lb);
            part += pb * (lb - lq);
            mp += pb;
            mq += exp(lq);
        }
        let top = reduce_sum(lid, part);
        let p_in = reduce_sum(lid, mp);
        let q_in = reduce_sum(lid, mq);
        let rp = max(1.0 - p_in, 0.0);
        let rq = max(1.0 - q_in, 1e-30);
        kl = top;
        if (rp > 0.0) {
            kl += rp * (log(rp) - log(rq));
        }
        mass = q_in;
        base_arg = min(base_ids[row * k], n - 1u);
    }
    // The top k_out: round j takes the first-ranked value ranking after round j-1's.
    var pv = 0.0;
    var pi = 0u;
    for (var j = 0u; j < params.k_out; j++) {
        var m = NEG_INF;
        var mi = 0xffffffffu;
        for (var v = lid; v < n; v += REDUCE_WG) {
            let x = logits[off + v];
            let after = j == 0u || x < pv || (x == pv && v > pi);
            if (after && ranks_before(x, v, m, mi)) {
                m = x;
                mi = v;
            }
        }
        let best = reduce_argmax(lid, m, mi);
        pv = best.v;
        pi = best.i;
        if (lid == 0u) {
            top_ids[row * params.k_out + j] = min(pi, n - 1u);
            top_lp[row * params.k_out + j] = pv - lse;
        }
    }
    if (lid == 0u) {
        let o = row * SCORE_OUT;
        out[o] = bitcast<u32>(lse);
        out[o + 1u] = bitcast<u32>(logits[off + tgt] - lse);
        out[o + 2u] = st.i;
        out[o + 3u] = bitcast<u32>(kl);
        out[o + 4u] = bitcast<u32>(base_lse);
        out[o + 5u] = bitcast<u32>(base_target);
        out[o + 6u] = base_arg;
        out[o + 7u] = bitcast<u32>(mass);
    }
}

// Greedy decoding on the GPU (one workgroup): the argmax of row 0 of `logits` — the lowest id
// on ties and NaN never chosen, as the CPU sampler's argmax — written to `out[0]`, the model's
// token buffer that the next step's embedding reads, and the raw index to `out[1]` for the host
// (0xffffffff when the row has no value above -3.4e38: non-finite logits, which the host
// refuses; `out[0]` is clamped into the vocabulary all the same).
@compute @workgroup_size(REDUCE_WG)
fn next_token(@builtin(local_invocation_index) lid: u32) {
    let n = params.vocab;
    var m = NEG_INF;
    var mi = 0xffffffffu;
    for (var v = lid; v < n; v += REDUCE_WG) {
        let x = logits[v];
        if (ranks_before(x, v, m, mi)) {
            m = x;
            mi = v;
        }
    }
    let best = reduce_argmax(lid, m, mi);
    if (lid == 0u) {
        out[0] = min(best.i, n - 1u);
        out[1] = best.i;
    }
}
