//! Hostile GGUF files: each is refused with a one-line error naming the problem — never a
//! panic, a hang, an unbounded allocation or a read outside the tensor data — and leaves no
//! output or temporary folder behind.
//!
//! Files are written byte by byte by [`Gguf`], a tiny GGUF writer whose every field can be
//! corrupted; [`Gguf::tiny_llama`] is a valid one-layer `llama` model the cases start from.

use std::path::Path;

use tlite_converter::{ConvertError, events};
use tlite_gguf::{ImportOptions, import_gguf};

use tlite_gguf::writer::{GGML_F32, GGML_Q4_0, Gguf, Tensor, V, s, ty};

/// Writes `bytes` as `<dir>/model.gguf`, imports it into `<dir>/out`, and returns the error
/// message; checks that nothing was left beside the source.
fn import_err(bytes: &[u8]) -> (ConvertError, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("model.gguf");
    std::fs::write(&src, bytes).expect("write gguf");
    let out = dir.path().join("out");
    let r = import_gguf(&src, &out, &ImportOptions::default(), &mut events::ignore);
    let e = r.expect_err("a hostile file must be refused");
    let msg = e.to_string();
    assert!(!out.exists(), "output written despite: {msg}");
    assert_eq!(leftovers(dir.path()), ["model.gguf"], "after: {msg}");
    assert!(!msg.contains('\n'), "a one-line error: {msg}");
    eprintln!("refused: {msg}");
    (e, msg)
}

/// The names in `dir`, sorted.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Imports and expects a `ConvertError::Gguf` whose message contains every one of `needles`.
#[track_caller]
fn refused(g: &Gguf, needles: &[&str]) -> String {
    refused_bytes(&g.bytes(), needles)
}

#[track_caller]
fn refused_bytes(bytes: &[u8], needles: &[&str]) -> String {
    let (e, msg) = import_err(bytes);
    assert!(
        matches!(e, ConvertError::Gguf { .. }),
        "expected a Gguf error, got {e:?}"
    );
    assert!(msg.contains("model.gguf"), "names the file: {msg}");
    for n in needles {
        assert!(msg.contains(n), "`{n}` not in: {msg}");
    }
    msg
}

