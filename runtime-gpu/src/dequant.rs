//! M0E4 dequantization on the GPU: the first real kernel, checked bit for bit against the
//! quantizer's CPU decoder.

use tlite_quantizer::M0E4Matrix;
use wgpu::util::DeviceExt;

use crate::kernels::Kernel;
use crate::kernels::params::binding::dequant as binding;
use crate::{Gpu, GpuError, Result};

/// The uniform of `dequant.wgsl`.
pub use crate::kernels::params::DequantParams;

const WORKGROUP: u32 = crate::kernels::params::DEQUANT_WG;

/// f16 bits, two per `u32` (low half first), padded to whole words.
pub fn halves_to_words(h: &[u16]) -> Vec<u32> {
    h.chunks(2)
        .map(|c| u32::from(c[0]) | (u32::from(*c.get(1).unwrap_or(&0)) << 16))
        .collect()
}

/// An M0E4 matrix's group parameters as the runtime's kernels read them: each group's scale
/// (low half) and bias (high half) in one word.
pub fn group_words(scales: &[u16], biases: &[u16]) -> Vec<u32> {
    (scales.iter().zip(biases))
        .map(|(&s, &b)| u32::from(s) | (u32::from(b) << 16))
        .collect()
}

/// Splits `workgroups` into an (x, y) grid within the device's per-dimension limit.
pub fn dispatch_grid(workgroups: u32, max_per_dim: u32) -> (u32, u32) {
    if workgroups <= max_per_dim {
        (workgroups.max(1), 1)
    } else {
        (max_per_dim, workgroups.div_ceil(max_per_dim))
    }
}

fn u32_of(what: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| GpuError::BindingTooLarge {
        what,
        needed: v as u64,
        limit: u64::from(u32::MAX),
    })
}

/// Dequantizes `m` on the GPU to row-major f32.
pub fn dequantize(gpu: &Gpu, m: &M0E4Matrix) -> Result<Vec<f32>> {
    let out_bytes = (m.rows * m.cols * 4) as u64;
    let limit = gpu.limits.max_storage_buffer_binding_size;
    for (what, bytes) in [
        ("dequantized output", out_bytes),
        ("packed codes", (m.packed.len() * 4) as u64),
    ] {
        if bytes > limit {
            return Err(GpuError::BindingTooLarge {
                what,
                needed: bytes,
                limit,
            });
        }
    }
    let words = u32_of("packed words", m.packed.len())?;
    let (gx, gy) = dispatch_grid(
        words.div_ceil(WORKGROUP),
        gpu.limits.max_compute_workgroups_per_dimension,
    );
    let params = DequantParams {
        rows: u32_of("rows", m.rows)?,
        cols: u32_of("cols", m.cols)?,
        group: u32_of("group", m.group)?,
        words_per_row: u32_of("words", M0E4Matrix::words_per_row(m.cols))?,
        groups_per_row: u32_of("groups", M0E4Matrix::groups_per_row(m.cols, m.group))?,
        grid_width: gx * WORKGROUP,
        _pad0: 0,
        _pad1: 0,
    };
    let dev = &gpu.device;
    let scope = dev.push_error_scope(wgpu::ErrorFilter::Validation);
    let storage = |label, contents: &[u8]| {
        dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents,
            usage: wgpu::BufferUsages::STORAGE,
        })
    };
    let uniform = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some("dequant params"),
        contents: bytemuck::bytes_of(&params),
        usage: wgpu::BufferUsages::UNIFORM,
    });
    let packed = storage("packed", bytemuck::cast_slice(&m.packed));
    let scales = storage("scales", bytemuck::cast_slice(&halves_to_words(&m.scales)));
    let biases = storage("biases", bytemuck::cast_slice(&halves_to_words(&m.biases)));
    let out = dev.create_buffer(&wgpu::BufferDescriptor {
        label: Some("dequantized"),
        size: out_bytes.max(4),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("dequant.wgsl"),
        source: wgpu::ShaderSource::Wgsl(Kernel::Dequant.source().into()),
    });
    let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("dequant"),
        layout: None,
        module: &module,
        entry_point: Some("main"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("dequant"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            entry(binding::PARAMS, &uniform),
            entry(binding::PACKED, &packed),
            entry(binding::SCALES, &scales),
            entry(binding::BIASES, &biases),
            entry(binding::OUT, &out),
        ],
    });
    let mut enc = dev.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(gx, gy, 1);
    }
    let result = read_back(gpu, enc, &out, out_bytes)?;
    if let Some(e) = pollster::block_on(scope.pop()) {
        return Err(GpuError::Device(e.to_string()));
    }
    Ok(bytemuck::cast_slice(&result).to_vec())
}

fn entry(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    wgpu::BindGroupEntry {
        binding,
        resource: buffer.as_entire_binding(),
    }
}

/// Copies `bytes` of `src` to a mappable buffer after the work in `enc`, submits, waits and
/// returns the bytes.
pub fn read_back(
    gpu: &Gpu,
    mut enc: wgpu::CommandEncoder,
    src: &wgpu::Buffer,
    bytes: u64,
) -> Result<Vec<u8>> {
    let staging = gpu.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback"),
        size: bytes.max(4),
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    enc.copy_buffer_to_buffer(src, 0, &staging, 0, bytes);
    gpu.queue.submit([enc.finish()]);
    crate::readback::map_read(gpu, &staging, bytes)
}
