//! The field's 4-bit formats (MXFP4, NVFP4, NF4, IQ4_NL, Q4_K) in the sweep's configurations
//! and the quant-error report: their own blocks, honest bits per weight, names that parse.

use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_eval::quant_error::{QuantErrorReport, WeightMatrix};
use tlite_eval::sweep::{SweepConfig, bits_per_weight};
use tlite_model::arch::Family;
use tlite_quantizer::rng::Rng;
use tlite_quantizer::{Method, Scheme, SchemeKind, matrix_bits};

#[test]
fn sweep_configs_of_field_formats_take_their_own_block() {
    let c = SweepConfig::parse("q4_k").unwrap();
    assert_eq!((c.scheme, c.group), (SchemeKind::Q4K, 256));
    assert_eq!(c.label(), "q4_k@256");
    assert_eq!(SweepConfig::parse(&c.label()).unwrap(), c);
    let c = SweepConfig::parse("mxfp4-search+imp").unwrap();
    assert_eq!(c.scheme, SchemeKind::Mxfp4(Method::Search));
    assert!(c.importance && c.group == 32);
    assert_eq!(SweepConfig::parse("nvfp4@16").unwrap().group, 16);
    assert_eq!(
        SweepConfig::parse("iq4_nl+f16emb").unwrap().label(),
        "iq4_nl+f16emb@32"
    );
    let e = SweepConfig::parse("nf4@32").unwrap_err();
    assert!(e.contains("own block of 64"), "{e}");
    // free-group schemes still need their group
    let e = SweepConfig::parse("m0e4-search").unwrap_err();
    assert!(e.contains("@GROUP"), "{e}");
    assert!(SweepConfig::parse("mxfp4@abc").is_err());
    let e = SweepConfig::parse("bf4@32").unwrap_err();
    assert!(e.contains("q4_k") && e.contains("m0e4-search"), "{e}");

    let plain = SweepConfig::field_formats(false);
    assert_eq!(plain.len(), SchemeKind::FIELD.len());
    for c in &plain {
        assert_eq!(c.group, c.scheme.block_size(0), "{}", c.label());
        assert!(!c.importance);
        assert_eq!(SweepConfig::parse(&c.label()).as_ref(), Ok(c));
    }
    let with_imp: Vec<String> = SweepConfig::field_formats(true)
        .iter()
        .filter(|c| c.importance)
        .map(|c| c.label())
        .collect();
    assert_eq!(
        with_imp,
        [
            "mxfp4-search+imp@32",
            "nvfp4-search+imp@16",
            "nf4-search+imp@64",
            "iq4_nl+imp@32",
            "q4_k+imp@256"
        ]
    );
    // the default sweep is unchanged: no field format in it
    assert!(
        SweepConfig::defaults(true)
            .iter()
            .all(|c| c.scheme.native_format().is_none())
    );
}

#[test]
fn sweep_bits_count_each_formats_blocks_on_the_real_shapes() {
    let dir = tempfile::tempdir().unwrap();
    write_checkpoint(&SynthSpec::tiny(Family::Llama), &dir.path().join("ck")).unwrap();
    let ck = Checkpoint::open_dir(&dir.path().join("ck")).unwrap();
    let shapes: Vec<(usize, usize)> = ck
        .arch()
        .expected_tensors(&ck.config)
        .into_iter()
        .filter(|t| t.role.quantizable() && t.shape.len() == 2)
        .map(|t| (t.shape[0], t.shape[1]))
        .collect();
    for c in SweepConfig::field_formats(false) {
        let (bpw, all, n) = bits_per_weight(&ck, &c);
        let numel: usize = shapes.iter().map(|(r, c)| r * c).sum();
        let bits: f64 = shapes
            .iter()
            .map(|&(r, k)| matrix_bits(&c.scheme, r, k, c.group))
            .sum();
        assert_eq!(n as usize, numel);
        assert!((bpw - bits / numel as f64).abs() < 1e-12, "{}", c.label());
        assert_eq!(bpw, all);
        assert!(bpw >= c.scheme.bits_per_weight(c.group), "{}", c.label());
    }
    // the tiny model's 64 columns are a quarter of a Q4_K super-block, each paying for a whole
    let q4k = SweepConfig::parse("q4_k").unwrap();
    assert!(bits_per_weight(&ck, &q4k).0 > 4.5);
}

#[test]
fn quant_error_reports_field_formats_with_their_blocks_and_bits() {
    let (rows, cols) = (8, 96);
    let data = Rng::new(3).student_t_vec(rows * cols, 3, 0.02);
    let schemes = SchemeKind::ALL.to_vec();
    let mut report = QuantErrorReport::new(64, &schemes);
    report
        .add(
            &schemes,
            &WeightMatrix {
                name: "w",
                data: &data,
                rows,
                cols,
            },
            None,
        )
        .unwrap();
    for ((s, &block), st) in schemes.iter().zip(&report.blocks).zip(&report.summary) {
        assert_eq!(block, s.block_size(64), "{}", s.name());
        let want = matrix_bits(s, rows, cols, 64) / (rows * cols) as f64;
        assert_eq!(st.bits_per_weight, want, "{}", s.name());
        assert!(st.mse > 0.0 && st.sqnr_db > 5.0, "{}: {st:?}", s.name());
    }
    // 96 columns: q4_k pays a whole super-block per row, mxfp4 exactly 3 blocks
    let bpw = |name: &str| {
        let i = report.schemes.iter().position(|n| n == name).unwrap();
        report.summary[i].bits_per_weight
    };
    assert_eq!(bpw("mxfp4"), 4.25);
    assert_eq!(bpw("q4_k"), 4.0 + 128.0 / 96.0);
    assert_eq!(bpw("nf4"), 4.0 + 64.0 / 96.0);
    let table = report.to_table();
    assert!(
        table.contains("q4_k") && table.contains("  256 "),
        "{table}"
    );
}
