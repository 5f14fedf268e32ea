// ---- workgroup reductions over REDUCE_WG invocations (shared by several kernels) ----
const_assert ((REDUCE_WG & (REDUCE_WG - 1u)) == 0u);
var<workgroup> wg_red: array<f32, REDUCE_WG>;

fn wg_reduce(lid: u32, v: f32, take_max: bool) -> f32 {
    wg_red[lid] = v;
    workgroupBarrier();
    for (var s = REDUCE_WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            if (take_max) {
                wg_red[lid] = max(wg_red[lid], wg_red[lid + s]);
            } else {
                wg_red[lid] += wg_red[lid + s];
            }
        }
        workgroupBarrier();
    }
    let r = wg_red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(lid: u32, v: f32) -> f32 {
    return wg_reduce(lid, v, false);
}

fn reduce_max(lid: u32, v: f32) -> f32 {
    return wg_reduce(lid, v, true);
}
// ---- end of reductions ----
