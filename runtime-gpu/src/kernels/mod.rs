//! WGSL kernels: one file per family on disk, each prefixed with a prelude generated from the
//! quantizer's constants (so the CPU and GPU decoders cannot drift). Set `TLITE_DUMP_WGSL=DIR`
//! to write every assembled shader to `DIR` for reading.

use tlite_quantizer::format::{PACKED_PER_WORD, PAIR_MASK, PAIR_ONE, PAIR_SHIFTS};

/// The kernel families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// M0E4 → f32 dequantization of a packed matrix.
    Dequant,
}

impl Kernel {
    pub const ALL: [Kernel; 1] = [Kernel::Dequant];

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Dequant => "dequant",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Kernel::Dequant => include_str!("dequant.wgsl"),
        }
    }

    /// The complete WGSL of this kernel: the M0E4 prelude followed by its file.
    pub fn source(self) -> String {
        let src = format!("{}\n{}", m0e4_prelude(), self.file());
        if let Some(dir) = std::env::var_os("TLITE_DUMP_WGSL") {
            let path = std::path::Path::new(&dir).join(format!("{}.wgsl", self.name()));
            let _ = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(path, &src));
        }
        src
    }
}

/// WGSL constants and the pair decoder of M0E4, generated from `tlite_quantizer::format`.
pub fn m0e4_prelude() -> String {
    let shift = |k: usize| {
        let s = PAIR_SHIFTS[k];
        if s >= 0 {
            format!("(w << {s}u)")
        } else {
            format!("(w >> {}u)", -s)
        }
    };
    format!(
        "// ---- M0E4 prelude, generated from tlite_quantizer::format ----\n\
         const M0E4_PER_WORD: u32 = {PACKED_PER_WORD}u;\n\
         const M0E4_PAIR_MASK: u32 = 0x{PAIR_MASK:08x}u;\n\
         const M0E4_PAIR_ONE: u32 = 0x{PAIR_ONE:08x}u;\n\
         // The values 1 + q/16 of codes (k, k + 4) of word `w`, k in 0..4: one shift, one AND, one OR.\n\
         fn m0e4_pair(w: u32, k: u32) -> vec2<f32> {{\n\
         \x20   var p: u32;\n\
         \x20   switch k {{\n\
         \x20       case 0u: {{ p = {}; }}\n\
         \x20       case 1u: {{ p = {}; }}\n\
         \x20       case 2u: {{ p = {}; }}\n\
         \x20       default: {{ p = {}; }}\n\
         \x20   }}\n\
         \x20   return unpack2x16float((p & M0E4_PAIR_MASK) | M0E4_PAIR_ONE);\n\
         }}\n\
         // ---- end of prelude ----\n",
        shift(0),
        shift(1),
        shift(2),
        shift(3)
    )
}
