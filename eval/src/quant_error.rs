//! Per-tensor quantization error of M0E4 and the baselines, and a summary per scheme.
//! Bits per weight are those of each tensor's shape ([`matrix_bits`]: a row's short last block
//! pays for a whole one); the field's formats (MXFP4, NVFP4, NF4, IQ4_NL, Q4_K) quantize in
//! their own blocks whatever the group.
//!
//! With calibration Gram matrices (`H = XᵀX` of each matrix's input) the report also holds the
//! relative *output* error `‖X(W − Ŵ)ᵀ‖² / ‖XWᵀ‖²` of every column, and GPTQ columns
//! (`SCHEME+gptq`). Judge GPTQ by the output error: it moves rounding error onto the directions
//! the inputs do not excite, so its plain weight MSE goes *up* while the output error goes down.

use serde::Serialize;
use tlite_quantizer::gptq::{self, Prepared};
use tlite_quantizer::{ErrorStats, Scheme, SchemeKind, fake_quantize, matrix_bits};

/// One weight matrix to measure.
pub struct WeightMatrix<'a> {
    pub name: &'a str,
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
}

/// The error of every scheme on one tensor.
#[derive(Clone, Debug, Serialize)]
pub struct TensorErrors {
    pub name: String,
    pub shape: [usize; 2],
    /// In the order of the report's schemes.
    pub stats: Vec<ErrorStats>,
    /// `‖X(W − Ŵ)ᵀ‖² / ‖XWᵀ‖²` per scheme, when the tensor's input was calibrated with Gram
    /// matrices (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_error: Option<Vec<f64>>,
}

/// A matrix's calibration inputs: `H = XᵀX` (`cols × cols`) and its GPTQ factorization.
pub struct Hessian<'a> {
    pub h: &'a [f64],
    pub prepared: &'a Prepared,
}

/// A whole report.
#[derive(Clone, Debug, Serialize)]
pub struct QuantErrorReport {
    pub group: usize,
    pub schemes: Vec<String>,
    /// The block each column quantized in: `group`, or the format's own block.
    pub blocks: Vec<usize>,
    pub tensors: Vec<TensorErrors>,
    /// All tensors together, per scheme.
    pub summary: Vec<ErrorStats>,
    /// Mean over the tensors with Gram matrices of their relative output error, per scheme
    /// (absent when no tensor had one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_error: Option<Vec<f64>>,
    /// Σ relative output error and the number of tensors, per scheme.
    #[serde(skip)]
    out_sums: Vec<(f64, usize)>,
}

impl QuantErrorReport {
    pub fn new(group: usize, schemes: &[SchemeKind]) -> Self {
        Self::with_gptq(group, schemes, &[])
    }

    /// Columns `schemes` rounded to nearest, then `gptq` quantized with GPTQ (`NAME+gptq`).
    pub fn with_gptq(group: usize, schemes: &[SchemeKind], gptq: &[SchemeKind]) -> Self {
        let n = schemes.len() + gptq.len();
        QuantErrorReport {
            group,
            schemes: schemes
                .iter()
                .map(|s| s.name())
                .chain(gptq.iter().map(|s| format!("{}+gptq", s.name())))
                .collect(),
            blocks: schemes
                .iter()
                .chain(gptq)
                .map(|s| s.block_size(group))
                .collect(),
            tensors: Vec::new(),
            summary: vec![ErrorStats::default(); n],
            output_error: None,
            out_sums: vec![(0.0, 0); n],
        }
    }

    /// Measures one matrix under every scheme and adds it to the report.
    pub fn add(
        &mut self,
        schemes: &[SchemeKind],
        w: &WeightMatrix,
        importance: Option<&[f32]>,
    ) -> tlite_quantizer::Result<()> {
        self.add_with_hessian(schemes, &[], w, importance, None)
    }