#[test]
fn the_builder_writes_an_importable_file() {
    for (version, align) in [(3, 32), (2, 64), (1, 32)] {
        let mut g = Gguf::tiny_llama();
        g.version = version;
        g.align = align;
        if align != 32 {
            g.set("general.alignment", V::U32(align as u32));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("model.gguf");
        std::fs::write(&src, g.bytes()).expect("write");
        let out = dir.path().join("out");
        let summary = import_gguf(&src, &out, &ImportOptions::default(), &mut events::ignore)
            .unwrap_or_else(|e| panic!("v{version} align {align}: {e}"));
        assert_eq!(summary.tensors, 12);
        assert_eq!(summary.vocab_size, 4);
    }
}

#[test]
fn alignment_zero() {
    let mut g = Gguf::tiny_llama();
    g.set("general.alignment", V::U32(0));
    refused(&g, &["general.alignment", "is 0", "power of two"]);
}

#[test]
fn alignment_not_a_power_of_two() {
    let mut g = Gguf::tiny_llama();
    g.set("general.alignment", V::U32(3));
    refused(&g, &["general.alignment", "is 3", "power of two"]);
}

#[test]
fn alignment_of_the_wrong_type() {
    let mut g = Gguf::tiny_llama();
    g.set("general.alignment", s("32"));
    refused(&g, &["general.alignment", "must be a u32", "String"]);
    g.set("general.alignment", V::I32(32));
    refused(&g, &["general.alignment", "must be a u32", "I32"]);
}

#[test]
fn tensor_offset_near_2_pow_64() {
    let mut g = Gguf::tiny_llama();
    // Aligned, so only the range check can catch it; offset + size wraps around.
    g.tensor("blk.0.attn_q.weight").offset = Some(u64::MAX - 31);
    refused(&g, &["blk.0.attn_q.weight", "runs past the end"]);
}

#[test]
fn tensor_offset_past_the_end() {
    let mut g = Gguf::tiny_llama();
    g.tensor("output_norm.weight").offset = Some(1 << 20);
    refused(&g, &["output_norm.weight", "1048576", "runs past the end"]);
}

#[test]
fn misaligned_tensor_offset() {
    let mut g = Gguf::tiny_llama();
    g.tensor("output_norm.weight").offset = Some(4);
    refused(
        &g,
        &["output_norm.weight", "not a multiple of the alignment 32"],
    );
}

#[test]
fn overlapping_tensors() {
    let mut g = Gguf::tiny_llama();
    g.tensor("blk.0.attn_v.weight").offset = Some(0);
    refused(&g, &["overlap", "blk.0.attn_v.weight"]);
}

#[test]
fn tensor_of_2_pow_40_elements_in_a_tiny_file() {
    let mut g = Gguf {
        version: 3,
        kv: Vec::new(),
        tensors: Vec::new(),
        align: 32,
    };
    g.set("general.architecture", s("llama"));
    g.tensors.push(Tensor {
        name: "token_embd.weight".into(),
        dims: vec![1 << 20, 1 << 20],
        ggml: GGML_F32,
        data: vec![0; 32],
        offset: None,
    });
    refused(
        &g,
        &[
            "token_embd.weight",
            "4398046511104 bytes",
            "runs past the end",
        ],
    );
}

#[test]
fn dimension_product_overflows() {
    let mut g = Gguf::tiny_llama();
    g.tensor("blk.0.attn_norm.weight").dims = vec![1 << 32, 1 << 32, 1 << 32];
    refused(&g, &["blk.0.attn_norm.weight", "overflows"]);
    // Each dimension is at most i64::MAX, as in llama.cpp.
    g.tensor("blk.0.attn_norm.weight").dims = vec![u64::MAX];
    refused(
        &g,
        &[
            "blk.0.attn_norm.weight",
            "dimension of 18446744073709551615",
        ],
    );
}

#[test]
fn zero_or_too_many_dimensions() {
    let mut g = Gguf::tiny_llama();
    g.tensor("output_norm.weight").dims = vec![1, 1, 1, 1, 8];
    refused(&g, &["output_norm.weight", "5 dimensions", "1 to 4"]);
    g.tensor("output_norm.weight").dims = vec![];
    refused(&g, &["output_norm.weight", "0 dimensions"]);
    g.tensor("output_norm.weight").dims = vec![8, 0];
    refused(&g, &["output_norm.weight", "dimension of 0"]);
}

#[test]
fn rows_that_do_not_fill_blocks() {
    let mut g = Gguf::tiny_llama();
    // Q4_0 packs 32 values per block; these rows hold 8.
    let t = g.tensor("blk.0.attn_q.weight");
    t.ggml = GGML_Q4_0;
    t.data = vec![0; 18 * 8];
    refused(
        &g,
        &["blk.0.attn_q.weight", "do not divide into blocks of 32"],
    );
}

#[test]
fn string_length_past_the_end() {
    let mut g = Gguf::tiny_llama();
    // A string whose length prefix claims 2^40 bytes, at the end of the metadata.
    g.set(
        "general.name",
        V::Raw(ty::STRING, (1u64 << 40).to_le_bytes().to_vec()),
    );
    g.tensors.clear();
    refused(
        &g,
        &["general.name", "1099511627776 bytes needed", "file ends"],
    );
    // Same for a tensor name.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(u64::MAX.to_le_bytes());
    b.extend([0u8; 24]);
    refused_bytes(&b, &["the name of tensor 0", "file ends"]);
}

#[test]
fn huge_array_count() {
    let mut g = Gguf::tiny_llama();
    let mut raw = ty::U8.to_le_bytes().to_vec();
    raw.extend((1u64 << 62).to_le_bytes());
    g.set("general.tags", V::Raw(ty::ARRAY, raw));
    refused(
        &g,
        &[
            "general.tags",
            "4611686018427387904 elements",
            "at most 16777216",
        ],
    );
    // Under the cap but more than the file holds: refused before anything is allocated.
    let mut raw = ty::U32.to_le_bytes().to_vec();
    raw.extend((1u64 << 24).to_le_bytes());
    g.set("general.tags", V::Raw(ty::ARRAY, raw));
    refused(&g, &["general.tags", "16777216 elements", "file ends"]);
}

#[test]
fn huge_tensor_and_metadata_counts() {
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((1u64 << 60).to_le_bytes());
    b.extend((1u64 << 60).to_le_bytes());
    refused_bytes(&b, &["1152921504606846976 tensors", "more than the file"]);
}

#[test]
fn nested_arrays_too_deep() {
    let mut g = Gguf::tiny_llama();
    let inner = V::Arr(ty::U8, vec![]);
    g.set(
        "general.nested",
        V::Arr(ty::ARRAY, vec![V::Arr(ty::ARRAY, vec![inner])]),
    );
    refused(&g, &["general.nested", "nested more than 2 deep"]);
}

#[test]
fn duplicate_tensor_name() {
    let mut g = Gguf::tiny_llama();
    let copy = g.tensor("blk.0.ffn_up.weight").clone();
    g.tensors.push(copy);
    refused(&g, &["blk.0.ffn_up.weight", "listed twice"]);
}

#[test]
fn duplicate_metadata_key_and_bad_values() {
    let mut g = Gguf::tiny_llama();
    g.kv.push((b"llama.block_count".to_vec(), V::U32(1)));
    refused(&g, &["llama.block_count", "appears twice"]);

    let mut g = Gguf::tiny_llama();
    g.kv.push((vec![b'k', 0xff, 0xfe], V::U32(1)));
    refused(&g, &["not UTF-8"]);

    let mut g = Gguf::tiny_llama();
    g.set("general.flag", V::Raw(ty::BOOL, vec![2]));
    refused(&g, &["general.flag", "neither 0 nor 1"]);

    let mut g = Gguf::tiny_llama();
    g.set("general.what", V::Raw(77, vec![0; 8]));
    refused(&g, &["general.what", "unknown value type 77"]);

    let mut g = Gguf::tiny_llama();
    g.set("llama.attention.layer_norm_rms_epsilon", V::F32(f32::NAN));
    refused(&g, &["layer_norm_rms_epsilon", "not a finite number"]);
}

#[test]
fn bad_magic_version_and_truncation() {
    let good = Gguf::tiny_llama().bytes();
    let mut b = good.clone();
    b[0] = b'X';
    refused_bytes(&b, &["not a GGUF file"]);
    for version in [0u32, 4, 99] {
        let mut b = good.clone();
        b[4..8].copy_from_slice(&version.to_le_bytes());
        refused_bytes(&b, &[&format!("version {version} is not supported")]);
    }
    // Cut anywhere in the header: always an error, never a panic.
    for cut in [
        3,
        7,
        12,
        30,
        100,
        600,
        700,
        800,
        1000,
        1500,
        2500,
        usize::MAX,
    ] {
        let (e, _) = import_err(&good[..cut.min(good.len() - 1)]);
        assert!(matches!(e, ConvertError::Gguf { .. }), "cut {cut}: {e}");
    }
}

#[test]
fn token_types_longer_than_the_vocabulary() {
    let mut g = Gguf::tiny_llama();
    g.set(
        "tokenizer.ggml.token_type",
        V::Arr(ty::I32, [1, 1, 1, 3, 3, 3].map(V::I32).to_vec()),
    );
    let (e, msg) = import_err(&g.bytes());
    assert!(matches!(e, ConvertError::Tokenizer { .. }), "{e:?}");
    assert!(msg.contains("6 types for 4 tokens"), "{msg}");
}

#[test]
fn special_token_ids_outside_the_vocabulary() {
    let mut g = Gguf::tiny_llama();
    g.set("tokenizer.ggml.bos_token_id", V::U32(1000));
    refused(
        &g,
        &["special token id 1000 is outside the vocabulary of 4"],
    );

    // Ids the config does not hold are checked by the tokenizer.
    for key in [
        "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.unknown_token_id",
    ] {
        let mut g = Gguf::tiny_llama();
        g.set(key, V::U32(4));
        let (e, msg) = import_err(&g.bytes());
        assert!(matches!(e, ConvertError::Tokenizer { .. }), "{e:?}");
        assert!(msg.contains(&format!("`{key}` = 4 is outside")), "{msg}");
    }
}

#[test]
fn sentencepiece_vocabulary_too_long_to_merge() {
    let mut g = Gguf::tiny_llama();
    g.set("tokenizer.ggml.model", s("llama"));
    g.remove("tokenizer.ggml.merges");
    let long = "x".repeat(24_000);
    g.set(
        "tokenizer.ggml.tokens",
        V::Arr(ty::STRING, vec![s("a"), s("b"), s(&long), s("<s>")]),
    );
    g.set(
        "tokenizer.ggml.scores",
        V::Arr(ty::F32, [0.0, 0.0, 0.0, 0.0].map(V::F32).to_vec()),
    );
    let (e, msg) = import_err(&g.bytes());
    assert!(matches!(e, ConvertError::Tokenizer { .. }), "{e:?}");
    assert!(
        msg.contains("too long to rebuild SentencePiece merges"),
        "{msg}"
    );
}

#[test]
fn block_count_2_pow_31() {
    let mut g = Gguf::tiny_llama();
    g.set("llama.block_count", V::U32(1 << 31));
    refused(
        &g,
        &[
            "llama.block_count",
            "2147483648",
            "supported maximum of 4096",
        ],
    );
}

#[test]
fn zero_or_huge_hyperparameters() {
    for (key, v, needle) in [
        ("llama.attention.head_count", 0, "is 0"),
        ("llama.attention.head_count_kv", 0, "is 0"),
        ("llama.embedding_length", 0, "is 0"),
        ("llama.feed_forward_length", u32::MAX, "supported maximum"),
        ("llama.block_count", 0, "is 0"),
    ] {
        let mut g = Gguf::tiny_llama();
        g.set(key, V::U32(v));
        refused(&g, &[key, needle]);
    }
}

#[test]
fn more_layers_than_the_file_holds() {
    let mut g = Gguf::tiny_llama();
    g.set("llama.block_count", V::U32(2));
    refused(&g, &["2 layers need at least"]);
}

#[test]
fn missing_layer_tensor() {
    let mut g = Gguf::tiny_llama();
    g.remove_tensor("blk.0.ffn_down.weight");
    refused(&g, &["`blk.0.ffn_down.weight` is missing"]);
}

#[test]
fn tensor_of_the_wrong_shape() {
    let mut g = Gguf::tiny_llama();
    g.remove_tensor("blk.0.ffn_down.weight");
    g.f32_tensor("blk.0.ffn_down.weight", vec![8, 8]);
    refused(&g, &["blk.0.ffn_down.weight", "[8, 8]", "[8, 16]"]);
}

#[test]
fn tensor_of_a_layer_past_block_count() {
    let mut g = Gguf::tiny_llama();
    g.f32_tensor("blk.7.attn_norm.weight", vec![8]);
    refused(
        &g,
        &["blk.7.attn_norm.weight", "layer 7", "block_count` is 1"],
    );
    // A layer number written two ways cannot name one tensor twice.
    let mut g = Gguf::tiny_llama();
    g.f32_tensor("blk.00.attn_norm.weight", vec![8]);
    refused(&g, &["blk.00.attn_norm.weight", "not part of architecture"]);
}

#[test]
fn unknown_or_unsupported_ggml_type() {
    let mut g = Gguf::tiny_llama();
    g.tensor("blk.0.attn_v.weight").ggml = 99;
    refused(&g, &["blk.0.attn_v.weight", "unknown ggml type id 99"]);
    g.tensor("blk.0.attn_v.weight").ggml = 16;
    refused(&g, &["blk.0.attn_v.weight", "IQ2_XXS", "not supported"]);
}

#[test]
fn embedding_that_is_not_a_matrix() {
    let mut g = Gguf::tiny_llama();
    g.remove_tensor("token_embd.weight");
    g.f32_tensor("token_embd.weight", vec![32]);
    refused(
        &g,
        &["token_embd.weight", "[32]", "expected [vocab, hidden]"],
    );
}

#[test]
fn not_a_regular_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("model.gguf");
    std::fs::create_dir(&src).expect("mkdir");
    let out = dir.path().join("out");
    let e = import_gguf(&src, &out, &ImportOptions::default(), &mut events::ignore)
        .expect_err("a folder is not a GGUF file");
    assert!(e.to_string().contains("not a regular file"), "{e}");
    assert!(!out.exists());
}

