//! Per-tensor quantization error of M0E4 and the baselines, and a summary per scheme.

use serde::Serialize;
use tlite_quantizer::{ErrorStats, Scheme, SchemeKind, fake_quantize};

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
}

/// A whole report.
#[derive(Clone, Debug, Serialize)]
pub struct QuantErrorReport {
    pub group: usize,
    pub schemes: Vec<String>,
    pub tensors: Vec<TensorErrors>,
    /// All tensors together, per scheme.
    pub summary: Vec<ErrorStats>,
}

impl QuantErrorReport {
    pub fn new(group: usize, schemes: &[SchemeKind]) -> Self {
        QuantErrorReport {
            group,
            schemes: schemes.iter().map(|s| s.name()).collect(),
            tensors: Vec::new(),
            summary: vec![ErrorStats::default(); schemes.len()],
        }
    }

    /// Measures one matrix under every scheme and adds it to the report.
    pub fn add(
        &mut self,
        schemes: &[SchemeKind],
        w: &WeightMatrix,
        importance: Option<&[f32]>,
    ) -> tlite_quantizer::Result<()> {
        let mut stats = Vec::with_capacity(schemes.len());
        for (i, s) in schemes.iter().enumerate() {
            let recon = fake_quantize(s, w.data, w.rows, w.cols, self.group, importance)?;
            let st = ErrorStats::compute(
                w.data,
                &recon,
                w.cols,
                importance,
                s.bits_per_weight(self.group),
            );
            self.summary[i] = self.summary[i].merge(&st);
            stats.push(st);
        }
        self.tensors.push(TensorErrors {
            name: w.name.to_owned(),
            shape: [w.rows, w.cols],
            stats,
        });
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
        s += &format!(
            "\nsummary over {} tensors, group {}\n{:<14} {:>7} {:>12} {:>12} {:>9} {:>10}\n",
            self.tensors.len(),
            self.group,
            "scheme",
            "bpw",
            "mse",
            "rmse",
            "sqnr_dB",
            "max|err|"
        );
        for (n, st) in self.schemes.iter().zip(&self.summary) {
            s += &format!(
                "{:<14} {:>7.3} {:>12.4e} {:>12.4e} {:>9.2} {:>10.3e}\n",
                n, st.bits_per_weight, st.mse, st.rmse, st.sqnr_db, st.max_abs
            );
        }
        s
    }
}
