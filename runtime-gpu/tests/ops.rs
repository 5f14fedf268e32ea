//! Every WGSL entry point against a plain CPU implementation (in f64), one case per branch the
//! plan's selector (`graph/decision.rs`) can take, in the spirit of llama.cpp's test-backend-ops.
//!
//! Each case builds the pipeline from `Kernel::source()`, writes the uniform through
//! [`params`], binds the buffers the entry point uses (found with naga, as wgpu's automatic
//! layout does), dispatches the grid the plan would use and reads back every buffer the kernel
//! writes. Outputs are compared by NMSE, Σ(gpu − cpu)² / Σcpu², against the one table
//! [`TOLERANCES`]; elements a kernel must not touch start as a NaN sentinel and must come back
//! bit for bit. A case prints `kernel::entry description seed=… nmse=… tol=…`, and the test
//! fails if any case fails or if an entry point of `Kernel::ALL` has no case.
//!
//! Kernels run as the runtime runs them: without naga's bounds checks
//! (`ShaderChecks::Unchecked`).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::io::Write as _;
use std::ops::Range;
use std::sync::OnceLock;

use tlite_quantizer::rng::Rng;
use tlite_quantizer::{M0E4Matrix, Method, QuantOptions};
use tlite_runtime_gpu::Gpu;
use tlite_runtime_gpu::dequant::{group_words, halves_to_words};
use tlite_runtime_gpu::graph::SMALL_PREFILL;
use tlite_runtime_gpu::graph::decision::{COOP_LARGE_GROUP_UNIT, NARROW_NORM_MIN_K};
use tlite_runtime_gpu::kernels::params::{
    ATTENTION_COOP_MAX_HD, ATTENTION_COOP_QUERIES, ATTENTION_DECODE_KEYS, ATTENTION_PREFILL_MAX_HD,
    ATTENTION_PREFILL_QUERIES, COOP_FEW_ROWS, COOP_FEW_TOKENS, COOP_K, COOP_ROWS, COOP_SMALL_ROWS,
    COOP_SMALL_TOKENS, COOP_TOKENS, DEQUANT_WG, ELEMENTWISE_WG, GEMM_ROWS, GEMM_TOKENS,
    GEMV_GLU_OUTPUTS, GEMV_ROWS, GEMV_WIDE_COLS, GEMV_WIDE_ROWS, GLU_PER_THREAD, NORM_MAX_K,
    ROPE_KV_WG, SCORE_OUT,
};
use tlite_runtime_gpu::kernels::{Kernel, Scalar, binding};
use wgpu::util::DeviceExt;

/// NMSE tolerance per entry point. The f32 kernels against an f64 reference computed from the
/// same (dequantized) weights: what is left is f32 rounding, summation order and the GPU's
/// `exp`/`tanh`/`inverseSqrt`.
const TOLERANCES: &[(&str, f64)] = &[
    // Bit for bit with the quantizer's decoder.
    ("dequant::main", 0.0),
    ("matmul::gemv_m0e4", 1e-10),
    ("matmul::gemv_m0e4_wide", 1e-10),
    ("matmul::gemv_m0e4_glu", 1e-10),
    ("matmul::gemv_m0e4_norm", 1e-10),
    ("matmul::gemv_m0e4_norm_rope", 1e-10),
    ("matmul::gemv_m0e4_tokens", 1e-10),
    ("matmul::gemv_m0e4_glu_narrow", 1e-10),
    ("matmul::gemv_dense", 1e-11),
    ("matmul::gemm_m0e4", 1e-10),
    ("matmul::gemm_dense", 1e-11),
    // f16 operands (activations and decoded weights rounded to f16, 2⁻¹¹ relative each), f32
    // accumulators: an NMSE of ~1e-7; a wrong layout or a lost tile gives ~1.
    ("matmul_coop::gemm_m0e4_coop", 2e-6),
    ("matmul_coop_small::gemm_m0e4_coop", 2e-6),
    ("matmul_coop_few::gemm_m0e4_coop_few", 2e-6),
    // The same with x given in f16 (the reference takes those values).
    ("matmul_coop_h::gemm_m0e4_coop", 2e-6),
    ("matmul_coop_few_h::gemm_m0e4_coop_few", 2e-6),
    ("norm::rmsnorm", 1e-11),
    ("norm::rmsnorm_inplace", 1e-11),
    // f16 outputs (2⁻¹¹ relative): an NMSE of ~1e-7.
    ("norm::rmsnorm_h", 1e-6),
    ("rope_kv::main", 1e-11),
    ("rope_kv::from_qkv", 1e-11),
    ("rope_kv::from_qkv4", 1e-11),
    ("attention::partial", 1e-10),
    ("attention::combine", 1e-10),
    ("attention::prefill", 1e-10),
    ("attention::decode", 1e-10),
    ("attention::decode_wide", 1e-10),
    // q, k, v and the weights P in f16 (2⁻¹¹ relative each), f32 accumulators and softmax.
    ("attention_coop::prefill", 1e-5),
    ("attention_coop::prefill_h", 1e-5),
    ("elementwise::embed_m0e4", 1e-13),
    ("elementwise::embed_dense", 1e-13),
    ("elementwise::glu", 1e-10),
    ("elementwise::glu_h", 1e-6),
    ("elementwise::softcap", 1e-10),
    // f32 log-sum-exp over the vocabulary; the KL divergence's terms summed in f32.
    ("score::main", 1e-9),
    // indices only, compared exactly
    ("score::next_token", 0.0),
];

fn tolerance(entry: &str) -> f64 {
    TOLERANCES
        .iter()
        .find(|(e, _)| *e == entry)
        .unwrap_or_else(|| panic!("no tolerance for {entry} in TOLERANCES"))
        .1
}

// ---------------------------------------------------------------------------------------------
// Parameters

/// A uniform field value: u32 or f32, as the WGSL declares the field.
#[derive(Clone, Copy, Debug)]
enum P {
    U(u32),
    F(f32),
}

fn u(v: usize) -> P {
    P::U(u32::try_from(v).expect("parameter fits u32"))
}

/// The uniform bytes of `k`: `Kernel::members()` in order, each from `set` (the last value
/// given wins). Unknown names panic, and so does a member left unset (those starting with `_`
/// are padding, written 0) or given a value of another type than the member's.
fn params(k: Kernel, set: &[(&str, P)]) -> Vec<u8> {
    let members = k.members();
    for (name, _) in set {
        assert!(
            members.iter().any(|m| m.name == *name),
            "{}: no parameter `{name}` (fields: {:?})",
            k.name(),
            k.fields()
        );
    }
    let mut bytes = vec![0u8; k.params_size()];
    for m in members {
        let v = set
            .iter()
            .rev()
            .find(|(n, _)| *n == m.name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| {
                assert!(
                    m.name.starts_with('_'),
                    "{}: parameter `{}` not set",
                    k.name(),
                    m.name
                );
                P::U(0)
            });
        let word = match (v, m.ty) {
            (P::U(x), Scalar::U32) => x.to_le_bytes(),
            (P::F(x), Scalar::F32) => x.to_bits().to_le_bytes(),
            _ => panic!(
                "{}: `{}` given {v:?}, declared {:?}",
                k.name(),
                m.name,
                m.ty
            ),
        };
        bytes[m.offset..m.offset + 4].copy_from_slice(&word);
    }
    bytes
}

// ---------------------------------------------------------------------------------------------
// What the WGSL declares, from naga

struct KernelInfo {
    /// Bindings of group 0 each entry point uses (the automatic layout's entries).
    uses: HashMap<String, BTreeSet<u32>>,
}

fn info(k: Kernel) -> &'static KernelInfo {
    static INFO: OnceLock<HashMap<Kernel, KernelInfo>> = OnceLock::new();
    let all = INFO.get_or_init(|| {
        Kernel::ALL
            .iter()
            .map(|&k| {
                let src = k.source();
                let module = naga::front::wgsl::parse_str(&src)
                    .unwrap_or_else(|e| panic!("{}: {}", k.name(), e.emit_to_string(&src)));
                let mi = naga::valid::Validator::new(
                    naga::valid::ValidationFlags::all(),
                    naga::valid::Capabilities::all(),
                )
                .validate(&module)
                .unwrap_or_else(|e| panic!("{}: {e:?}", k.name()));
                let uses = module
                    .entry_points
                    .iter()
                    .enumerate()
                    .map(|(i, ep)| {
                        let fi = mi.get_entry_point(i);
                        let used = module
                            .global_variables
                            .iter()
                            .filter(|(h, _)| !fi[*h].is_empty())
                            .filter_map(|(_, v)| v.binding.as_ref())
                            .map(|b| {
                                assert_eq!(b.group, 0);
                                b.binding
                            })
                            .collect();
                        (ep.name.clone(), used)
                    })
                    .collect();
                (k, KernelInfo { uses })
            })
            .collect()
    });
    &all[&k]
}

// ---------------------------------------------------------------------------------------------
// The harness: pipelines, buffers, dispatches, readback

struct Dispatch<'a> {
    kernel: Kernel,
    entry: &'static str,
    params: Vec<u8>,
    /// Buffers by binding index (`binding::<family>::NAME`; the uniform, `binding::PARAMS`, is
    /// added). Bindings the entry point does not use are left out of the bind group; a used one
    /// missing panics.
    bind: Vec<(u32, &'a wgpu::Buffer)>,
    grid: [u32; 3],
}

struct Harness {
    gpu: Gpu,
    modules: RefCell<HashMap<Kernel, wgpu::ShaderModule>>,
    pipelines: RefCell<HashMap<(Kernel, &'static str), wgpu::ComputePipeline>>,
    dispatched: RefCell<BTreeSet<String>>,
    dummy: wgpu::Buffer,
}

/// A NaN no kernel computes: elements a kernel must leave alone start as it.
const UNTOUCHED: u32 = 0x7fc0_0bad;

fn untouched() -> f32 {
    f32::from_bits(UNTOUCHED)
}

/// An f16 NaN no kernel computes, for f16 outputs' untouched elements.
const HALF_UNTOUCHED: u16 = 0x7e0b;

/// [`HALF_UNTOUCHED`] as [`Harness::read_halves`] widens it.
fn half_untouched() -> Want {
    Want::Bits(half::f16::from_bits(HALF_UNTOUCHED).to_f32().to_bits())
}

impl Harness {
    fn new(gpu: Gpu) -> Self {
        let dummy = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dummy"),
            size: 16,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        Harness {
            gpu,
            modules: RefCell::default(),
            pipelines: RefCell::default(),
            dispatched: RefCell::default(),
            dummy,
        }
    }

    fn bytes(&self, data: &[u8]) -> wgpu::Buffer {
        // Followed by 16 to 31 bytes of 0xff (a NaN as f32 and as f16): a kernel that uses a
        // value past the end of its input turns its output into NaN. Whole 16-byte units, for
        // the vector views (`array<vec4<…>>`).
        let mut v = data.to_vec();
        v.resize((data.len() / 16 + 2) * 16, 0xff);
        self.gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: &v,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    fn f32s(&self, data: &[f32]) -> wgpu::Buffer {
        self.bytes(bytemuck::cast_slice(data))
    }

    fn u32s(&self, data: &[u32]) -> wgpu::Buffer {
        self.bytes(bytemuck::cast_slice(data))
    }

    fn pipeline_for(&self, kernel: Kernel, entry: &'static str) {
        let dev = &self.gpu.device;
        let mut modules = self.modules.borrow_mut();
        let module = modules.entry(kernel).or_insert_with(|| {
            let desc = wgpu::ShaderModuleDescriptor {
                label: Some(kernel.name()),
                source: wgpu::ShaderSource::Wgsl(kernel.source().into()),
            };
            // SAFETY: the runtime's own kernels, compiled as the runtime compiles them
            // (exec.rs, ShaderChecks::Unchecked); every buffer here is sized as the plan sizes
            // it or larger.
            unsafe {
                dev.create_shader_module_trusted(desc, wgpu::ShaderRuntimeChecks::unchecked())
            }
        });
        self.pipelines
            .borrow_mut()
            .entry((kernel, entry))
            .or_insert_with(|| {
                dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(&format!("{}::{entry}", kernel.name())),
                    layout: None,
                    module,
                    entry_point: Some(entry),
                    // As the runtime compiles them: workgroup memory not zeroed.
                    compilation_options: wgpu::PipelineCompilationOptions {
                        zero_initialize_workgroup_memory: false,
                        ..Default::default()
                    },
                    cache: None,
                })
            });
    }

    /// Encodes `ds` in order into one compute pass and submits it.
    fn run(&self, ds: &[Dispatch]) {
        let dev = &self.gpu.device;
        let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        for d in ds {
            assert!(
                d.kernel.entries().contains(&d.entry),
                "{}: no entry point {}",
                d.kernel.name(),
                d.entry
            );
            self.pipeline_for(d.kernel, d.entry);
        }
        let pipelines = self.pipelines.borrow();
        let uniforms: Vec<wgpu::Buffer> = ds
            .iter()
            .map(|d| {
                dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("params"),
                    contents: &d.params,
                    usage: wgpu::BufferUsages::UNIFORM,
                })
            })
            .collect();
        let groups: Vec<wgpu::BindGroup> = ds
            .iter()
            .zip(&uniforms)
            .map(|(d, un)| {
                let used = &info(d.kernel).uses[d.entry];
                let mut entries = vec![wgpu::BindGroupEntry {
                    binding: binding::PARAMS,
                    resource: un.as_entire_binding(),
                }];
                for &b in used.iter().filter(|&&b| b != binding::PARAMS) {
                    let buf = d
                        .bind
                        .iter()
                        .rev()
                        .find(|(i, _)| *i == b)
                        .unwrap_or_else(|| {
                            panic!("{}::{}: binding {b} not given", d.kernel.name(), d.entry)
                        })
                        .1;
                    entries.push(wgpu::BindGroupEntry {
                        binding: b,
                        resource: buf.as_entire_binding(),
                    });
                }
                dev.create_bind_group(&wgpu::BindGroupDescriptor {
                    label: None,
                    layout: &pipelines[&(d.kernel, d.entry)].get_bind_group_layout(0),
                    entries: &entries,
                })
            })
            .collect();
        let mut enc = dev.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&Default::default());
            for (d, g) in ds.iter().zip(&groups) {
                pass.set_pipeline(&pipelines[&(d.kernel, d.entry)]);
                pass.set_bind_group(0, g, &[]);
                pass.dispatch_workgroups(d.grid[0], d.grid[1], d.grid[2]);
                self.dispatched
                    .borrow_mut()
                    .insert(format!("{}::{}", d.kernel.name(), d.entry));
            }
        }
        self.gpu.queue.submit([enc.finish()]);
        if let Some(e) = pollster::block_on(scope.pop()) {
            panic!("wgpu rejected the dispatches: {e}");
        }
    }

    /// The first `n` f32 of `buf`.
    /// An f16 output of `n` values (the `_h` entry points) followed by `tail` halves of
    /// [`HALF_UNTOUCHED`].
    fn half_out(&self, n: usize, tail: usize) -> wgpu::Buffer {
        self.bytes(bytemuck::cast_slice(&vec![HALF_UNTOUCHED; n + tail]))
    }

    /// `n` f16 values of `buf`, widened to f32.
    fn read_halves(&self, buf: &wgpu::Buffer, n: usize) -> Vec<f32> {
        let words = self.read(buf, n.div_ceil(2));
        let halves = words.iter().flat_map(|w| {
            let b = w.to_bits();
            [b as u16, (b >> 16) as u16]
        });
        halves
            .take(n)
            .map(|b| half::f16::from_bits(b).to_f32())
            .collect()
    }

    fn read(&self, buf: &wgpu::Buffer, n: usize) -> Vec<f32> {
        let bytes = (4 * n) as u64;
        let staging = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(buf, 0, &staging, 0, bytes);
        self.gpu.queue.submit([enc.finish()]);
        tlite_runtime_gpu::readback::map_read_f32(&self.gpu, &staging, bytes).unwrap()
    }
}

