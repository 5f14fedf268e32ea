//! Every input the `gguf` fuzz target ever crashed on (`fuzz/regressions/gguf/`, committed as
//! found) is imported again: each must end in `Ok` or an error naming the file — never a panic —
//! and leave no temporary folder behind.

use std::path::PathBuf;

use tlite_gguf::{ImportOptions, import_gguf};

#[test]
fn fuzz_crashes_stay_fixed() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/gguf");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    assert!(
        !inputs.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    for input in inputs {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let r = import_gguf(&input, &out, &ImportOptions::default(), &mut |_| {});
        if let Err(e) = &r {
            assert!(
                e.to_string().contains(input.to_str().unwrap()),
                "{}: {e}",
                input.display()
            );
        }
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().contains("tlite-"))
            .collect();
        assert!(left.is_empty(), "{}: left {left:?}", input.display());
        println!(
            "{}: {}",
            input.display(),
            r.map_or_else(|e| e.to_string(), |_| "ok".into())
        );
    }
}