/// Deterministic corruptions of a valid file — single bytes, runs of 0xff, truncations —
/// import or fail cleanly: no panic, and nothing left behind on failure.
#[test]
fn random_corruptions_never_panic() {
    let good = Gguf::tiny_llama().bytes();
    let seed = 0x9e37_79b9_7f4a_7c15u64;
    eprintln!("corruptions from xorshift seed {seed:#x}");
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("model.gguf");
    for case in 0..400 {
        let mut b = good.clone();
        let at = (next() % b.len() as u64) as usize;
        match case % 4 {
            0 => b[at] = next() as u8,
            1 => b[at] ^= 1 << (next() % 8),
            2 => b[at..(at + 8).min(good.len())].fill(0xff),
            _ => b.truncate(at),
        }
        std::fs::write(&src, &b).expect("write");
        let out = dir.path().join(format!("out{case}"));
        let r = std::panic::catch_unwind(|| {
            import_gguf(&src, &out, &ImportOptions::default(), &mut events::ignore)
        });
        match r {
            Err(_) => panic!("case {case}: panicked (byte {at})"),
            Ok(Ok(_)) => std::fs::remove_dir_all(&out).expect("clean"),
            Ok(Err(e)) => assert!(!out.exists(), "case {case}: output left after {e}"),
        }
        assert_eq!(leftovers(dir.path()), ["model.gguf"], "case {case}");
    }
}
