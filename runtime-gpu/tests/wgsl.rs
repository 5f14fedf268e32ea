//! Every WGSL kernel, as assembled, is parsed and validated by naga on the CPU, and each
//! kernel's Rust parameter struct is checked against the WGSL struct's size.

use tlite_runtime_gpu::kernels::Kernel;

fn validate(src: &str, name: &str) -> naga::Module {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}.wgsl does not parse:\n{}", e.emit_to_string(src)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{name}.wgsl does not validate: {e:?}"));
    module
}

fn uniform_size(module: &naga::Module) -> u32 {
    let (_, var) = module
        .global_variables
        .iter()
        .find(|(_, v)| v.space == naga::AddressSpace::Uniform)
        .expect("kernel has a uniform parameter struct");
    module.types[var.ty].inner.size(module.to_ctx())
}

#[test]
fn every_kernel_validates() {
    for k in Kernel::ALL {
        validate(&k.source(), k.name());
    }
}

#[test]
fn parameter_structs_match_rust() {
    let m = validate(&Kernel::Dequant.source(), "dequant");
    assert_eq!(
        uniform_size(&m) as usize,
        std::mem::size_of::<tlite_runtime_gpu::dequant::DequantParams>()
    );
}
