//! Every WGSL kernel, as assembled, is parsed and validated by naga on the CPU (all entry
//! points), and its interface is checked against the Rust side (`kernels::params`): the
//! uniform `Params` member by member (name, byte offset, scalar type) and its size, every
//! binding index by the WGSL variable's name, and every entry point's workgroup size.

use std::collections::BTreeMap;

use tlite_runtime_gpu::kernels::params::{self, Member, Scalar};
use tlite_runtime_gpu::kernels::{Kernel, MatmulParams};

fn validate(src: &str, name: &str) -> (naga::Module, naga::valid::ModuleInfo) {
    let module = naga::front::wgsl::parse_str(src)
        .unwrap_or_else(|e| panic!("{name}.wgsl does not parse:\n{}", e.emit_to_string(src)));
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::all(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{name}.wgsl does not validate:\n{}", e.emit_to_string(src)));
    (module, info)
}

/// A member of the WGSL uniform struct.
struct WgslMember {
    name: String,
    offset: usize,
    ty: Scalar,
}

/// The members of the WGSL uniform struct and its size.
fn uniform_members(k: Kernel, module: &naga::Module) -> (Vec<WgslMember>, u32) {
    let uniforms: Vec<_> = module
        .global_variables
        .iter()
        .filter(|(_, v)| v.space == naga::AddressSpace::Uniform)
        .collect();
    assert_eq!(uniforms.len(), 1, "{}: one uniform", k.name());
    let ty = &module.types[uniforms[0].1.ty];
    let naga::TypeInner::Struct { members, span } = &ty.inner else {
        panic!("{}: the uniform is not a struct", k.name())
    };
    let members = members
        .iter()
        .map(|m| {
            let name = m.name.clone().unwrap_or_default();
            let ty = match module.types[m.ty].inner {
                naga::TypeInner::Scalar(naga::Scalar { kind, width: 4 }) => match kind {
                    naga::ScalarKind::Uint => Scalar::U32,
                    naga::ScalarKind::Float => Scalar::F32,
                    naga::ScalarKind::Sint => Scalar::I32,
                    other => panic!("{}: Params.{name} is {other:?}", k.name()),
                },
                ref other => panic!(
                    "{}: Params.{name} is not a 4-byte scalar: {other:?}",
                    k.name()
                ),
            };
            WgslMember {
                name,
                offset: m.offset as usize,
                ty,
            }
        })
        .collect();
    (members, *span)
}

#[test]
fn every_kernel_validates_with_all_its_entry_points() {
    for k in Kernel::ALL {
        // With the f32 and the f16 KV cache (only attention, rope_kv and matmul differ).
        for kv_f16 in [false, true] {
            let (m, _) = validate(&k.source_for(kv_f16), k.name());
            let names: Vec<&str> = m.entry_points.iter().map(|e| e.name.as_str()).collect();
            assert_eq!(names, k.entries(), "{}: entry points", k.name());
        }
    }
    for k in [Kernel::Attention, Kernel::RopeKv, Kernel::Matmul] {
        assert!(k.source_for(true).contains("alias kv_t = f16;"));
        assert!(k.source_for(false).contains("alias kv_t = f32;"));
    }
}

#[test]
fn parameter_structs_match_rust() {
    for k in Kernel::ALL {
        let (m, _) = validate(&k.source(), k.name());
        let (wgsl, span) = uniform_members(k, &m);
        let rust = k.members();
        // By name, so that a moved field reports its offset.
        for w in &wgsl {
            let r = rust.iter().find(|r| r.name == w.name).unwrap_or_else(|| {
                panic!(
                    "{}: Params.{} of the WGSL has no field in the Rust struct",
                    k.name(),
                    w.name
                )
            });
            assert_eq!(
                w.offset,
                r.offset,
                "{}: Params.{} is at byte {} in the WGSL, {} in Rust",
                k.name(),
                w.name,
                w.offset,
                r.offset
            );
            assert_eq!(
                w.ty,
                r.ty,
                "{}: Params.{} is {:?} in the WGSL, {:?} in Rust",
                k.name(),
                w.name,
                w.ty,
                r.ty
            );
        }
        for r in rust {
            assert!(
                wgsl.iter().any(|w| w.name == r.name),
                "{}: field `{}` of the Rust struct is no member of the WGSL Params",
                k.name(),
                r.name
            );
        }
        let rust_names: Vec<&str> = rust.iter().map(|m: &Member| m.name).collect();
        assert_eq!(
            wgsl.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            rust_names,
            "{}: Params members (WGSL, then Rust)",
            k.name()
        );
        assert_eq!(
            span as usize,
            k.params_size(),
            "{}: Params size (WGSL, then Rust)",
            k.name()
        );
        assert_eq!(
            span % 16,
            0,
            "{}: uniform size must be a multiple of 16",
            k.name()
        );
        assert_eq!(k.fields(), rust_names, "{}: Kernel::fields", k.name());
    }
    assert_eq!(
        std::mem::size_of::<tlite_runtime_gpu::dequant::DequantParams>(),
        Kernel::Dequant.params_size()
    );
}

#[test]
fn bindings_match_rust() {
    for k in Kernel::ALL {
        let (m, _) = validate(&k.source(), k.name());
        let wgsl: BTreeMap<String, u32> = m
            .global_variables
            .iter()
            .filter_map(|(_, v)| {
                let b = v.binding.as_ref()?;
                assert_eq!(b.group, 0, "{}: `{:?}` is not in group 0", k.name(), v.name);
                Some((v.name.clone().unwrap_or_default(), b.binding))
            })
            .collect();
        let rust: BTreeMap<String, u32> = k
            .bindings()
            .iter()
            .map(|(n, i)| (n.to_ascii_lowercase(), *i))
            .collect();
        for (name, i) in &wgsl {
            let r = rust.get(name).unwrap_or_else(|| {
                panic!(
                    "{}: WGSL `{name}` (@binding({i})) has no constant binding::{}::{}",
                    k.name(),
                    k.name(),
                    name.to_ascii_uppercase()
                )
            });
            assert_eq!(
                r,
                i,
                "{}: `{name}` is @binding({i}) in the WGSL, binding::{}::{} = {r} in Rust",
                k.name(),
                k.name(),
                name.to_ascii_uppercase()
            );
        }
        for name in rust.keys() {
            assert!(
                wgsl.contains_key(name),
                "{}: binding::{}::{} names no WGSL global `{name}`",
                k.name(),
                k.name(),
                name.to_ascii_uppercase()
            );
        }
        assert_eq!(
            wgsl.get("params"),
            Some(&params::binding::PARAMS),
            "{}: the uniform `params`",
            k.name()
        );
    }
}

#[test]
fn workgroup_sizes_match_rust() {
    for k in Kernel::ALL {
        let (m, _) = validate(&k.source(), k.name());
        for ep in &m.entry_points {
            assert_eq!(
                ep.workgroup_size,
                [k.workgroup_size(&ep.name), 1, 1],
                "{}::{}: workgroup size (WGSL, then Rust)",
                k.name(),
                ep.name
            );
        }
    }
}

/// The shared constants are in every kernel's module with the values Rust has.
#[test]
fn shared_constants_reach_the_wgsl() {
    for k in Kernel::ALL {
        let (m, _) = validate(&k.source(), k.name());
        for (name, value) in params::WGSL_CONSTANTS {
            let (_, c) = m
                .constants
                .iter()
                .find(|(_, c)| c.name.as_deref() == Some(name))
                .unwrap_or_else(|| panic!("{}: no WGSL constant {name}", k.name()));
            let naga::Expression::Literal(naga::Literal::U32(v)) = m.global_expressions[c.init]
            else {
                panic!("{}: {name} is not a u32 literal", k.name());
            };
            assert_eq!(u64::from(v), *value, "{}: {name}", k.name());
        }
    }
    let (m, _) = validate(&Kernel::Matmul.source(), "matmul");
    let xs = m
        .global_variables
        .iter()
        .find(|(_, v)| v.name.as_deref() == Some("xs"))
        .expect("matmul.wgsl stages the fused norm's input in `xs`")
        .1;
    let naga::TypeInner::Array { size, stride, .. } = m.types[xs.ty].inner else {
        panic!("xs is not an array")
    };
    let naga::ArraySize::Constant(n) = size else {
        panic!("xs has no constant size")
    };
    assert_eq!(
        n.get() as usize * stride as usize / 4,
        params::NORM_MAX_K,
        "xs holds NORM_MAX_K f32"
    );
}

/// `gemv_m0e4_glu` binds as many storage buffers as the plan assumes when it checks the
/// device limit.
#[test]
fn glu_gemv_storage_buffers() {
    let k = Kernel::Matmul;
    let (m, info) = validate(&k.source(), k.name());
    let (i, _) = (m.entry_points.iter().enumerate())
        .find(|(_, e)| e.name == "gemv_m0e4_glu")
        .expect("gemv_m0e4_glu");
    let ep = info.get_entry_point(i);
    let storage = (m.global_variables.iter())
        .filter(|(h, v)| {
            matches!(v.space, naga::AddressSpace::Storage { .. }) && !ep[*h].is_empty()
        })
        .count();
    assert_eq!(storage as u32, params::GEMV_GLU_STORAGE_BUFFERS);
}

/// The typed struct writes the bytes the WGSL reads at each member's offset.
#[test]
fn typed_params_bytes() {
    let p = MatmulParams {
        n: 5,
        eps: 0.25,
        blocks: 3,
        ..Default::default()
    };
    let bytes = bytemuck::bytes_of(&p);
    let at = |name: &str| {
        let m = MatmulParams::MEMBERS
            .iter()
            .find(|m| m.name == name)
            .unwrap();
        u32::from_le_bytes(bytes[m.offset..m.offset + 4].try_into().unwrap())
    };
    assert_eq!(at("n"), 5);
    assert_eq!(at("eps"), 0.25f32.to_bits());
    assert_eq!(at("blocks"), 3);
}

/// `ATTENTION_DECODE_BYTES`, against which the plan checks the device's workgroup memory
/// (`OnePass::of`), is what the one-pass decode entry points use, as naga lays it out.
#[test]
fn one_pass_decode_workgroup_bytes() {
    let k = Kernel::Attention;
    let (m, info) = validate(&k.source(), k.name());
    let mut checked = 0;
    for (i, ep) in m.entry_points.iter().enumerate() {
        if !matches!(ep.name.as_str(), "decode" | "decode_wide") {
            continue;
        }
        let uses = info.get_entry_point(i);
        let bytes: u32 = (m.global_variables.iter())
            .filter(|(h, v)| v.space == naga::AddressSpace::WorkGroup && !uses[*h].is_empty())
            .map(|(_, v)| m.types[v.ty].inner.size(m.to_ctx()))
            .sum();
        assert_eq!(
            bytes,
            params::ATTENTION_DECODE_BYTES,
            "attention::{}: workgroup bytes (WGSL, then Rust)",
            ep.name
        );
        checked += 1;
    }
    assert_eq!(checked, 2, "both one-pass entry points");
}

/// `ATTENTION_COOP_BYTES` (which device.rs checks against the coop GEMM's workgroup memory, the
/// condition both share) is what `attention_coop::prefill` uses, as naga lays it out.
#[test]
fn coop_attention_workgroup_bytes() {
    let k = Kernel::AttentionCoop;
    let (m, _) = validate(&k.source(), k.name());
    let bytes: u32 = (m.global_variables.iter())
        .filter(|(_, v)| v.space == naga::AddressSpace::WorkGroup)
        .map(|(_, v)| m.types[v.ty].inner.size(m.to_ctx()))
        .sum();
    assert_eq!(bytes, params::ATTENTION_COOP_BYTES, "WGSL, then Rust");
}

/// Every kernel, with either KV cache type, translates to SPIR-V (what the Vulkan backend
/// loads): the cooperative-matrix kernels, which CI's adapter cannot run, at least get this far.
#[test]
fn every_kernel_translates_to_spirv() {
    for k in Kernel::ALL {
        for kv_f16 in [false, true] {
            let src = k.source_for(kv_f16);
            let (m, info) = validate(&src, k.name());
            let options = naga::back::spv::Options::default();
            naga::back::spv::write_vec(&m, &info, &options, None).unwrap_or_else(|e| {
                panic!(
                    "{} (f16 KV cache: {kv_f16}) does not translate to SPIR-V: {e}",
                    k.name()
                )
            });
        }
    }
}
