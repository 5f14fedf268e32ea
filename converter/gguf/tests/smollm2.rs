//! SmolLM2-135M (fetched by `fixtures/fetch.sh ci`): imported, converted with the default
//! settings, and every tensor of the deployable model round-trips — the dequantized values equal
//! the quantizer's on the same input — with the parameter count of the real model.

use std::io::Write as _;

use tlite_converter::checkpoint::Checkpoint;
use tlite_converter::deploy::{ConvertOptions, convert};
use tlite_converter::events;
use tlite_gguf::fixtures;
use tlite_model::deploy::{DeployedModel, Storage};
use tlite_quantizer::{M0E4Matrix, QuantOptions};

const NAME: &str = "smollm2-135m-instruct";
const PARAMETERS: u64 = 134_515_008;

#[test]
fn smollm2_converts_and_every_tensor_round_trips() {
    let Some(dir) = fixtures::imported_or_skip(NAME, "smollm2 round trip").unwrap() else {
        return;
    };
    let ck = Checkpoint::open_dir(&dir).unwrap();
    let expected = ck.expected_tensors().unwrap();
    assert_eq!(
        expected.iter().map(|t| t.numel() as u64).sum::<u64>(),
        PARAMETERS
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("m0e4");
    let opts = ConvertOptions::default();
    let report = convert(&ck, &out, &opts, &mut events::ignore).unwrap();
    assert_eq!(report.parameters, PARAMETERS);
    let m = DeployedModel::open(&out).unwrap();
    assert_eq!(m.parameters(), PARAMETERS);
    assert_eq!(m.manifest.config.num_layers, 30);
    for t in &expected {
        let src = ck.tensor_f32(&t.name).unwrap();
        let layout = m.layout(&t.name).unwrap();
        if layout.storage == Storage::M0E4 {
            let q = M0E4Matrix::quantize(
                &src,
                t.shape[0],
                t.shape[1],
                &QuantOptions::new(opts.group, opts.method),
            )
            .unwrap();
            assert_eq!(m.m0e4(&t.name).unwrap(), q, "{}", t.name);
        } else {
            assert_eq!(m.tensor_f32(&t.name).unwrap(), src, "{}", t.name);
        }
    }
    let _ = writeln!(
        std::io::stderr(),
        "{NAME}: {} tensors round-trip, {:.3} bits per weight, converted in {:.1} s",
        expected.len(),
        report.bits_per_weight,
        report.seconds
    );
}