    /// As [`Self::add`], with the GPTQ columns of [`Self::with_gptq`] (rounded to nearest like
    /// the others when the tensor has no `hessian`) and the output error where it has one.
    pub fn add_with_hessian(
        &mut self,
        schemes: &[SchemeKind],
        gptq: &[SchemeKind],
        w: &WeightMatrix,
        importance: Option<&[f32]>,
        hessian: Option<&Hessian>,
    ) -> tlite_quantizer::Result<()> {
        let mut stats = Vec::with_capacity(schemes.len() + gptq.len());
        let mut out_err = Vec::with_capacity(schemes.len() + gptq.len());
        let columns = schemes.iter().map(|s| (s, false));
        for (i, (s, use_gptq)) in columns.chain(gptq.iter().map(|s| (s, true))).enumerate() {
            let recon = match hessian {
                Some(hs) if use_gptq => {
                    gptq::quantize(s, w.data, w.rows, w.cols, self.group, hs.prepared)?
                }
                _ => fake_quantize(s, w.data, w.rows, w.cols, self.group, importance)?,
            };
            if let Some(hs) = hessian {
                let (e, sig) = gptq::output_error(w.data, &recon, w.rows, w.cols, hs.h)?;
                let rel = if sig > 0.0 { e / sig } else { 0.0 };
                self.out_sums[i].0 += rel;
                self.out_sums[i].1 += 1;
                out_err.push(rel);
            }
            let bpw = matrix_bits(s, w.rows, w.cols, self.group) / (w.rows * w.cols).max(1) as f64;
            let st = ErrorStats::compute(w.data, &recon, w.cols, importance, bpw);
            self.summary[i] = self.summary[i].merge(&st);
            stats.push(st);
        }
        self.tensors.push(TensorErrors {
            name: w.name.to_owned(),
            shape: [w.rows, w.cols],
            stats,
            output_error: hessian.is_some().then_some(out_err),
        });
        if hessian.is_some() {
            let mean = |&(s, n): &(f64, usize)| if n > 0 { s / n as f64 } else { f64::NAN };
            self.output_error = Some(self.out_sums.iter().map(mean).collect());
        }
        Ok(())
    }

    /// A human table: one row per tensor with SQNR per scheme, then a summary block.
    pub fn to_table(&self) -> String {
        let mut s = format!("{:<48} {:>13}", "tensor (SQNR dB)", "shape");
        for n in &self.schemes {
            s += &format!(" {n:>13}");
        }
        s.push('\n');
        for t in &self.tensors {
            let name = if t.name.len() > 48 {
                &t.name[t.name.len() - 48..]
            } else {
                &t.name
            };
            s += &format!(
                "{:<48} {:>13}",
                name,
                format!("{}x{}", t.shape[0], t.shape[1])
            );
            for st in &t.stats {
                s += &format!(" {:>13.2}", st.sqnr_db);
            }
            s.push('\n');
        }
        let w = self.schemes.iter().map(String::len).fold(14, usize::max);
        s += &format!(
            "\nsummary over {} tensors, group {}\n{:<w$} {:>5} {:>7} {:>12} {:>12} {:>9} {:>10}\n",
            self.tensors.len(),
            self.group,
            "scheme",
            "block",
            "bpw",
            "mse",
            "rmse",
            "sqnr_dB",
            "max|err|"
        );
        let out = self.output_error.as_deref();
        if out.is_some() {
            s.pop();
            s += &format!(" {:>12}\n", "out_err");
        }
        for (i, (n, st)) in self.schemes.iter().zip(&self.summary).enumerate() {
            s += &format!(
                "{:<w$} {:>5} {:>7.3} {:>12.4e} {:>12.4e} {:>9.2} {:>10.3e}",
                n, self.blocks[i], st.bits_per_weight, st.mse, st.rmse, st.sqnr_db, st.max_abs
            );
            if let Some(o) = out {
                s += &format!(" {:>12.4e}", o[i]);
            }
            s.push('\n');
        }
        if out.is_some() {
            s += "out_err: mean over the calibrated tensors of ‖X(W−Ŵ)ᵀ‖²/‖XWᵀ‖² (GPTQ lowers it \
                  while raising the weight MSE)\n";
        }
        s
    }
}