/// The plan's 1-D grid (graph/builder.rs `grid_1d`): x = min(n, 65535), y = ⌈n / 65535⌉;
/// kernels linearize as x + y · grid_width. Returns the grid and x.
fn grid_1d(n: usize) -> ([u32; 3], u32) {
    const MAX_GRID: usize = 65535;
    let x = n.min(MAX_GRID) as u32;
    ([x, n.div_ceil(MAX_GRID) as u32, 1], x)
}

// ---------------------------------------------------------------------------------------------
// Comparison and the report

/// An expected element.
#[derive(Clone, Copy, Debug)]
enum Want {
    Near(f64),
    /// Exactly these bits (the untouched sentinel, a fixed marker).
    Bits(u32),
}

fn nears(v: impl IntoIterator<Item = f64>) -> Vec<Want> {
    v.into_iter().map(Want::Near).collect()
}

fn nmse(gpu: &[f32], want: &[Want]) -> (f64, usize) {
    assert_eq!(gpu.len(), want.len(), "output length");
    let (mut num, mut den, mut bad) = (0.0f64, 0.0f64, 0usize);
    for (&g, w) in gpu.iter().zip(want) {
        match *w {
            Want::Near(c) => {
                num += (f64::from(g) - c).powi(2);
                den += c * c;
            }
            Want::Bits(b) => bad += usize::from(g.to_bits() != b),
        }
    }
    let e = if num == 0.0 { 0.0 } else { num / den };
    (e, bad)
}

#[derive(Default)]
struct Report {
    failures: Vec<String>,
    covered: BTreeSet<String>,
    /// The self-test's broken reference: every expected value of every case is negated.
    negate: bool,
}

impl Report {
    /// Compares the outputs of one case of `entry` (`kernel::entry`) and prints its line.
    fn check(
        &mut self,
        h: &Harness,
        entry: &str,
        desc: &str,
        seed: u64,
        outs: &[(&str, &[f32], &[Want])],
    ) {
        assert!(
            h.dispatched.borrow().contains(entry),
            "{entry}: checked but never dispatched"
        );
        let tol = tolerance(entry);
        let (mut worst, mut worst_name, mut bad) = (0.0f64, "", 0usize);
        for (name, gpu, want) in outs {
            let want: Vec<Want> = if self.negate {
                want.iter()
                    .map(|w| match *w {
                        Want::Near(c) => Want::Near(-c),
                        b => b,
                    })
                    .collect()
            } else {
                want.to_vec()
            };
            let (e, b) = nmse(gpu, &want);
            bad += b;
            if e > worst || e.is_nan() || worst_name.is_empty() {
                worst = e;
                worst_name = name;
            }
        }
        let ok = worst <= tol && bad == 0;
        let mut line = format!("{entry} {desc} seed={seed} nmse={worst:.2e} tol={tol:.0e}");
        if self.negate {
            line.insert_str(0, "[negated reference, must fail] ");
        }
        if outs.len() > 1 {
            line += &format!(" (worst: {worst_name})");
        }
        if bad > 0 {
            line += &format!(" MISMATCHED-EXACT={bad}");
        }
        if !ok {
            line += " FAIL";
            self.failures.push(line.clone());
        }
        let _ = writeln!(std::io::stderr(), "{line}");
        self.covered.insert(entry.to_owned());
    }
}

// ---------------------------------------------------------------------------------------------
// CPU references

fn silu(g: f64) -> f64 {
    g / (1.0 + (-g).exp())
}

fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + (0.797_884_560_802_865_4 * (x + 0.044715 * x * x * x)).tanh())
}

fn act(a: u32, g: f64) -> f64 {
    if a == 0 { silu(g) } else { gelu_tanh(g) }
}

/// RMSNorm of each `n`-row of `x`: x · rsqrt(mean(x²) + eps) · (w + w_offset).
fn rmsnorm_ref(x: &[f32], n: usize, w: &[f32], eps: f32, w_offset: f32) -> Vec<f64> {
    x.chunks(n)
        .flat_map(|row| {
            let ms = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n as f64;
            let inv = 1.0 / (ms + f64::from(eps)).sqrt();
            row.iter()
                .zip(w)
                .map(move |(&v, &wi)| f64::from(v) * inv * (f64::from(wi) + f64::from(w_offset)))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn dot(a: &[f64], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x * f64::from(y)).sum()
}

fn widen(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| f64::from(v)).collect()
}

// ---------------------------------------------------------------------------------------------
// Weights

#[derive(Clone, Copy, Debug)]
enum Wt {
    M0E4(usize),
    F32,
    /// Stored f16, widened to f32 at upload (exec.rs): the kernels see f32.
    F16,
}

/// One chunk of a weight tensor on the GPU, with the values the kernels decode.
struct GpuMat {
    /// M0E4: packed, the group words the runtime's kernels read (scale and bias in one word),
    /// then scales and biases apart (two halves per word, as `dequant.wgsl` reads them); dense:
    /// the f32 values.
    parts: Vec<wgpu::Buffer>,
    /// Row-major `[rows, k]`: dequantized, or the (widened) dense values.
    values: Vec<f32>,
}

fn upload_weight(h: &Harness, wt: Wt, data: &[f32], rows: usize, k: usize) -> GpuMat {
    match wt {
        Wt::M0E4(g) => {
            let m =
                M0E4Matrix::quantize(data, rows, k, &QuantOptions::new(g, Method::MinMax)).unwrap();
            GpuMat {
                parts: vec![
                    h.u32s(&m.packed),
                    h.u32s(&group_words(&m.scales, &m.biases)),
                    h.u32s(&halves_to_words(&m.scales)),
                    h.u32s(&halves_to_words(&m.biases)),
                ],
                values: m.dequantize(),
            }
        }
        Wt::F32 => GpuMat {
            parts: vec![h.f32s(data)],
            values: data.to_vec(),
        },
        Wt::F16 => {
            let v: Vec<f32> = data
                .iter()
                .map(|&x| half::f16::from_f32(x).to_f32())
                .collect();
            GpuMat {
                parts: vec![h.f32s(&v)],
                values: v,
            }
        }
    }
}

/// A tensor of `rows` × `k` in chunks starting at `starts` (first 0), each its own buffers.
struct Tensor {
    chunks: Vec<(Range<usize>, GpuMat)>,
    /// All rows, as the kernels decode them.
    values: Vec<f32>,
}

fn upload_tensor(
    h: &Harness,
    rng: &mut Rng,
    wt: Wt,
    rows: usize,
    k: usize,
    starts: &[usize],
) -> Tensor {
    let data = rng.gaussian_vec(rows * k, 0.05);
    let mut chunks = Vec::new();
    let mut values = Vec::new();
    for (i, &s) in starts.iter().enumerate() {
        let e = starts.get(i + 1).copied().unwrap_or(rows);
        let m = upload_weight(h, wt, &data[s * k..e * k], e - s, k);
        values.extend_from_slice(&m.values);
        chunks.push((s..e, m));
    }
    Tensor { chunks, values }
}

// ---------------------------------------------------------------------------------------------
// matmul: one projection as graph/matmul.rs `Builder::project` emits it

/// The plan's M0E4 row-layout and default matmul fields.
fn matmul_base(seq: usize, k: usize, n: usize, group: usize) -> Vec<(&'static str, P)> {
    vec![
        ("group", u(group)),
        ("words_per_row", u(M0E4Matrix::words_per_row(k))),
        ("groups_per_row", u(M0E4Matrix::groups_per_row(k, group))),
        ("seq", u(seq)),
        ("k", u(k)),
        ("n", u(n)),
        ("out_stride", u(n)),
        ("out_col0", P::U(0)),
        ("w_row0", P::U(0)),
        ("accumulate", P::U(0)),
        ("has_bias", P::U(0)),
        ("bias0", P::U(0)),
        ("grid_width", P::U(0)),
        ("norm", P::U(0)),
        ("eps", P::F(0.0)),
        ("w_offset", P::F(0.0)),
        ("act", P::U(0)),
        ("up_row0", P::U(0)),
        ("blocks", P::U(1)),
        ("rope_past", P::U(0)),
        ("rope_rot", P::U(0)),
        ("rope_hd", P::U(0)),
        ("rope_q_rows", P::U(0)),
        ("rope_kv_rows", P::U(0)),
        ("rope_max_seq", P::U(0)),
        ("rope_interleaved", P::U(0)),
    ]
}

/// Row blocks per workgroup of a fused-norm GEMV (graph/decision.rs `gemv_blocks`).
fn gemv_blocks(n: usize, per_block: usize) -> usize {
    (n / (per_block * 256)).clamp(1, 4)
}

/// The plan's decode selector (graph/decision.rs): `gemv_m0e4` for M0E4 weights; with the norm
/// fused, `gemv_m0e4_norm` from NARROW_NORM_MIN_K columns and the wide GEMV (rows of whole
/// GEMV_WIDE_COLS-column groups, at most NORM_MAX_K columns) below.
fn gemv_entry(wt: Wt, k: usize, norm: bool) -> &'static str {
    let cols = GEMV_WIDE_COLS as usize;
    match wt {
        Wt::M0E4(g)
            if norm && k >= NARROW_NORM_MIN_K && k.is_multiple_of(8) && g.is_multiple_of(8) =>
        {
            "gemv_m0e4_norm"
        }
        Wt::M0E4(g) if norm => {
            assert!(
                k.is_multiple_of(cols) && g.is_multiple_of(cols) && k <= NORM_MAX_K,
                "the plan fuses no norm into a GEMV of k={k}, g={g}"
            );
            "gemv_m0e4_wide"
        }
        Wt::M0E4(_) => "gemv_m0e4",
        _ => "gemv_dense",
    }
}

#[derive(Clone)]
struct MatSpec {
    desc: &'static str,
    seed: u64,
    k: usize,
    wt: Wt,
    tensor_rows: usize,
    /// First row of each chunk of the tensor (the first is 0).
    chunks: &'static [usize],
    /// The projection's rows of the tensor.
    rows: Range<usize>,
    accumulate: bool,
    /// Offset of `rows.start` in the bias tensor.
    bias: Option<usize>,
    /// The decode GEMV applies the preceding RMSNorm itself: (eps, w_offset).
    norm: Option<(f32, f32)>,
    seq_decode: usize,
    /// 0: no prefill case.
    seq_prefill: usize,
}

const MAT: MatSpec = MatSpec {
    desc: "",
    seed: 0,
    k: 64,
    wt: Wt::M0E4(32),
    tensor_rows: 16,
    chunks: &[0],
    rows: 0..16,
    accumulate: false,
    bias: None,
    norm: None,
    seq_decode: 1,
    seq_prefill: 0,
};

