//! Reading GPU buffers back: the one place that maps a buffer, or waits for a submission,
//! after the queue's work.

use crate::{Gpu, GpuError, Result};

/// Waits for the submitted work, maps the first `bytes` of the MAP_READ buffer `buf`, copies
/// them out and unmaps it again.
pub fn map_read(gpu: &Gpu, buf: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
    let err = |e: &dyn std::fmt::Display| GpuError::Readback(e.to_string());
    // `Buffer::slice` panics on an empty or out-of-range slice.
    if bytes == 0 {
        return Ok(Vec::new());
    }
    if bytes > buf.size() {
        return Err(GpuError::Readback(format!(
            "{bytes} bytes asked of a {}-byte buffer",
            buf.size()
        )));
    }
    let slice = buf.slice(..bytes);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    gpu.poll(wgpu::PollType::wait_indefinitely())?;
    rx.recv().map_err(|e| err(&e))?.map_err(|e| err(&e))?;
    let out = slice.get_mapped_range().map_err(|e| err(&e))?.to_vec();
    buf.unmap();
    Ok(out)
}

/// Blocks until the submission `index` has completed on the GPU.
pub fn wait_for(gpu: &Gpu, index: wgpu::SubmissionIndex) -> Result<()> {
    gpu.poll(wgpu::PollType::Wait {
        submission_index: Some(index),
        timeout: None,
    })
}

/// [`map_read`] as little-endian f32 values.
pub fn map_read_f32(gpu: &Gpu, buf: &wgpu::Buffer, bytes: u64) -> Result<Vec<f32>> {
    Ok(map_read(gpu, buf, bytes)?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}
