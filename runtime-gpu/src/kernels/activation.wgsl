// ---- gated-MLP activations (shared by several kernels) ----
fn gelu_tanh(x: f32) -> f32 {
    let u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return 0.5 * x * (1.0 + tanh(clamp(u, -15.0, 15.0)));
}

// act(g) for the gated MLP: 0 SiLU, 1 GELU-tanh.
fn glu_act(g: f32, act: u32) -> f32 {
    if (act == 0u) {
        return g / (1.0 + exp(-g));
    }
    return gelu_tanh(g);
}
// ---- end of activations ----