fn matmul_case(h: &Harness, r: &mut Report, s: &MatSpec) {
    let mut rng = Rng::new(s.seed);
    let k = s.k;
    let t = upload_tensor(h, &mut rng, s.wt, s.tensor_rows, k, s.chunks);
    let out = s.rows.len();
    let bias_vals = rng.gaussian_vec(s.bias.unwrap_or(0) + out + 3, 0.5);
    let bias_buf = h.f32s(&bias_vals);
    let norm_w = rng.gaussian_vec(k, 0.3);
    let norm_buf = h.f32s(&norm_w);
    let group = match s.wt {
        Wt::M0E4(g) => g,
        _ => 8,
    };
    let decode = gemv_entry(s.wt, k, s.norm.is_some());
    let prefill = match s.wt {
        Wt::M0E4(_) => "gemm_m0e4",
        _ => "gemm_dense",
    };
    let mut variants = vec![(Kernel::Matmul, decode, s.seq_decode)];
    // A short prefill's M0E4 projections (graph/matmul.rs): the GEMV over its tokens (the plan
    // takes it from TOKENS_GEMV_MIN tokens; fewer test its partial passes of 4).
    if matches!(s.wt, Wt::M0E4(_)) && (2..=SMALL_PREFILL as usize).contains(&s.seq_prefill) {
        variants.push((Kernel::Matmul, "gemv_m0e4_tokens", s.seq_prefill));
    }
    if s.seq_prefill > 0 {
        variants.push((Kernel::Matmul, prefill, s.seq_prefill));
        // The plan's choices on adapters with cooperative matrices (graph/decision.rs).
        if h.gpu.coop_gemm() && prefill == "gemm_m0e4" && k.is_multiple_of(COOP_K as usize) {
            // The 128 × 128 and the 16 × 16 tiles also with x in f16 (as the ops before the
            // projection write it); the 128 × 128 tiles only where the groups are multiples of
            // 32 columns.
            let large = [Kernel::MatmulCoop, Kernel::MatmulCoopH]
                .into_iter()
                .filter(|_| group.is_multiple_of(COOP_LARGE_GROUP_UNIT));
            for kernel in large.chain([Kernel::MatmulCoopSmall]) {
                variants.push((kernel, "gemm_m0e4_coop", s.seq_prefill));
            }
            for kernel in [Kernel::MatmulCoopFew, Kernel::MatmulCoopFewH] {
                variants.push((kernel, "gemm_m0e4_coop_few", s.seq_prefill));
            }
        }
    }
    for (kernel, entry, seq) in variants {
        let (rows_per_workgroup, tokens_per_workgroup) = match kernel {
            Kernel::MatmulCoopSmall => (COOP_SMALL_ROWS, COOP_SMALL_TOKENS),
            Kernel::MatmulCoop | Kernel::MatmulCoopH => (COOP_ROWS, COOP_TOKENS),
            Kernel::MatmulCoopFew | Kernel::MatmulCoopFewH => (COOP_FEW_ROWS, COOP_FEW_TOKENS),
            _ => (GEMM_ROWS, GEMM_TOKENS),
        };
        // The decode GEMV applies the norm; a prefill has it as its own op.
        let fused = s.norm.filter(|_| entry == decode);
        let mut x = rng.gaussian_vec(seq * k, 1.0);
        let x_buf = h.f32s(&x);
        // The kernels built for f16 input read x_h: the product of those values.
        let x_f16 = matches!(kernel, Kernel::MatmulCoopH | Kernel::MatmulCoopFewH);
        let x_h_buf = x_f16.then(|| {
            let halves: Vec<half::f16> = x.iter().map(|&v| half::f16::from_f32(v)).collect();
            x = halves.iter().map(|v| v.to_f32()).collect();
            h.bytes(bytemuck::cast_slice(&halves))
        });
        // Every element of y is written (or, accumulating, added to) except a sentinel tail.
        let y0: Vec<f32> = if s.accumulate {
            rng.gaussian_vec(seq * out, 1.0)
        } else {
            vec![untouched(); seq * out]
        };
        let tail = 7;
        let mut y_init = y0.clone();
        y_init.extend(std::iter::repeat_n(untouched(), tail));
        let y_buf = h.f32s(&y_init);
        let mut ds = Vec::new();
        for (range, m) in &t.chunks {
            let (a, b) = (range.start.max(s.rows.start), range.end.min(s.rows.end));
            if a >= b {
                continue;
            }
            let n = b - a;
            let mut set = matmul_base(seq, k, n, group);
            set.extend([
                ("out_stride", u(out)),
                ("out_col0", u(a - s.rows.start)),
                ("w_row0", u(a - range.start)),
                ("accumulate", u(usize::from(s.accumulate))),
                ("has_bias", u(usize::from(s.bias.is_some()))),
                ("bias0", u(s.bias.map_or(0, |o| o + a - s.rows.start))),
            ]);
            let grid = match entry {
                "gemv_m0e4_wide" if fused.is_some() => {
                    let (eps, off) = fused.unwrap();
                    let blocks = gemv_blocks(n, GEMV_WIDE_ROWS as usize);
                    let (g, w) = grid_1d(n.div_ceil(GEMV_WIDE_ROWS as usize * blocks));
                    set.extend([
                        ("norm", P::U(1)),
                        ("eps", P::F(eps)),
                        ("w_offset", P::F(off)),
                        ("blocks", u(blocks)),
                        ("grid_width", P::U(w)),
                    ]);
                    g
                }
                "gemv_m0e4_norm" => {
                    let (eps, off) = fused.unwrap();
                    let (g, w) = grid_1d(n.div_ceil(GEMV_ROWS as usize));
                    set.extend([
                        ("norm", P::U(1)),
                        ("eps", P::F(eps)),
                        ("w_offset", P::F(off)),
                        ("grid_width", P::U(w)),
                    ]);
                    g
                }
                "gemv_m0e4_wide" | "gemv_m0e4" | "gemv_m0e4_tokens" | "gemv_dense" => {
                    let per = match entry {
                        "gemv_m0e4_wide" => GEMV_WIDE_ROWS as usize,
                        "gemv_m0e4" | "gemv_m0e4_tokens" => GEMV_ROWS as usize,
                        _ => 1,
                    };
                    let (g, w) = grid_1d(n.div_ceil(per));
                    set.push(("grid_width", P::U(w)));
                    g
                }
                // The GEMMs (f32, coop, coop short): tiles of rows × tokens.
                _ => [
                    n.div_ceil(rows_per_workgroup as usize) as u32,
                    seq.div_ceil(tokens_per_workgroup as usize) as u32,
                    1,
                ],
            };
            let mut bind = vec![
                (binding::matmul::X, &x_buf),
                (binding::matmul::Y, &y_buf),
                (
                    binding::matmul::BIAS,
                    if s.bias.is_some() {
                        &bias_buf
                    } else {
                        &h.dummy
                    },
                ),
                (binding::matmul::X4, if x_f16 { &h.dummy } else { &x_buf }),
                (
                    binding::matmul::NORM_W4,
                    if fused.is_some() { &norm_buf } else { &h.dummy },
                ),
                (
                    binding::matmul_coop_h::X_H,
                    x_h_buf.as_ref().unwrap_or(&h.dummy),
                ),
            ];
            match s.wt {
                Wt::M0E4(_) => bind.extend([
                    (binding::matmul::PACKED, &m.parts[0]),
                    (binding::matmul::GROUPS, &m.parts[1]),
                    (binding::matmul::PACKED4, &m.parts[0]),
                ]),
                _ => bind.push((binding::matmul::DENSE, &m.parts[0])),
            }
            ds.push(Dispatch {
                kernel,
                entry,
                params: params(kernel, &set),
                bind,
                grid,
            });
        }
        h.run(&ds);
        let got = h.read(&y_buf, seq * out + tail);
        let xe = match fused {
            Some((eps, off)) => rmsnorm_ref(&x, k, &norm_w, eps, off),
            None => widen(&x),
        };
        let mut want = Vec::with_capacity(seq * out + tail);
        for ti in 0..seq {
            for o in 0..out {
                let row = s.rows.start + o;
                let mut v = dot(&xe[ti * k..(ti + 1) * k], &t.values[row * k..(row + 1) * k]);
                if let Some(off) = s.bias {
                    v += f64::from(bias_vals[off + o]);
                }
                if s.accumulate {
                    v += f64::from(y0[ti * out + o]);
                }
                want.push(Want::Near(v));
            }
        }
        want.extend(std::iter::repeat_n(Want::Bits(UNTOUCHED), tail));
        let mut desc = format!(
            "{} {:?} k={k} rows={}..{} of {} chunks={:?} seq={seq}",
            s.desc, s.wt, s.rows.start, s.rows.end, s.tensor_rows, s.chunks
        );
        if s.accumulate {
            desc += " accumulate";
        }
        if let Some(o) = s.bias {
            desc += &format!(" bias@{o}");
        }
        if let Some((eps, off)) = fused {
            desc += &format!(" norm(eps={eps:e},w_offset={off})");
        }
        r.check(
            h,
            &format!("{}::{entry}", kernel.name()),
            &desc,
            s.seed,
            &[("y", &got, &want)],
        );
    }
}

