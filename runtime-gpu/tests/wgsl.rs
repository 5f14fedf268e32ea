//! Every WGSL kernel, as assembled, is parsed and validated by naga on the CPU (all entry
//! points), and each kernel's uniform `Params` has exactly the fields, in order, that the Rust
//! side writes (`Kernel::fields`), all 4 bytes wide.

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

fn uniform_members(module: &naga::Module) -> (Vec<String>, u32) {
    let (_, var) = module
        .global_variables
        .iter()
        .find(|(_, v)| v.space == naga::AddressSpace::Uniform)
        .expect("kernel has a uniform parameter struct");
    let ty = &module.types[var.ty];
    let naga::TypeInner::Struct { members, span } = &ty.inner else {
        panic!("uniform is not a struct")
    };
    (
        members
            .iter()
            .map(|m| m.name.clone().unwrap_or_default())
            .collect(),
        *span,
    )
}

#[test]
fn every_kernel_validates_with_all_its_entry_points() {
    for k in Kernel::ALL {
        let m = validate(&k.source(), k.name());
        let names: Vec<&str> = m.entry_points.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, k.entries(), "{}: entry points", k.name());
    }
}

#[test]
fn parameter_structs_match_rust() {
    for k in Kernel::ALL {
        let m = validate(&k.source(), k.name());
        let (members, span) = uniform_members(&m);
        assert_eq!(members, k.fields(), "{}: Params fields", k.name());
        assert_eq!(
            span as usize,
            4 * k.fields().len(),
            "{}: Params size",
            k.name()
        );
        assert_eq!(
            span % 16,
            0,
            "{}: uniform size must be a multiple of 16",
            k.name()
        );
    }
    assert_eq!(
        std::mem::size_of::<tlite_runtime_gpu::dequant::DequantParams>(),
        4 * Kernel::Dequant.fields().len()
    );
}
