//! Reading GPU buffers back: the one place that maps a buffer, or waits for a submission,
//! after the queue's work.

use crate::{Gpu, GpuError, Result};

/// Waits for the submitted work, maps the first `bytes` of the MAP_READ buffer `buf`, copies
/// them out and unmaps it again.
pub fn map_read(gpu: &Gpu, buf: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
    // `Buffer::slice` panics on an empty slice.
    if bytes == 0 {
        return Ok(Vec::new());
    }
    PendingRead::start(buf, bytes)?.finish(gpu, wgpu::PollType::wait_indefinitely())
}

/// A read of the first `bytes` of a MAP_READ buffer, asked for after the submission that fills
/// it and collected later by [`Self::finish`], so that several can be in flight.
pub struct PendingRead<'a> {
    buf: &'a wgpu::Buffer,
    bytes: u64,
    mapped: std::sync::mpsc::Receiver<std::result::Result<(), wgpu::BufferAsyncError>>,
}

impl<'a> PendingRead<'a> {
    /// Asks for the mapping of `buf`'s first `bytes` (1 to its size).
    pub fn start(buf: &'a wgpu::Buffer, bytes: u64) -> Result<Self> {
        // `Buffer::slice` panics on an empty or out-of-range slice.
        if bytes == 0 || bytes > buf.size() {
            return Err(GpuError::Readback(format!(
                "{bytes} bytes asked of a {}-byte buffer",
                buf.size()
            )));
        }
        let (tx, mapped) = std::sync::mpsc::channel();
        buf.slice(..bytes).map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        Ok(PendingRead { buf, bytes, mapped })
    }

    /// Polls the device with `poll` (which must cover the filling submission), then copies the
    /// bytes out and unmaps the buffer.
    pub fn finish(self, gpu: &Gpu, poll: wgpu::PollType) -> Result<Vec<u8>> {
        let err = |e: &dyn std::fmt::Display| GpuError::Readback(e.to_string());
        gpu.poll(poll)?;
        self.mapped
            .recv()
            .map_err(|e| err(&e))?
            .map_err(|e| err(&e))?;
        let slice = self.buf.slice(..self.bytes);
        let out = slice.get_mapped_range().map_err(|e| err(&e))?.to_vec();
        self.buf.unmap();
        Ok(out)
    }
}

/// Blocks until the submission `index` has completed on the GPU.
pub fn wait_for(gpu: &Gpu, index: wgpu::SubmissionIndex) -> Result<()> {
    gpu.poll(until(index))
}

/// Polling that blocks until the submission `index` has completed.
pub fn until(index: wgpu::SubmissionIndex) -> wgpu::PollType {
    wgpu::PollType::Wait {
        submission_index: Some(index),
        timeout: None,
    }
}

/// [`map_read`] as little-endian f32 values.
pub fn map_read_f32(gpu: &Gpu, buf: &wgpu::Buffer, bytes: u64) -> Result<Vec<f32>> {
    Ok(map_read(gpu, buf, bytes)?
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}