fn matmul_specs() -> Vec<MatSpec> {
    vec![
        // gemv_m0e4 (k not a multiple of 32) and gemm_m0e4, each group size with a ragged last
        // group and a ragged last word.
        MatSpec {
            desc: "odd-k",
            seed: 101,
            k: 37,
            wt: Wt::M0E4(32),
            tensor_rows: 19,
            rows: 0..19,
            seq_prefill: 5,
            ..MAT
        },
        MatSpec {
            desc: "g64-ragged bias accumulate",
            seed: 102,
            k: 200,
            wt: Wt::M0E4(64),
            tensor_rows: 24,
            rows: 0..24,
            accumulate: true,
            bias: Some(3),
            seq_prefill: 70,
            ..MAT
        },
        MatSpec {
            desc: "g128-ragged two-row-tiles",
            seed: 103,
            k: 300,
            wt: Wt::M0E4(128),
            tensor_rows: 130,
            rows: 0..130,
            seq_decode: 2,
            seq_prefill: 3,
            ..MAT
        },
        MatSpec {
            desc: "k>4096 narrow",
            seed: 104,
            k: 4099,
            wt: Wt::M0E4(64),
            tensor_rows: 9,
            rows: 0..9,
            seq_prefill: 2,
            ..MAT
        },
        // Groups of no multiple of 32 columns on the coop path (k a multiple of COOP_K): the
        // 128 × 64 and 16 × 16 tiles read each word's group, ragged last group.
        MatSpec {
            desc: "coop g40 ragged",
            seed: 120,
            k: 384,
            wt: Wt::M0E4(40),
            tensor_rows: 36,
            rows: 0..36,
            seq_prefill: 70,
            ..MAT
        },
        MatSpec {
            desc: "coop g24 ragged",
            seed: 121,
            k: 256,
            wt: Wt::M0E4(24),
            tensor_rows: 20,
            rows: 0..20,
            seq_prefill: 9,
            ..MAT
        },
        // k and groups multiples of 32 (the wide GEMV's), without and with the fused norm.
        MatSpec {
            desc: "wide",
            seed: 105,
            k: 256,
            wt: Wt::M0E4(32),
            tensor_rows: 48,
            rows: 0..48,
            seq_decode: 2,
            seq_prefill: 65,
            ..MAT
        },
        MatSpec {
            desc: "wide g128-ragged fused-norm",
            seed: 106,
            k: 320,
            wt: Wt::M0E4(128),
            tensor_rows: 40,
            rows: 0..40,
            norm: Some((1e-6, 0.0)),
            seq_decode: 2,
            seq_prefill: 4,
            ..MAT
        },
        // A fused qkv tensor's k rows: w_row0 inside the chunk, bias at an offset, Gemma's 1 + w.
        MatSpec {
            desc: "wide qkv-slice fused-norm",
            seed: 107,
            k: 192,
            wt: Wt::M0E4(64),
            tensor_rows: 96,
            rows: 32..64,
            bias: Some(32),
            norm: Some((1e-5, 1.0)),
            seq_prefill: 3,
            ..MAT
        },
        MatSpec {
            desc: "wide accumulate",
            seed: 108,
            k: 128,
            wt: Wt::M0E4(64),
            tensor_rows: 21,
            rows: 0..21,
            accumulate: true,
            ..MAT
        },
        // k > NORM_MAX_K.
        MatSpec {
            desc: "k>4096 wide",
            seed: 109,
            k: 4160,
            wt: Wt::M0E4(64),
            tensor_rows: 10,
            rows: 0..10,
            seq_prefill: 2,
            ..MAT
        },
        // gemv_m0e4_norm (k ≥ NARROW_NORM_MIN_K): two tokens, a bias, Gemma's
        // 1 + w, a ragged last workgroup of rows; and a chunked slice of rows.
        MatSpec {
            desc: "narrow fused-norm",
            seed: 117,
            k: NARROW_NORM_MIN_K,
            wt: Wt::M0E4(64),
            tensor_rows: 13,
            rows: 0..13,
            bias: Some(1),
            norm: Some((1e-5, 1.0)),
            seq_decode: 2,
            seq_prefill: 2,
            ..MAT
        },
        MatSpec {
            desc: "narrow fused-norm chunks g8",
            seed: 118,
            k: NARROW_NORM_MIN_K + 8,
            wt: Wt::M0E4(8),
            tensor_rows: 30,
            chunks: &[0, 11],
            rows: 4..27,
            accumulate: true,
            norm: Some((1e-6, 0.0)),
            ..MAT
        },
        // Several row and token tiles of both GEMMs, ragged at both ends, from a chunk's
        // middle row, with a bias and accumulating.
        MatSpec {
            desc: "gemm tiles",
            seed: 116,
            k: 320,
            wt: Wt::M0E4(32),
            tensor_rows: 300,
            rows: 3..290,
            accumulate: true,
            bias: Some(2),
            seq_prefill: 131,
            ..MAT
        },
        // Chunked tensors: one op per chunk, w_row0 / out_col0 / out_stride.
        MatSpec {
            desc: "lm_head 3 chunks",
            seed: 110,
            k: 64,
            wt: Wt::M0E4(32),
            tensor_rows: 300,
            chunks: &[0, 128, 256],
            rows: 0..300,
            seq_prefill: 3,
            ..MAT
        },
        MatSpec {
            desc: "rows across chunks",
            seed: 111,
            k: 96,
            wt: Wt::M0E4(32),
            tensor_rows: 300,
            chunks: &[0, 128, 256],
            rows: 100..260,
            bias: Some(5),
            norm: Some((1e-6, 0.0)),
            seq_prefill: 2,
            ..MAT
        },
        MatSpec {
            desc: "narrow rows across chunks",
            seed: 112,
            k: 60,
            wt: Wt::M0E4(32),
            tensor_rows: 40,
            chunks: &[0, 17],
            rows: 5..33,
            accumulate: true,
            seq_prefill: 2,
            ..MAT
        },
        // Several row blocks per workgroup: the plan's choice for n ≥ 2 · 16 · 256.
        MatSpec {
            desc: "fused-norm blocks=2",
            seed: 113,
            k: 64,
            wt: Wt::M0E4(64),
            tensor_rows: 8232,
            rows: 0..8232,
            norm: Some((1e-6, 0.0)),
            ..MAT
        },
        // Dense weights: f32 and f16 (widened at upload).
        MatSpec {
            desc: "dense bias accumulate",
            seed: 114,
            k: 77,
            wt: Wt::F32,
            tensor_rows: 33,
            rows: 0..33,
            accumulate: true,
            bias: Some(0),
            seq_decode: 2,
            seq_prefill: 66,
            ..MAT
        },
        MatSpec {
            desc: "dense 2 chunks",
            seed: 115,
            k: 128,
            wt: Wt::F16,
            tensor_rows: 150,
            chunks: &[0, 70],
            rows: 10..150,
            seq_prefill: 3,
            ..MAT
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// gemv_m0e4_glu, and the separate path (gate and up GEMVs with the norm, then glu)

struct GluSpec {
    desc: &'static str,
    seed: u64,
    /// Tokens (the decode GEMVs also run steps of a few tokens).
    seq: usize,
    k: usize,
    group: usize,
    f: usize,
    /// Gate and up rows in one tensor (up from row f).
    fused_tensor: bool,
    act: u32,
    eps: f32,
    w_offset: f32,
}

fn glu_fused_case(h: &Harness, r: &mut Report, s: &GluSpec) {
    let mut rng = Rng::new(s.seed);
    let (k, f) = (s.k, s.f);
    let wt = Wt::M0E4(s.group);
    // The plan's GLU GEMV follows its norm-fused GEMV.
    let narrow = gemv_entry(wt, k, true) == "gemv_m0e4_norm";
    let (gate, up, up_row0) = if s.fused_tensor {
        (upload_tensor(h, &mut rng, wt, 2 * f, k, &[0]), None, f)
    } else {
        let g = upload_tensor(h, &mut rng, wt, f, k, &[0]);
        let u = upload_tensor(h, &mut rng, wt, f, k, &[0]);
        (g, Some(u), 0)
    };
    let up_t = up.as_ref().unwrap_or(&gate);
    let (gm, um) = (&gate.chunks[0].1, &up_t.chunks[0].1);
    let x = rng.gaussian_vec(s.seq * k, 1.0);
    let norm_w = rng.gaussian_vec(k, 0.3);
    let (x_buf, norm_buf) = (h.f32s(&x), h.f32s(&norm_w));
    let tail = 5;
    let y_buf = h.f32s(&vec![untouched(); s.seq * f + tail]);
    let (blocks, per_wg) = match narrow {
        true => (1, GEMV_ROWS as usize / 2),
        false => {
            let b = gemv_blocks(f, GEMV_GLU_OUTPUTS as usize);
            (b, GEMV_GLU_OUTPUTS as usize * b)
        }
    };
    let (grid, gw) = grid_1d(f.div_ceil(per_wg));
    let mut set = matmul_base(s.seq, k, f, s.group);
    set.extend([
        ("out_stride", u(f)),
        ("grid_width", P::U(gw)),
        ("act", P::U(s.act)),
        ("up_row0", u(up_row0)),
        ("blocks", u(blocks)),
        ("norm", P::U(1)),
        ("eps", P::F(s.eps)),
        ("w_offset", P::F(s.w_offset)),
    ]);
    use binding::matmul as b;
    // Both read x as vectors; the narrow one the packed words as scalars.
    let (entry, packed_at, up_at) = match narrow {
        true => ("gemv_m0e4_glu_narrow", b::PACKED, b::PACKED_UP),
        false => ("gemv_m0e4_glu", b::PACKED4, b::PACKED4_UP),
    };
    h.run(&[Dispatch {
        kernel: Kernel::Matmul,
        entry,
        params: params(Kernel::Matmul, &set),
        bind: vec![
            (b::Y, &y_buf),
            (b::GROUPS, &gm.parts[1]),
            (b::X4, &x_buf),
            (packed_at, &gm.parts[0]),
            (b::NORM_W4, &norm_buf),
            (up_at, &um.parts[0]),
            (b::GROUPS_UP, &um.parts[1]),
        ],
        grid,
    }]);
    let got = h.read(&y_buf, s.seq * f + tail);
    let xn = rmsnorm_ref(&x, k, &norm_w, s.eps, s.w_offset);
    let mut want: Vec<Want> = (0..s.seq * f)
        .map(|i| {
            let (xt, o) = (&xn[i / f * k..(i / f + 1) * k], i % f);
            let g = dot(xt, &gate.values[o * k..(o + 1) * k]);
            let ur = up_row0 + o;
            let uv = dot(xt, &up_t.values[ur * k..(ur + 1) * k]);
            Want::Near(act(s.act, g) * uv)
        })
        .collect();
    want.extend(std::iter::repeat_n(Want::Bits(UNTOUCHED), tail));
    let desc = format!(
        "{} seq={} g{} k={k} f={f} {} act={} blocks={blocks} norm(eps={:e},w_offset={})",
        s.desc,
        s.seq,
        s.group,
        if s.fused_tensor {
            "gate_up-tensor"
        } else {
            "gate+up"
        },
        ["silu", "gelu_tanh"][s.act as usize],
        s.eps,
        s.w_offset
    );
    r.check(
        h,
        &format!("matmul::{entry}"),
        &desc,
        s.seed,
        &[("y", &got, &want)],
    );
}

/// GLU not fused (too few storage buffers, or gate and up not alike): the gate and up GEMVs
/// each apply the norm, then `glu` runs in place on the gate output.
fn glu_separate_case(h: &Harness, r: &mut Report, seed: u64, act_kind: u32) {
    let mut rng = Rng::new(seed);
    let (k, f, group, eps, off) = (128, 72, 32, 1e-6f32, 0.0f32);
    let gate = upload_tensor(h, &mut rng, Wt::M0E4(group), f, k, &[0]);
    let up = upload_tensor(h, &mut rng, Wt::M0E4(group), f, k, &[0]);
    let x = rng.gaussian_vec(k, 1.0);
    let norm_w = rng.gaussian_vec(k, 0.3);
    let (x_buf, norm_buf) = (h.f32s(&x), h.f32s(&norm_w));
    let g_buf = h.f32s(&vec![untouched(); f]);
    let u_buf = h.f32s(&vec![untouched(); f]);
    let blocks = gemv_blocks(f, GEMV_WIDE_ROWS as usize);
    let (grid, gw) = grid_1d(f.div_ceil(GEMV_WIDE_ROWS as usize * blocks));
    let mut set = matmul_base(1, k, f, group);
    set.extend([
        ("grid_width", P::U(gw)),
        ("blocks", u(blocks)),
        ("norm", P::U(1)),
        ("eps", P::F(eps)),
        ("w_offset", P::F(off)),
    ]);
    let mut ds: Vec<Dispatch> = [(&gate.chunks[0].1, &g_buf), (&up.chunks[0].1, &u_buf)]
        .into_iter()
        .map(|(m, y)| Dispatch {
            kernel: Kernel::Matmul,
            entry: "gemv_m0e4_wide",
            params: params(Kernel::Matmul, &set),
            bind: vec![
                (binding::matmul::Y, y),
                (binding::matmul::BIAS, &h.dummy),
                (binding::matmul::GROUPS, &m.parts[1]),
                (binding::matmul::X4, &x_buf),
                (binding::matmul::PACKED4, &m.parts[0]),
                (binding::matmul::NORM_W4, &norm_buf),
            ],
            grid,
        })
        .collect();
    let (eg, egw) = elementwise_grid(f);
    let glu = Dispatch {
        kernel: Kernel::Elementwise,
        entry: "glu",
        params: params(
            Kernel::Elementwise,
            &elementwise_base(&[("seq", P::U(1)), ("n", u(f)), ("act", P::U(act_kind)), egw]),
        ),
        bind: vec![
            (binding::elementwise::Y, &g_buf),
            (binding::elementwise::UP, &u_buf),
        ],
        grid: eg,
    };
    ds.push(glu);
    h.run(&ds);
    let got = h.read(&g_buf, f);
    let got_up = h.read(&u_buf, f);
    let xn = rmsnorm_ref(&x, k, &norm_w, eps, off);
    let gv: Vec<f64> = (0..f)
        .map(|o| dot(&xn, &gate.values[o * k..(o + 1) * k]))
        .collect();
    let uv: Vec<f64> = (0..f)
        .map(|o| dot(&xn, &up.values[o * k..(o + 1) * k]))
        .collect();
    let desc = format!(
        "GLU-off: gate, up (gemv_m0e4_wide, fused norm) then glu act={} k={k} f={f}",
        ["silu", "gelu_tanh"][act_kind as usize]
    );
    r.check(
        h,
        "matmul::gemv_m0e4_wide",
        &format!("{desc} [up]"),
        seed,
        &[("up", &got_up, &nears(uv.iter().copied()))],
    );
    r.check(
        h,
        "elementwise::glu",
        &desc,
        seed,
        &[(
            "y",
            &got,
            &nears(gv.iter().zip(&uv).map(|(&g, &u)| act(act_kind, g) * u)),
        )],
    );
}

// ---------------------------------------------------------------------------------------------
// dequant

fn dequant_case(h: &Harness, r: &mut Report, seed: u64, rows: usize, cols: usize, g: usize) {
    let mut rng = Rng::new(seed);
    let m = upload_weight(
        h,
        Wt::M0E4(g),
        &rng.gaussian_vec(rows * cols, 0.05),
        rows,
        cols,
    );
    let words = rows * M0E4Matrix::words_per_row(cols);
    let tail = 3;
    let out = h.f32s(&vec![untouched(); rows * cols + tail]);
    let (grid, gx) = grid_1d(words.div_ceil(DEQUANT_WG as usize));
    h.run(&[Dispatch {
        kernel: Kernel::Dequant,
        entry: "main",
        params: params(
            Kernel::Dequant,
            &[
                ("rows", u(rows)),
                ("cols", u(cols)),
                ("group", u(g)),
                ("words_per_row", u(M0E4Matrix::words_per_row(cols))),
                ("groups_per_row", u(M0E4Matrix::groups_per_row(cols, g))),
                ("grid_width", P::U(gx * DEQUANT_WG)),
            ],
        ),
        bind: vec![
            (binding::dequant::PACKED, &m.parts[0]),
            (binding::dequant::SCALES, &m.parts[2]),
            (binding::dequant::BIASES, &m.parts[3]),
            (binding::dequant::OUT, &out),
        ],
        grid,
    }]);
    let got = h.read(&out, rows * cols + tail);
    let mut want = nears(widen(&m.values));
    want.extend(std::iter::repeat_n(Want::Bits(UNTOUCHED), tail));
    r.check(
        h,
        "dequant::main",
        &format!("{rows}x{cols} g{g}"),
        seed,
        &[("out", &got, &want)],
    );
}

// ---------------------------------------------------------------------------------------------
// norm

struct NormSpec {
    desc: &'static str,
    seed: u64,
    rows: usize,
    n: usize,
    add: bool,
    /// Source rows of a gathered norm (the final norm of the chosen positions).
    gather: Option<&'static [u32]>,
    eps: f32,
    w_offset: f32,
    inplace: bool,
}

const NORM: NormSpec = NormSpec {
    desc: "",
    seed: 0,
    rows: 1,
    n: 64,
    add: false,
    gather: None,
    eps: 1e-6,
    w_offset: 0.0,
    inplace: false,
};

fn norm_case(h: &Harness, r: &mut Report, s: &NormSpec) {
    let mut rng = Rng::new(s.seed);
    let src_rows = s
        .gather
        .map_or(s.rows, |g| *g.iter().max().unwrap() as usize + 1);
    let x = rng.gaussian_vec(src_rows * s.n, 2.0);
    let w = rng.gaussian_vec(s.n, 0.5);
    let tail = 4;
    let mut y0 = if s.add || s.inplace {
        rng.gaussian_vec(s.rows * s.n, 1.0)
    } else {
        vec![untouched(); s.rows * s.n]
    };
    y0.extend(std::iter::repeat_n(untouched(), tail));
    let x_buf = h.f32s(&x);
    let y_buf = h.f32s(&y0);
    let w_buf = h.f32s(&w);
    let rows_buf = h.u32s(s.gather.unwrap_or(&[0]));
    let (grid, gw) = grid_1d(s.rows);
    let norm_params = params(
        Kernel::Norm,
        &[
            ("rows", u(s.rows)),
            ("n", u(s.n)),
            ("mode", u(usize::from(s.add))),
            ("gather", u(usize::from(s.gather.is_some()))),
            ("eps", P::F(s.eps)),
            ("w_offset", P::F(s.w_offset)),
            ("grid_width", P::U(gw)),
        ],
    );
    let entry = if s.inplace {
        "rmsnorm_inplace"
    } else {
        "rmsnorm"
    };
    h.run(&[Dispatch {
        kernel: Kernel::Norm,
        entry,
        params: norm_params.clone(),
        bind: vec![
            (binding::norm::X, &x_buf),
            (binding::norm::Y, &y_buf),
            (binding::norm::W, &w_buf),
            (binding::norm::ROWS, &rows_buf),
        ],
        grid,
    }]);
    let got = h.read(&y_buf, s.rows * s.n + tail);
    let src: Vec<f32> = if s.inplace {
        y0[..s.rows * s.n].to_vec()
    } else {
        (0..s.rows)
            .flat_map(|i| {
                let sr = s.gather.map_or(i, |g| g[i] as usize);
                x[sr * s.n..(sr + 1) * s.n].to_vec()
            })
            .collect()
    };
    let mut want = rmsnorm_ref(&src, s.n, &w, s.eps, s.w_offset);
    if s.add {
        for (v, &y) in want.iter_mut().zip(&y0) {
            *v += f64::from(y);
        }
    }
    let mut want = nears(want);
    want.extend(std::iter::repeat_n(Want::Bits(UNTOUCHED), tail));
    let desc = format!(
        "{} rows={} n={} mode={} gather={:?} eps={:e} w_offset={}",
        s.desc,
        s.rows,
        s.n,
        u8::from(s.add),
        s.gather,
        s.eps,
        s.w_offset
    );
    r.check(
        h,
        &format!("norm::{entry}"),
        &desc,
        s.seed,
        &[("y", &got, &want)],
    );
    // The plan's norm before projections on cooperative matrices: the same y in f16.
    if s.add || s.inplace || s.gather.is_some() || !s.n.is_multiple_of(2) {
        return;
    }
    let y_h = h.half_out(s.rows * s.n, 2 * tail);
    h.run(&[Dispatch {
        kernel: Kernel::Norm,
        entry: "rmsnorm_h",
        // mode 0, no gather: the parameters above.
        params: norm_params,
        bind: vec![
            (binding::norm::X, &x_buf),
            (binding::norm::Y_H, &y_h),
            (binding::norm::W, &w_buf),
        ],
        grid,
    }]);
    let got = h.read_halves(&y_h, s.rows * s.n + 2 * tail);
    let mut want_h = want[..s.rows * s.n].to_vec();
    want_h.extend(std::iter::repeat_n(half_untouched(), 2 * tail));
    r.check(h, "norm::rmsnorm_h", &desc, s.seed, &[("y", &got, &want_h)]);
}

// ---------------------------------------------------------------------------------------------
// rope_kv

#[derive(Clone, Copy)]
struct RopeSpec {
    seed: u64,
    seq: usize,
    past: usize,
    heads: usize,
    kv_heads: usize,
    hd: usize,
    rot: usize,
    interleaved: bool,
    max_seq: usize,
    theta: f64,
    factor: f64,
}

/// The cos/sin tables as exec.rs builds them: `[max_seq, rot/2]`.
fn rope_tables(max_seq: usize, rot: usize, theta: f64, factor: f64) -> (Vec<f32>, Vec<f32>) {
    let half = rot / 2;
    let inv: Vec<f64> = (0..half)
        .map(|i| 1.0 / theta.powf((2 * i) as f64 / rot as f64))
        .collect();
    let angle = |i: usize| (i / half) as f64 / factor * inv[i % half];
    (
        (0..max_seq * half).map(|i| angle(i).cos() as f32).collect(),
        (0..max_seq * half).map(|i| angle(i).sin() as f32).collect(),
    )
}

fn rope_case(h: &Harness, r: &mut Report, s: &RopeSpec) {
    let mut rng = Rng::new(s.seed);
    let (hd, half) = (s.hd, s.rot / 2);
    let q = rng.gaussian_vec(s.seq * s.heads * hd, 1.0);
    let k = rng.gaussian_vec(s.seq * s.kv_heads * hd, 1.0);
    let v = rng.gaussian_vec(s.seq * s.kv_heads * hd, 1.0);
    let (cos, sin) = rope_tables(s.max_seq, s.rot, s.theta, s.factor);
    let cache = vec![untouched(); s.kv_heads * s.max_seq * hd];
    // main: q, k and v apart, q rotated in place; from_qkv: q, k and v of each token side by
    // side in one buffer, the rotated q written to another.
    let (qw, kvw) = (s.heads * hd, s.kv_heads * hd);
    let qkv: Vec<f32> = (0..s.seq)
        .flat_map(|t| {
            let (qs, ks) = (&q[t * qw..(t + 1) * qw], &k[t * kvw..(t + 1) * kvw]);
            qs.iter()
                .chain(ks)
                .chain(&v[t * kvw..(t + 1) * kvw])
                .copied()
        })
        .collect();
    let (q_buf, k_buf, v_buf) = (h.f32s(&q), h.f32s(&k), h.f32s(&v));
    let qkv_buf = h.f32s(&qkv);
    let (cos_buf, sin_buf) = (h.f32s(&cos), h.f32s(&sin));
    let mut got = Vec::new();
    // from_qkv4 where every quad of a head's dimensions rotates with one quad (the plan's
    // condition).
    let quads = hd.is_multiple_of(4) && s.rot.is_multiple_of(if s.interleaved { 4 } else { 8 });
    let entries = ["main", "from_qkv", "from_qkv4"];
    for entry in entries.into_iter().take(if quads { 3 } else { 2 }) {
        let (kc_buf, vc_buf) = (h.f32s(&cache), h.f32s(&cache));
        // Each entry's q written into a buffer of its own.
        let q_out = h.f32s(&vec![untouched(); q.len()]);
        let (mut bind, threads, q_got) = match entry {
            "main" => (
                vec![
                    (binding::rope_kv::Q, &q_buf),
                    (binding::rope_kv::K, &k_buf),
                    (binding::rope_kv::V, &v_buf),
                    (binding::rope_kv::KCACHE, &kc_buf),
                    (binding::rope_kv::VCACHE, &vc_buf),
                ],
                (s.heads * half).max(kvw),
                &q_buf,
            ),
            "from_qkv" => (
                vec![
                    (binding::rope_kv::QKV, &qkv_buf),
                    (binding::rope_kv::Q, &q_out),
                    (binding::rope_kv::KCACHE, &kc_buf),
                    (binding::rope_kv::VCACHE, &vc_buf),
                ],
                qw + kvw,
                &q_out,
            ),
            _ => (
                vec![
                    (binding::rope_kv::QKV4, &qkv_buf),
                    (binding::rope_kv::Q4, &q_out),
                    (binding::rope_kv::KCACHE4, &kc_buf),
                    (binding::rope_kv::VCACHE4, &vc_buf),
                ],
                (qw + kvw) / 4,
                &q_out,
            ),
        };
        bind.extend([
            (binding::rope_kv::COS_T, &cos_buf),
            (binding::rope_kv::SIN_T, &sin_buf),
        ]);
        h.run(&[Dispatch {
            kernel: Kernel::RopeKv,
            entry,
            params: params(
                Kernel::RopeKv,
                &[
                    ("seq", u(s.seq)),
                    ("past", u(s.past)),
                    ("heads", u(s.heads)),
                    ("kv_heads", u(s.kv_heads)),
                    ("hd", u(hd)),
                    ("rot", u(s.rot)),
                    ("interleaved", u(usize::from(s.interleaved))),
                    ("max_seq", u(s.max_seq)),
                ],
            ),
            bind,
            grid: [
                s.seq as u32,
                threads.div_ceil(ROPE_KV_WG as usize) as u32,
                1,
            ],
        }]);
        got.push((
            entry,
            h.read(q_got, q.len()),
            h.read(&kc_buf, cache.len()),
            h.read(&vc_buf, cache.len()),
        ));
    }
    let pair = |i: usize| {
        if s.interleaved {
            (2 * i, 2 * i + 1)
        } else {
            (i, i + half)
        }
    };
    let rotate = |head: &[f32], pos: usize| -> Vec<f64> {
        let mut o = widen(head);
        for i in 0..half {
            let (a, b) = pair(i);
            let (c, sn) = (
                f64::from(cos[pos * half + i]),
                f64::from(sin[pos * half + i]),
            );
            let (x, y) = (f64::from(head[a]), f64::from(head[b]));
            o[a] = x * c - y * sn;
            o[b] = y * c + x * sn;
        }
        o
    };
    let mut want_q = Vec::new();
    for t in 0..s.seq {
        for hh in 0..s.heads {
            let b = (t * s.heads + hh) * hd;
            want_q.extend(nears(rotate(&q[b..b + hd], s.past + t)));
        }
    }
    let mut want_k = vec![Want::Bits(UNTOUCHED); cache.len()];
    let mut want_v = want_k.clone();
    for t in 0..s.seq {
        let pos = s.past + t;
        for hh in 0..s.kv_heads {
            let src = (t * s.kv_heads + hh) * hd;
            let dst = (hh * s.max_seq + pos) * hd;
            for (d, val) in rotate(&k[src..src + hd], pos).into_iter().enumerate() {
                want_k[dst + d] = Want::Near(val);
                want_v[dst + d] = Want::Near(f64::from(v[src + d]));
            }
        }
    }
    let desc = format!(
        "{} heads={}/{} hd={hd} rot={} seq={} past={} max_seq={} theta={} factor={}",
        if s.interleaved { "interleaved" } else { "half" },
        s.heads,
        s.kv_heads,
        s.rot,
        s.seq,
        s.past,
        s.max_seq,
        s.theta,
        s.factor
    );
    for (entry, got_q, got_k, got_v) in &got {
        r.check(
            h,
            &format!("rope_kv::{entry}"),
            &desc,
            s.seed,
            &[
                ("q", got_q, &want_q),
                ("kcache", got_k, &want_k),
                ("vcache", got_v, &want_v),
            ],
        );
    }
}

/// `gemv_m0e4_norm_rope`: a joined q/k/v projection's decode (norm, product, bias) with RoPE
/// and the KV write in its epilogue, as graph/matmul.rs emits it for one token at position
/// `s.past`; the input width `k` and group `group`, bias or none.
fn qkv_rope_case(
    h: &Harness,
    r: &mut Report,
    s: &RopeSpec,
    (k, group, bias): (usize, usize, bool),
) {
    let mut rng = Rng::new(s.seed);
    let (hd, half) = (s.hd, s.rot / 2);
    let (qw, kvw) = (s.heads * hd, s.kv_heads * hd);
    let n = qw + 2 * kvw;
    let t = upload_tensor(h, &mut rng, Wt::M0E4(group), n, k, &[0]);
    let m = &t.chunks[0].1;
    let x = rng.gaussian_vec(k, 1.0);
    let norm_w = rng.gaussian_vec(k, 0.3);
    let bias_vals = rng.gaussian_vec(n, 0.5);
    let (eps, off) = (1e-5f32, 1.0f32);
    let (cos, sin) = rope_tables(s.max_seq, s.rot, s.theta, s.factor);
    let cache = vec![untouched(); s.kv_heads * s.max_seq * hd];
    let tail = 5;
    let y_buf = h.f32s(&vec![untouched(); qw + tail]);
    let (kc_buf, vc_buf) = (h.f32s(&cache), h.f32s(&cache));
    let (x_buf, norm_buf, bias_buf) = (h.f32s(&x), h.f32s(&norm_w), h.f32s(&bias_vals));
    let (cos_buf, sin_buf) = (h.f32s(&cos), h.f32s(&sin));
    let (grid, w) = grid_1d(n.div_ceil(GEMV_ROWS as usize));
    let mut set = matmul_base(1, k, n, group);
    set.extend([
        ("out_stride", u(qw)),
        ("has_bias", u(usize::from(bias))),
        ("norm", P::U(1)),
        ("eps", P::F(eps)),
        ("w_offset", P::F(off)),
        ("grid_width", P::U(w)),
        ("rope_past", u(s.past)),
        ("rope_rot", u(s.rot)),
        ("rope_hd", u(hd)),
        ("rope_q_rows", u(qw)),
        ("rope_kv_rows", u(kvw)),
        ("rope_max_seq", u(s.max_seq)),
        ("rope_interleaved", u(usize::from(s.interleaved))),
    ]);
    use binding::matmul as b;
    h.run(&[Dispatch {
        kernel: Kernel::Matmul,
        entry: "gemv_m0e4_norm_rope",
        params: params(Kernel::Matmul, &set),
        bind: vec![
            (b::Y, &y_buf),
            (b::BIAS, if bias { &bias_buf } else { &h.dummy }),
            (b::X4, &x_buf),
            (b::NORM_W4, &norm_buf),
            (b::PACKED, &m.parts[0]),
            (b::GROUPS, &m.parts[1]),
            (b::KCACHE, &kc_buf),
            (b::VCACHE, &vc_buf),
            (b::COS_T, &cos_buf),
            (b::SIN_T, &sin_buf),
        ],
        grid,
    }]);
    let got_q = h.read(&y_buf, qw + tail);
    let (got_k, got_v) = (h.read(&kc_buf, cache.len()), h.read(&vc_buf, cache.len()));

    let xe = rmsnorm_ref(&x, k, &norm_w, eps, off);
    let vals: Vec<f64> = (0..n)
        .map(|row| {
            let v = dot(&xe, &t.values[row * k..(row + 1) * k]);
            v + if bias { f64::from(bias_vals[row]) } else { 0.0 }
        })
        .collect();
    let pos = s.past;
    let rotate = |head: &[f64]| -> Vec<f64> {
        let mut o = head.to_vec();
        for i in 0..half {
            let (a, bb) = if s.interleaved {
                (2 * i, 2 * i + 1)
            } else {
                (i, i + half)
            };
            let (c, sn) = (
                f64::from(cos[pos * half + i]),
                f64::from(sin[pos * half + i]),
            );
            o[a] = head[a] * c - head[bb] * sn;
            o[bb] = head[bb] * c + head[a] * sn;
        }
        o
    };
    let mut want_q = Vec::new();
    for hh in 0..s.heads {
        want_q.extend(nears(rotate(&vals[hh * hd..(hh + 1) * hd])));
    }
    want_q.extend(std::iter::repeat_n(Want::Bits(UNTOUCHED), tail));
    let mut want_k = vec![Want::Bits(UNTOUCHED); cache.len()];
    let mut want_v = want_k.clone();
    for hh in 0..s.kv_heads {
        let (kb, vb) = (qw + hh * hd, qw + kvw + hh * hd);
        let dst = (hh * s.max_seq + pos) * hd;
        for (d, val) in rotate(&vals[kb..kb + hd]).into_iter().enumerate() {
            want_k[dst + d] = Want::Near(val);
            want_v[dst + d] = Want::Near(vals[vb + d]);
        }
    }
    let desc = format!(
        "{} heads={}/{} hd={hd} rot={} k={k} g={group} past={} max_seq={}{}",
        if s.interleaved { "interleaved" } else { "half" },
        s.heads,
        s.kv_heads,
        s.rot,
        s.past,
        s.max_seq,
        if bias { " bias" } else { "" }
    );
    r.check(
        h,
        "matmul::gemv_m0e4_norm_rope",
        &desc,
        s.seed,
        &[
            ("q", &got_q, &want_q),
            ("kcache", &got_k, &want_k),
            ("vcache", &got_v, &want_v),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// attention

struct AttnSpec {
    seed: u64,
    seq: usize,
    past: usize,
    heads: usize,
    kv_heads: usize,
    hd: usize,
    max_seq: usize,
    window: usize,
    softcap: f32,
    /// query_pre_attn_scalar (None: hd).
    pre_scalar: Option<f64>,
}

/// The plan's split of the keys: decode (seq 1) in chunks of 32, at most 32 splits; prefill 1.
fn splits_kps(seq: usize, past: usize) -> (usize, usize) {
    let splits = if seq == 1 {
        (past + 1).div_ceil(32).min(32)
    } else {
        1
    };
    (splits, (past + seq).div_ceil(splits))
}

/// The empty split's max in `partial`.
const EMPTY_MAX: f32 = -3.0e38;

fn attention_case(h: &Harness, r: &mut Report, s: &AttnSpec) {
    let mut rng = Rng::new(s.seed);
    let (hd, heads, kvh) = (s.hd, s.heads, s.kv_heads);
    let (splits, kps) = splits_kps(s.seq, s.past);
    let q = rng.gaussian_vec(s.seq * heads * hd, 1.0);
    // The whole cache is filled: positions past the query must not be read.
    let kc = rng.gaussian_vec(kvh * s.max_seq * hd, 1.0);
    let vc = rng.gaussian_vec(kvh * s.max_seq * hd, 1.0);
    let parts_len = (s.seq + 32) * heads * (hd + 2);
    let (q_buf, kc_buf, vc_buf) = (h.f32s(&q), h.f32s(&kc), h.f32s(&vc));
    let parts_buf = h.f32s(&vec![untouched(); parts_len]);
    let tail = 3;
    let out_buf = h.f32s(&vec![untouched(); s.seq * heads * hd + tail]);
    let scale = s.pre_scalar.unwrap_or(hd as f64).powf(-0.5) as f32;
    let set = [
        ("seq", u(s.seq)),
        ("past", u(s.past)),
        ("heads", u(heads)),
        ("kv_heads", u(kvh)),
        ("hd", u(hd)),
        ("max_seq", u(s.max_seq)),
        ("window", u(s.window)),
        ("splits", u(splits)),
        ("kps", u(kps)),
        ("scale", P::F(scale)),
        ("softcap", P::F(s.softcap)),
    ];
    let bind = vec![
        (binding::attention::Q, &q_buf),
        (binding::attention::KCACHE, &kc_buf),
        (binding::attention::VCACHE, &vc_buf),
        (binding::attention::PARTS, &parts_buf),
        (binding::attention::OUT, &out_buf),
        (binding::attention::KCACHE4, &kc_buf),
    ];
    // As the plan: combine only where the keys are split (with one split, partial writes the
    // output itself).
    let mut ds = vec![Dispatch {
        kernel: Kernel::Attention,
        entry: "partial",
        params: params(Kernel::Attention, &set),
        bind: bind.clone(),
        grid: [splits as u32, heads as u32, s.seq as u32],
    }];
    if splits > 1 {
        ds.push(Dispatch {
            kernel: Kernel::Attention,
            entry: "combine",
            params: params(Kernel::Attention, &set),
            bind,
            grid: [heads as u32, s.seq as u32, 1],
        });
    }
    h.run(&ds);
    let parts = h.read(&parts_buf, parts_len);
    let out = h.read(&out_buf, s.seq * heads * hd + tail);

    // The CPU side: scores per key, each split's (max, sum, acc), and the full softmax.
    let group = heads / kvh;
    let score = |t: usize, hh: usize, j: usize| -> f64 {
        let qb = (t * heads + hh) * hd;
        let kb = ((hh / group) * s.max_seq + j) * hd;
        let mut sc = dot(&widen(&q[qb..qb + hd]), &kc[kb..kb + hd]) * f64::from(scale);
        if s.softcap > 0.0 {
            let c = f64::from(s.softcap);
            sc = c * (sc / c).tanh();
        }
        sc
    };
    let vrow = |hh: usize, j: usize| {
        let b = ((hh / group) * s.max_seq + j) * hd;
        &vc[b..b + hd]
    };
    let mut want_m = vec![Want::Bits(UNTOUCHED); parts_len];
    let (mut want_l, mut want_acc) = (want_m.clone(), want_m.clone());
    let mut want_out = Vec::new();
    let mut empty = 0;
    for t in 0..s.seq {
        let qi = s.past + t;
        let lo = if s.window > 0 && qi + 1 > s.window {
            qi + 1 - s.window
        } else {
            0
        };
        for hh in 0..heads {
            for sp in 0..splits {
                let start = lo + sp * kps;
                let end = (qi + 1).min(start + kps);
                let pb = ((t * heads + hh) * splits + sp) * (hd + 2);
                if start >= end {
                    empty += 1;
                    want_m[pb] = Want::Bits(EMPTY_MAX.to_bits());
                    want_l[pb + 1] = Want::Bits(0.0f32.to_bits());
                    for d in 0..hd {
                        want_acc[pb + 2 + d] = Want::Bits(0.0f32.to_bits());
                    }
                    continue;
                }
                let sc: Vec<f64> = (start..end).map(|j| score(t, hh, j)).collect();
                let m = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = sc.iter().map(|&x| (x - m).exp()).collect();
                want_m[pb] = Want::Near(m);
                want_l[pb + 1] = Want::Near(e.iter().sum());
                for d in 0..hd {
                    let a: f64 = (start..end)
                        .zip(&e)
                        .map(|(j, &w)| w * f64::from(vrow(hh, j)[d]))
                        .sum();
                    want_acc[pb + 2 + d] = Want::Near(a);
                }
            }
            let sc: Vec<f64> = (lo..=qi).map(|j| score(t, hh, j)).collect();
            let m = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = sc.iter().map(|&x| (x - m).exp()).collect();
            let l: f64 = e.iter().sum();
            for d in 0..hd {
                let a: f64 = (lo..=qi)
                    .zip(&e)
                    .map(|(j, &w)| w * f64::from(vrow(hh, j)[d]))
                    .sum();
                want_out.push(Want::Near(a / l));
            }
        }
    }
    want_out.extend(std::iter::repeat_n(Want::Bits(UNTOUCHED), tail));
    // Each of m, l and acc on its own (their scales differ); the other slots of each view
    // are compared exactly through the view that owns them.
    let view = |w: &[Want], own: &dyn Fn(usize) -> bool| -> (Vec<f32>, Vec<Want>) {
        (0..parts_len)
            .filter(|&i| {
                let within = i < s.seq * heads * splits * (hd + 2);
                !within || own(i % (hd + 2))
            })
            .map(|i| (parts[i], w[i]))
            .unzip()
    };
    let desc = format!(
        "heads={heads}/{kvh} hd={hd} seq={} past={} window={} softcap={} scale={scale:.4} splits={splits} kps={kps} empty-splits={empty}",
        s.seq, s.past, s.window, s.softcap
    );
    if splits == 1 {
        let untouched_parts = vec![Want::Bits(UNTOUCHED); parts_len];
        r.check(
            h,
            "attention::partial",
            &format!("{desc} (one split: the output, no partials)"),
            s.seed,
            &[
                ("out", &out, &want_out),
                ("parts", &parts, &untouched_parts),
            ],
        );
    } else {
        let (gm, wm) = view(&want_m, &|o| o == 0);
        let (gl, wl) = view(&want_l, &|o| o == 1);
        let (ga, wa) = view(&want_acc, &|o| o >= 2);
        r.check(
            h,
            "attention::partial",
            &desc,
            s.seed,
            &[("max", &gm, &wm), ("sum", &gl, &wl), ("acc", &ga, &wa)],
        );
        r.check(
            h,
            "attention::combine",
            &format!("{desc} (after partial)"),
            s.seed,
            &[("out", &out, &want_out)],
        );
    }
    // The plan's prefill of heads it takes (graph/attention.rs): the same outputs at once, in
    // blocks of queries; on cooperative matrices where the plan takes them.
    let coop = h.gpu.coop_gemm() && hd.is_multiple_of(16) && hd <= ATTENTION_COOP_MAX_HD;
    for (kernel, queries, on) in [
        (
            Kernel::Attention,
            ATTENTION_PREFILL_QUERIES,
            hd.is_multiple_of(4) && hd <= ATTENTION_PREFILL_MAX_HD,
        ),
        // Two blocks of queries per workgroup (`attend` in attention_coop.wgsl).
        (Kernel::AttentionCoop, 2 * ATTENTION_COOP_QUERIES, coop),
    ] {
        if s.seq < 2 || !on {
            continue;
        }
        // attention_coop's two entry points bind both outputs (they share their code).
        let run_prefill = |entry: &'static str, out: &wgpu::Buffer, out_h: &wgpu::Buffer| {
            let mut bind: Vec<(u32, &wgpu::Buffer)> = bind_prefill(&q_buf, &kc_buf, &vc_buf);
            bind.push((binding::attention::OUT, out));
            bind.push((binding::attention_coop::OUT_H, out_h));
            bind.push((binding::attention_coop::KCACHE_L, &kc_buf));
            bind.push((binding::attention_coop::VCACHE_L, &vc_buf));
            h.run(&[Dispatch {
                kernel,
                entry,
                params: params(kernel, &set),
                bind,
                grid: [s.seq.div_ceil(queries as usize) as u32, heads as u32, 1],
            }]);
        };
        let out2_buf = h.f32s(&vec![untouched(); s.seq * heads * hd + tail]);
        run_prefill("prefill", &out2_buf, &h.dummy);
        let out2 = h.read(&out2_buf, s.seq * heads * hd + tail);
        r.check(
            h,
            &format!("{}::prefill", kernel.name()),
            &desc,
            s.seed,
            &[("out", &out2, &want_out)],
        );
        if kernel != Kernel::AttentionCoop {
            continue;
        }
        // The output in f16, for an output projection on cooperative matrices.
        let n = s.seq * heads * hd;
        let out_h = h.half_out(n, 2 * tail);
        run_prefill("prefill_h", &h.dummy, &out_h);
        let got = h.read_halves(&out_h, n + 2 * tail);
        let mut want_h = want_out[..n].to_vec();
        want_h.extend(std::iter::repeat_n(half_untouched(), 2 * tail));
        r.check(
            h,
            "attention_coop::prefill_h",
            &desc,
            s.seed,
            &[("out", &got, &want_h)],
        );
    }
    // The plan's one-pass decode (graph/attention.rs): one token over at most
    // ATTENTION_DECODE_KEYS keys, heads of a multiple of 4.
    let keys = if s.window > 0 {
        (s.past + 1).min(s.window)
    } else {
        s.past + 1
    };
    // Both entry points (the plan picks by the count of keys; each is right for any count).
    if s.seq == 1 && hd.is_multiple_of(4) && keys <= ATTENTION_DECODE_KEYS as usize {
        for (entry, name) in [
            ("decode", "attention::decode"),
            ("decode_wide", "attention::decode_wide"),
        ] {
            let out3_buf = h.f32s(&vec![untouched(); heads * hd + tail]);
            let mut bind3 = bind_prefill(&q_buf, &kc_buf, &vc_buf);
            bind3.push((binding::attention::OUT, &out3_buf));
            h.run(&[Dispatch {
                kernel: Kernel::Attention,
                entry,
                params: params(Kernel::Attention, &set),
                bind: bind3,
                grid: [heads as u32, 1, 1],
            }]);
            let out3 = h.read(&out3_buf, heads * hd + tail);
            r.check(
                h,
                name,
                &format!("{desc} keys={keys}"),
                s.seed,
                &[("out", &out3, &want_out)],
            );
        }
    }
}

/// The inputs `attention::prefill` binds (q and the caches as vectors).
fn bind_prefill<'a>(
    q: &'a wgpu::Buffer,
    kc: &'a wgpu::Buffer,
    vc: &'a wgpu::Buffer,
) -> Vec<(u32, &'a wgpu::Buffer)> {
    vec![
        (binding::attention::Q, q),
        (binding::attention::KCACHE4, kc),
        (binding::attention::VCACHE4, vc),
    ]
}

/// combine alone, on partials written here: one split empty (as `partial` leaves it).
fn combine_case(h: &Harness, r: &mut Report, seed: u64) {
    let mut rng = Rng::new(seed);
    let (seq, heads, hd, splits) = (2usize, 3usize, 20usize, 4usize);
    let mut parts = Vec::new();
    for t in 0..seq {
        for hh in 0..heads {
            for sp in 0..splits {
                if (t + hh + sp) % 5 == 1 {
                    parts.push(EMPTY_MAX);
                    parts.push(0.0);
                    parts.extend(std::iter::repeat_n(0.0, hd));
                } else {
                    let l = 0.5 + 4.0 * rng.uniform() as f32;
                    parts.push((3.0 * rng.normal()) as f32);
                    parts.push(l);
                    parts.extend(rng.gaussian_vec(hd, l));
                }
            }
        }
    }
    let parts_buf = h.f32s(&parts);
    let tail = 2;
    let out_buf = h.f32s(&vec![untouched(); seq * heads * hd + tail]);
    h.run(&[Dispatch {
        kernel: Kernel::Attention,
        entry: "combine",
        params: params(
            Kernel::Attention,
            &[
                ("seq", u(seq)),
                ("past", P::U(0)),
                ("heads", u(heads)),
                ("kv_heads", u(heads)),
                ("hd", u(hd)),
                ("max_seq", P::U(64)),
                ("window", P::U(0)),
                ("splits", u(splits)),
                ("kps", P::U(1)),
                ("scale", P::F(1.0)),
                ("softcap", P::F(0.0)),
            ],
        ),
        bind: vec![
            (binding::attention::PARTS, &parts_buf),
            (binding::attention::OUT, &out_buf),
        ],
        grid: [heads as u32, seq as u32, 1],
    }]);
    let got = h.read(&out_buf, seq * heads * hd + tail);
    let mut want = Vec::new();
    for th in 0..seq * heads {
        let b = |sp: usize| (th * splits + sp) * (hd + 2);
        let gm = (0..splits)
            .map(|sp| f64::from(parts[b(sp)]))
            .fold(f64::NEG_INFINITY, f64::max);
        let w = |sp: usize| (f64::from(parts[b(sp)]) - gm).exp();
        let gl: f64 = (0..splits)
            .map(|sp| f64::from(parts[b(sp) + 1]) * w(sp))
            .sum();
        for d in 0..hd {
            let o: f64 = (0..splits)
                .map(|sp| f64::from(parts[b(sp) + 2 + d]) * w(sp))
                .sum();
            want.push(Want::Near(o / gl));
        }
    }
    want.extend(std::iter::repeat_n(Want::Bits(UNTOUCHED), tail));
    r.check(
        h,
        "attention::combine",
        &format!(
            "random partials seq={seq} heads={heads} hd={hd} splits={splits} with empty splits"
        ),
        seed,
        &[("out", &got, &want)],
    );
}

// ---------------------------------------------------------------------------------------------
// elementwise

/// The plan's grid of an `Elementwise` op of `threads` threads and its `grid_width` parameter
/// (graph/elementwise.rs `Builder::elementwise`).
fn elementwise_grid(threads: usize) -> ([u32; 3], (&'static str, P)) {
    let (grid, gx) = grid_1d(threads.div_ceil(ELEMENTWISE_WG as usize));
    (grid, ("grid_width", P::U(gx * ELEMENTWISE_WG)))
}

/// graph/elementwise.rs `elementwise_params`: the fields an entry point does not read, at the
/// plan's defaults.
fn elementwise_base(set: &[(&'static str, P)]) -> Vec<(&'static str, P)> {
    let mut v = vec![
        ("row0", P::U(0)),
        ("rows", P::U(0)),
        ("group", P::U(8)),
        ("words_per_row", P::U(0)),
        ("groups_per_row", P::U(0)),
        ("act", P::U(0)),
        ("scale", P::F(1.0)),
        ("cap", P::F(0.0)),
    ];
    v.extend_from_slice(set);
    v
}

/// An embedding table (`vocab` × `n`, in chunks starting at `chunks`); tokens inside and
/// outside each chunk, one op per chunk.
fn embed_case(
    h: &Harness,
    r: &mut Report,
    seed: u64,
    (wt, vocab, n, chunks): (Wt, usize, usize, &'static [usize]),
    tokens: &[u32],
    scale: f32,
) {
    let mut rng = Rng::new(seed);
    let table = upload_tensor(h, &mut rng, wt, vocab, n, chunks);
    let seq = tokens.len();
    let tok_buf = h.u32s(tokens);
    let tail = 5;
    let y_buf = h.f32s(&vec![untouched(); seq * n + tail]);
    let (entry, group) = match wt {
        Wt::M0E4(g) => ("embed_m0e4", g),
        _ => ("embed_dense", 8),
    };
    let threads = match wt {
        Wt::M0E4(_) => seq * M0E4Matrix::words_per_row(n),
        _ => seq * n,
    };
    let (grid, gw) = elementwise_grid(threads);
    let ds: Vec<Dispatch> = table
        .chunks
        .iter()
        .map(|(range, m)| {
            let mut set = vec![
                ("seq", u(seq)),
                ("n", u(n)),
                ("row0", u(range.start)),
                ("rows", u(range.len())),
                ("scale", P::F(scale)),
                gw,
            ];
            let mut bind = vec![
                (binding::elementwise::TOKENS, &tok_buf),
                (binding::elementwise::Y, &y_buf),
            ];
            match wt {
                Wt::M0E4(_) => {
                    set.extend([
                        ("group", u(group)),
                        ("words_per_row", u(M0E4Matrix::words_per_row(n))),
                        ("groups_per_row", u(M0E4Matrix::groups_per_row(n, group))),
                    ]);
                    bind.extend([
                        (binding::elementwise::PACKED, &m.parts[0]),
                        (binding::elementwise::GROUPS, &m.parts[1]),
                    ]);
                }
                _ => bind.push((binding::elementwise::DENSE, &m.parts[0])),
            }
            Dispatch {
                kernel: Kernel::Elementwise,
                entry,
                params: params(Kernel::Elementwise, &elementwise_base(&set)),
                bind,
                grid,
            }
        })
        .collect();
    h.run(&ds);
    let got = h.read(&y_buf, seq * n + tail);
    let mut want = Vec::new();
    for &tok in tokens {
        let row = &table.values[tok as usize * n..(tok as usize + 1) * n];
        want.extend(
            row.iter()
                .map(|&v| Want::Near(f64::from(v) * f64::from(scale))),
        );
    }
    want.extend(std::iter::repeat_n(Want::Bits(UNTOUCHED), tail));
    r.check(
        h,
        &format!("elementwise::{entry}"),
        &format!("{wt:?} vocab={vocab} n={n} chunks={chunks:?} tokens={tokens:?} scale={scale}"),
        seed,
        &[("y", &got, &want)],
    );
}

/// `elementwise::<entry>` (glu or glu_h) over `seq` × `n` with activation `act_kind`, on
/// `threads` invocations.
fn glu_dispatch(
    h: &Harness,
    entry: &'static str,
    (seq, n, act_kind): (usize, usize, u32),
    threads: usize,
    bind: Vec<(u32, &wgpu::Buffer)>,
) {
    let (grid, gw) = elementwise_grid(threads);
    h.run(&[Dispatch {
        kernel: Kernel::Elementwise,
        entry,
        params: params(
            Kernel::Elementwise,
            &elementwise_base(&[("seq", u(seq)), ("n", u(n)), ("act", P::U(act_kind)), gw]),
        ),
        bind,
        grid,
    }]);
}

fn glu_case(h: &Harness, r: &mut Report, seed: u64, seq: usize, n: usize, act_kind: u32) {
    let mut rng = Rng::new(seed);
    let y = rng.gaussian_vec(seq * n, 3.0);
    let up = rng.gaussian_vec(seq * n, 1.0);
    let tail = 3;
    let mut y0 = y.clone();
    y0.extend(std::iter::repeat_n(untouched(), tail));
    let (y_buf, up_buf) = (h.f32s(&y0), h.f32s(&up));
    let per = GLU_PER_THREAD as usize;
    let shape = (seq, n, act_kind);
    let bind = vec![
        (binding::elementwise::Y, &y_buf),
        (binding::elementwise::UP, &up_buf),
    ];
    glu_dispatch(h, "glu", shape, (seq * n).div_ceil(per), bind);
    let got = h.read(&y_buf, seq * n + tail);
    let mut want = nears(
        y.iter()
            .zip(&up)
            .map(|(&g, &u)| act(act_kind, f64::from(g)) * f64::from(u)),
    );
    let desc = format!(
        "seq={seq} n={n} act={}",
        ["silu", "gelu_tanh"][act_kind as usize]
    );
    let mut want_h = want[..seq * n].to_vec();
    want.extend(std::iter::repeat_n(Want::Bits(UNTOUCHED), tail));
    r.check(h, "elementwise::glu", &desc, seed, &[("y", &got, &want)]);
    // The plan's activation before a down projection on cooperative matrices: in f16, into an
    // output of its own (y and up unchanged).
    if !n.is_multiple_of(2) {
        return;
    }
    let (g_buf, y_h) = (h.f32s(&y), h.half_out(seq * n, 2 * tail));
    let bind = vec![
        (binding::elementwise::Y, &g_buf),
        (binding::elementwise::UP, &up_buf),
        (binding::elementwise::Y_H, &y_h),
    ];
    glu_dispatch(h, "glu_h", shape, (seq * n / 2).div_ceil(per / 2), bind);
    let got = h.read_halves(&y_h, seq * n + 2 * tail);
    want_h.extend(std::iter::repeat_n(half_untouched(), 2 * tail));
    let same = nears(y.iter().map(|&v| f64::from(v)));
    let kept = h.read(&g_buf, seq * n);
    r.check(
        h,
        "elementwise::glu_h",
        &desc,
        seed,
        &[("y_h", &got, &want_h), ("y", &kept, &same)],
    );
}

fn softcap_case(h: &Harness, r: &mut Report, seed: u64, seq: usize, n: usize, cap: f32) {
    let mut rng = Rng::new(seed);
    // Some logits far past the cap (tanh saturates, the kernel clamps its argument).
    let y = rng.gaussian_vec(seq * n, 4.0 * cap);
    let tail = 3;
    let mut y0 = y.clone();
    y0.extend(std::iter::repeat_n(untouched(), tail));
    let y_buf = h.f32s(&y0);
    let (grid, gw) = elementwise_grid(seq * n);
    h.run(&[Dispatch {
        kernel: Kernel::Elementwise,
        entry: "softcap",
        params: params(
            Kernel::Elementwise,
            &elementwise_base(&[("seq", u(seq)), ("n", u(n)), ("cap", P::F(cap)), gw]),
        ),
        bind: vec![(binding::elementwise::Y, &y_buf)],
        grid,
    }]);
    let got = h.read(&y_buf, seq * n + tail);
    let c = f64::from(cap);
    let mut want = nears(y.iter().map(|&v| c * (f64::from(v) / c).tanh()));
    want.extend(std::iter::repeat_n(Want::Bits(UNTOUCHED), tail));
    r.check(
        h,
        "elementwise::softcap",
        &format!("seq={seq} n={n} cap={cap} grid={grid:?}"),
        seed,
        &[("y", &got, &want)],
    );
}

/// A row's log-sum-exp in f64.
fn lse64(row: &[f32]) -> f64 {
    let m = row
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(f64::from(v)));
    m + row
        .iter()
        .map(|&v| (f64::from(v) - m).exp())
        .sum::<f64>()
        .ln()
}

/// Ids of a row by value, largest first, the lower id first on ties.
fn ranked(row: &[f32]) -> Vec<u32> {
    let mut ids: Vec<u32> = (0..row.len() as u32).collect();
    ids.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
    ids
}

/// `score::main` in one baseline mode (0 none, 1 logits, 2 top-k) with `k_out` top
/// log-probabilities: every output word per row against f64, indices exactly.
fn score_case(
    h: &Harness,
    r: &mut Report,
    seed: u64,
    (rows, vocab): (usize, usize),
    mode: u32,
    k_in: usize,
    k_out: usize,
) {
    let mut rng = Rng::new(seed);
    let mut logits = rng.gaussian_vec(rows * vocab, 3.0);
    // A tie for the first place in row 0: the lower id wins.
    let m = logits[..vocab].iter().fold(f32::MIN, |a, &b| a.max(b)) + 1.0;
    logits[vocab / 3] = m;
    logits[vocab / 2] = m;
    // The baseline: the same logits perturbed.
    let noise = rng.gaussian_vec(rows * vocab, 0.5);
    let base: Vec<f32> = logits.iter().zip(&noise).map(|(a, b)| a + b).collect();
    let targets: Vec<u32> = (0..rows)
        .map(|i| ((i * 7919 + 13) % vocab) as u32)
        .collect();
    let (mut ids, mut lps) = (Vec::new(), Vec::new());
    for row in base.chunks_exact(vocab) {
        let l = lse64(row);
        for &i in ranked(row).iter().take(k_in) {
            ids.push(i);
            lps.push((f64::from(row[i as usize]) - l) as f32);
        }
    }
    let tail = 3;
    let sentinel = |n: usize| vec![untouched(); n + tail];
    let bufs = (
        h.f32s(&logits),
        h.u32s(&targets),
        h.f32s(&base),
        h.u32s(&ids),
        h.f32s(&lps),
    );
    let out = h.f32s(&sentinel(rows * SCORE_OUT as usize));
    let top_ids = h.f32s(&sentinel(rows * k_out));
    let top_lp = h.f32s(&sentinel(rows * k_out));
    h.run(&[Dispatch {
        kernel: Kernel::Score,
        entry: "main",
        params: params(
            Kernel::Score,
            &[
                ("rows", u(rows)),
                ("vocab", u(vocab)),
                ("base_mode", P::U(mode)),
                ("k_in", u(k_in)),
                ("k_out", u(k_out)),
            ],
        ),
        bind: vec![
            (binding::score::LOGITS, &bufs.0),
            (binding::score::TARGETS, &bufs.1),
            (binding::score::BASE, &bufs.2),
            (binding::score::BASE_IDS, &bufs.3),
            (binding::score::BASE_LP, &bufs.4),
            (binding::score::OUT, &out),
            (binding::score::TOP_IDS, &top_ids),
            (binding::score::TOP_LP, &top_lp),
        ],
        grid: [rows as u32, 1, 1],
    }]);
    let got_out = h.read(&out, rows * SCORE_OUT as usize + tail);
    let got_ids = h.read(&top_ids, rows * k_out + tail);
    let got_lp = h.read(&top_lp, rows * k_out + tail);
    // Columns of `out`: the f32 ones compared by NMSE, the indices exactly.
    let cols = SCORE_OUT as usize;
    let column = |c: usize| -> Vec<f32> { (0..rows).map(|i| got_out[i * cols + c]).collect() };
    let mut want = vec![Vec::new(); cols];
    let (mut want_ids, mut want_lp) = (Vec::new(), Vec::new());
    for (i, (row, brow)) in logits
        .chunks_exact(vocab)
        .zip(base.chunks_exact(vocab))
        .enumerate()
    {
        let t = targets[i] as usize;
        let l = lse64(row);
        let lq = |v: usize| f64::from(row[v]) - l;
        let order = ranked(row);
        let (mut kl, mut bl, mut bt, mut barg, mut mass) = (0.0, 0.0, 0.0, 0u32, 0.0);
        match mode {
            1 => {
                bl = lse64(brow);
                bt = f64::from(brow[t]) - bl;
                barg = ranked(brow)[0];
                kl = (0..vocab)
                    .map(|v| {
                        let lb = f64::from(brow[v]) - bl;
                        lb.exp() * (lb - lq(v))
                    })
                    .sum();
            }
            2 => {
                let (id, lp) = (&ids[i * k_in..][..k_in], &lps[i * k_in..][..k_in]);
                let (mut p_in, mut q_in) = (0.0, 0.0);
                for (&v, &lb) in id.iter().zip(lp) {
                    let lb = f64::from(lb);
                    kl += lb.exp() * (lb - lq(v as usize));
                    p_in += lb.exp();
                    q_in += lq(v as usize).exp();
                }
                let (rp, rq) = (1.0f64 - p_in, 1.0f64 - q_in);
                if rp > 0.0 {
                    kl += rp * (rp.ln() - rq.ln());
                }
                mass = q_in;
                barg = id[0];
            }
            _ => {}
        }
        let words = [l, lq(t), f64::NAN, kl, bl, bt, f64::NAN, mass];
        for (c, w) in words.into_iter().enumerate() {
            want[c].push(match c {
                2 => Want::Bits(order[0]),
                6 => Want::Bits(barg),
                _ => Want::Near(w),
            });
        }
        for &v in order.iter().take(k_out) {
            want_ids.push(Want::Bits(v));
            want_lp.push(Want::Near(lq(v as usize)));
        }
    }
    let got: Vec<Vec<f32>> = (0..cols).map(column).collect();
    let tail_of = |buf: &[f32], n: usize| buf[n..].to_vec();
    let sentinels = vec![Want::Bits(UNTOUCHED); tail];
    let names = [
        "lse",
        "logprob",
        "argmax",
        "kld",
        "base_lse",
        "base_logprob",
        "base_argmax",
        "mass",
    ];
    let mut outs: Vec<(&str, &[f32], &[Want])> = names
        .iter()
        .zip(&got)
        .zip(&want)
        .map(|((n, g), w)| (*n, g.as_slice(), w.as_slice()))
        .collect();
    let (ids_used, lp_used) = (&got_ids[..rows * k_out], &got_lp[..rows * k_out]);
    let tails = [
        tail_of(&got_out, rows * cols),
        tail_of(&got_ids, rows * k_out),
        tail_of(&got_lp, rows * k_out),
    ];
    outs.push(("top_ids", ids_used, &want_ids));
    outs.push(("top_lp", lp_used, &want_lp));
    for t in &tails {
        outs.push(("past the end", t, &sentinels));
    }
    r.check(
        h,
        "score::main",
        &format!("rows={rows} vocab={vocab} mode={mode} k_in={k_in} k_out={k_out}"),
        seed,
        &outs,
    );
}

/// Greedy decoding's next token: the argmax of row 0 (the lower id on ties, NaN never chosen)
/// into `out[0]` and `out[1]`; a row with no finite maximum gives `vocab - 1` and 0xffffffff.
fn next_token_case(h: &Harness, r: &mut Report, seed: u64, vocab: usize, all_nan: bool) {
    let mut rng = Rng::new(seed);
    // a second row, which must not be read
    let mut logits = rng.gaussian_vec(2 * vocab, 3.0);
    let m = logits[..vocab].iter().fold(f32::MIN, |a, &b| a.max(b)) + 1.0;
    logits[vocab / 2] = m;
    logits[vocab / 3] = m;
    logits[vocab - 1] = f32::NAN;
    logits[vocab + 7] = m + 5.0;
    if all_nan {
        logits[..vocab].fill(f32::NAN);
    }
    let tail = 3;
    let out = h.f32s(&vec![untouched(); 2 + tail]);
    let logits_buf = h.f32s(&logits);
    h.run(&[Dispatch {
        kernel: Kernel::Score,
        entry: "next_token",
        params: params(
            Kernel::Score,
            &[
                ("rows", u(1)),
                ("vocab", u(vocab)),
                ("base_mode", u(0)),
                ("k_in", u(0)),
                ("k_out", u(0)),
            ],
        ),
        bind: vec![
            (binding::score::LOGITS, &logits_buf),
            (binding::score::OUT, &out),
        ],
        grid: [1, 1, 1],
    }]);
    let got = h.read(&out, 2 + tail);
    let want = match all_nan {
        true => [(vocab - 1) as u32, u32::MAX],
        false => [(vocab / 3) as u32; 2],
    };
    let want: Vec<Want> = want.into_iter().map(Want::Bits).collect();
    let sentinels = vec![Want::Bits(UNTOUCHED); tail];
    r.check(
        h,
        "score::next_token",
        &format!("vocab={vocab} all_nan={all_nan}"),
        seed,
        &[
            ("token", &got[..2], &want),
            ("past the end", &got[2..], &sentinels),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// The cases

fn all_cases(h: &Harness, r: &mut Report) {
    for (seed, rows, cols, g) in [
        (1, 5, 37, 32),
        (2, 4, 200, 64),
        (3, 3, 300, 128),
        (4, 2, 4099, 64),
    ] {
        dequant_case(h, r, seed, rows, cols, g);
    }

    for s in matmul_specs() {
        matmul_case(h, r, &s);
    }
    for s in [
        GluSpec {
            desc: "decode",
            seed: 201,
            seq: 1,
            k: 128,
            group: 32,
            f: 40,
            fused_tensor: false,
            act: 0,
            eps: 1e-5,
            w_offset: 0.0,
        },
        GluSpec {
            desc: "decode",
            seed: 202,
            seq: 3,
            k: 192,
            group: 64,
            f: 36,
            fused_tensor: true,
            act: 1,
            eps: 1e-6,
            w_offset: 1.0,
        },
        GluSpec {
            desc: "g128-ragged",
            seed: 203,
            seq: 1,
            k: 160,
            group: 128,
            f: 17,
            fused_tensor: false,
            act: 1,
            eps: 1e-6,
            w_offset: 0.0,
        },
        // Inputs of NARROW_NORM_MIN_K columns and more: gemv_m0e4_glu_narrow.
        GluSpec {
            desc: "narrow",
            seed: 205,
            seq: 1,
            k: NARROW_NORM_MIN_K,
            group: 64,
            f: 11,
            fused_tensor: true,
            act: 1,
            eps: 1e-6,
            w_offset: 1.0,
        },
        GluSpec {
            desc: "narrow g8 ragged",
            seed: 206,
            seq: 2,
            k: NARROW_NORM_MIN_K + 2056,
            group: 8,
            f: 6,
            fused_tensor: false,
            act: 0,
            eps: 1e-5,
            w_offset: 0.0,
        },
        GluSpec {
            desc: "blocks=2",
            seed: 204,
            seq: 1,
            k: 64,
            group: 64,
            f: 4100,
            fused_tensor: false,
            act: 0,
            eps: 1e-6,
            w_offset: 0.0,
        },
    ] {
        glu_fused_case(h, r, &s);
    }
    glu_separate_case(h, r, 205, 0);
    glu_separate_case(h, r, 206, 1);

    for s in [
        NormSpec {
            desc: "input-norm",
            seed: 301,
            rows: 3,
            n: 100,
            ..NORM
        },
        NormSpec {
            desc: "sandwich add 1+w",
            seed: 302,
            rows: 2,
            n: 300,
            add: true,
            eps: 1e-5,
            w_offset: 1.0,
            ..NORM
        },
        NormSpec {
            desc: "final gathered",
            seed: 303,
            rows: 3,
            n: 64,
            gather: Some(&[4, 0, 2]),
            ..NORM
        },
        NormSpec {
            desc: "n>4096 tail",
            seed: 304,
            rows: 2,
            n: 4500,
            ..NORM
        },
        NormSpec {
            desc: "qk-norm",
            seed: 305,
            rows: 6,
            n: 64,
            inplace: true,
            ..NORM
        },
        NormSpec {
            desc: "qk-norm 1+w",
            seed: 306,
            rows: 4,
            n: 130,
            inplace: true,
            w_offset: 1.0,
            eps: 1e-5,
            ..NORM
        },
    ] {
        norm_case(h, r, &s);
    }

    let rope = RopeSpec {
        seed: 0,
        seq: 3,
        past: 0,
        heads: 4,
        kv_heads: 2,
        hd: 32,
        rot: 32,
        interleaved: false,
        max_seq: 8,
        theta: 10000.0,
        factor: 1.0,
    };
    for s in [
        RopeSpec { seed: 401, ..rope },
        RopeSpec {
            seed: 402,
            seq: 2,
            past: 5,
            heads: 4,
            kv_heads: 1,
            hd: 64,
            rot: 32,
            max_seq: 16,
            factor: 2.0,
            ..rope
        },
        RopeSpec {
            seed: 403,
            seq: 4,
            past: 3,
            heads: 2,
            kv_heads: 2,
            hd: 64,
            rot: 16,
            interleaved: true,
            max_seq: 12,
            ..rope
        },
        RopeSpec {
            seed: 404,
            seq: 1,
            past: 10,
            heads: 8,
            kv_heads: 2,
            hd: 16,
            rot: 16,
            interleaved: true,
            max_seq: 11,
            theta: 500000.0,
            ..rope
        },
    ] {
        rope_case(h, r, &s);
    }

    let attn = AttnSpec {
        seed: 0,
        seq: 1,
        past: 0,
        heads: 4,
        kv_heads: 2,
        hd: 64,
        max_seq: 32,
        window: 0,
        softcap: 0.0,
        pre_scalar: None,
    };
    for s in [
        // Prefill: one split per query.
        AttnSpec {
            seed: 501,
            seq: 9,
            ..attn
        },
        AttnSpec {
            seed: 502,
            seq: 7,
            past: 5,
            hd: 32,
            window: 6,
            ..attn
        },
        // Several blocks of queries (the last ragged) and tiles of keys; grouped-query heads.
        AttnSpec {
            seed: 511,
            seq: 50,
            past: 13,
            heads: 8,
            kv_heads: 2,
            max_seq: 70,
            ..attn
        },
        // Three blocks of the coop kernel's queries, five tiles of its keys.
        AttnSpec {
            seed: 516,
            seq: 130,
            past: 7,
            heads: 4,
            kv_heads: 1,
            max_seq: 140,
            ..attn
        },
        AttnSpec {
            seed: 512,
            seq: 37,
            past: 20,
            heads: 2,
            kv_heads: 1,
            hd: 128,
            max_seq: 64,
            window: 25,
            softcap: 30.0,
            ..attn
        },
        // Decode: several splits.
        AttnSpec {
            seed: 503,
            past: 100,
            heads: 8,
            kv_heads: 2,
            max_seq: 128,
            ..attn
        },
        AttnSpec {
            seed: 504,
            past: 100,
            window: 40,
            softcap: 50.0,
            pre_scalar: Some(256.0),
            max_seq: 110,
            ..attn
        },
        AttnSpec {
            seed: 505,
            past: 1100,
            heads: 2,
            kv_heads: 1,
            hd: 128,
            max_seq: 1200,
            ..attn
        },
        // The one-pass decode over one workgroup's worth of keys (256) and over its most (512,
        // two per thread), grouped-query heads.
        AttnSpec {
            seed: 513,
            past: 255,
            heads: 8,
            kv_heads: 2,
            hd: 128,
            max_seq: 260,
            ..attn
        },
        AttnSpec {
            seed: 515,
            past: 511,
            heads: 4,
            kv_heads: 1,
            hd: 64,
            max_seq: 520,
            softcap: 30.0,
            ..attn
        },
        // A head of 20 vectors (Phi-2's 80): slices of the keys that do not divide the workgroup.
        AttnSpec {
            seed: 514,
            past: 30,
            heads: 2,
            kv_heads: 1,
            hd: 80,
            max_seq: 40,
            ..attn
        },
        // A sliding window far behind the query: most splits are empty.
        AttnSpec {
            seed: 510,
            past: 1100,
            heads: 2,
            kv_heads: 1,
            max_seq: 1104,
            window: 40,
            ..attn
        },
        AttnSpec {
            seed: 506,
            past: 40,
            heads: 2,
            kv_heads: 1,
            hd: 256,
            max_seq: 48,
            softcap: 20.0,
            ..attn
        },
        // hd not a multiple of 4: the scalar q·k path.
        AttnSpec {
            seed: 507,
            seq: 3,
            past: 2,
            heads: 2,
            kv_heads: 1,
            hd: 18,
            max_seq: 8,
            ..attn
        },
        AttnSpec {
            seed: 508,
            past: 70,
            heads: 2,
            kv_heads: 1,
            hd: 18,
            max_seq: 80,
            window: 50,
            ..attn
        },
    ] {
        attention_case(h, r, &s);
    }
    combine_case(h, r, 509);

    // The joined q/k/v decode with RoPE and the KV write: rotated everywhere, partly (half
    // and interleaved pairs), with and without bias, at the cache's first and last position.
    let qkv_rope = RopeSpec {
        seed: 0,
        seq: 1,
        past: 5,
        heads: 4,
        kv_heads: 2,
        hd: 32,
        rot: 32,
        interleaved: false,
        max_seq: 12,
        theta: 10000.0,
        factor: 1.0,
    };
    for (s, k) in [
        (
            RopeSpec {
                seed: 451,
                ..qkv_rope
            },
            (128, 32, false),
        ),
        (
            RopeSpec {
                seed: 452,
                past: 0,
                heads: 6,
                hd: 16,
                rot: 16,
                max_seq: 4,
                ..qkv_rope
            },
            (64, 64, true),
        ),
        (
            RopeSpec {
                seed: 453,
                past: 9,
                kv_heads: 1,
                rot: 16,
                interleaved: true,
                max_seq: 10,
                ..qkv_rope
            },
            (96, 32, true),
        ),
        (
            RopeSpec {
                seed: 454,
                rot: 16,
                factor: 4.0,
                theta: 500000.0,
                ..qkv_rope
            },
            (256, 128, false),
        ),
    ] {
        qkv_rope_case(h, r, &s, k);
    }

    embed_case(
        h,
        r,
        601,
        (Wt::M0E4(32), 50, 100, &[0, 20]),
        &[3, 25, 49, 0, 20, 19],
        10.0,
    );
    embed_case(h, r, 602, (Wt::M0E4(64), 30, 64, &[0]), &[7], 1.0);
    embed_case(h, r, 603, (Wt::M0E4(128), 12, 300, &[0]), &[11, 2], 1.0);
    embed_case(h, r, 604, (Wt::F32, 10, 48, &[0]), &[9, 0, 4], 1.0);
    embed_case(
        h,
        r,
        606,
        (Wt::F32, 20, 50, &[0, 10]),
        &[15, 2, 10],
        50f32.sqrt(),
    );
    embed_case(
        h,
        r,
        605,
        (Wt::F16, 40, 37, &[0, 13, 30]),
        &[1, 13, 35, 12, 29],
        6.0,
    );

    glu_case(h, r, 701, 3, 100, 0);
    glu_case(h, r, 702, 2, 77, 1);
    softcap_case(h, r, 801, 2, 1000, 30.0);
    // More than 65535 workgroups: the plan's second grid dimension.
    softcap_case(h, r, 802, 1, 65535 * 64 + 100, 30.0);

    score_case(h, r, 901, (3, 1000), 0, 0, 5);
    score_case(h, r, 902, (4, 777), 1, 0, 0);
    score_case(h, r, 903, (2, 3001), 2, 37, 3);
    score_case(h, r, 904, (1, 64), 2, 64, 64);
    next_token_case(h, r, 911, 1000, false);
    next_token_case(h, r, 912, 151_936, false);
    next_token_case(h, r, 913, 300, true);
}

#[test]
fn every_entry_point_matches_the_cpu() {
    let Some(gpu) = tlite_runtime_gpu::device::gpu_for_test("every_entry_point_matches_the_cpu")
    else {
        return;
    };
    let start = std::time::Instant::now();
    let h = Harness::new(gpu);
    let mut r = Report::default();
    all_cases(&h, &mut r);
    let all: BTreeSet<String> = Kernel::ALL
        .iter()
        .flat_map(|k| {
            k.entries()
                .iter()
                .map(move |e| format!("{}::{e}", k.name()))
        })
        .collect();
    for (e, _) in TOLERANCES {
        assert!(all.contains(*e), "TOLERANCES names {e}, not an entry point");
    }
    let mut missing: Vec<&String> = all.difference(&r.covered).collect();
    // Only adapters with cooperative matrices run the coop GEMM (lavapipe has none);
    // TLITE_REQUIRE_COOPMAT=1 makes its absence a failure (on the lent GPU).
    if !h.gpu.coop_gemm() && std::env::var_os("TLITE_REQUIRE_COOPMAT").is_none() {
        let coop_kernels = Kernel::ALL
            .iter()
            .filter(|k| k.needs_cooperative_matrices());
        for (k, entry) in coop_kernels.flat_map(|&k| k.entries().iter().map(move |e| (k, e))) {
            let coop = format!("{}::{entry}", k.name());
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {coop}: the adapter has no usable cooperative matrices"
            );
            missing.retain(|e| **e != coop);
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "{} entry points covered, {} failures, {:.1} s",
        r.covered.len(),
        r.failures.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(
        missing.is_empty(),
        "entry points without a case: {missing:?}"
    );
    assert!(
        r.failures.is_empty(),
        "{} cases failed:\n{}",
        r.failures.len(),
        r.failures.join("\n")
    );
}

/// The harness can fail: with every reference negated (a sign flip), cases fail.
#[test]
fn a_broken_reference_fails() {
    let Some(gpu) = tlite_runtime_gpu::device::gpu_for_test("a_broken_reference_fails") else {
        return;
    };
    let h = Harness::new(gpu);
    let mut r = Report {
        negate: true,
        ..Default::default()
    };
    // The first spec runs gemv_m0e4, gemv_m0e4_tokens and gemm_m0e4; the GLU case glu and
    // glu_h.
    matmul_case(&h, &mut r, &matmul_specs()[0]);
    glu_case(&h, &mut r, 701, 3, 100, 0);
    assert_eq!(r.failures.len(), 5, "{:?}", r.failures);
}
