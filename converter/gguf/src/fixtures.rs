//! The real-model fixtures fetched by `fixtures/fetch.sh`: where they are, their imported
//! Hugging Face folders (made once, on first use, under the same cache), and the one rule for a
//! test whose fixture is missing ([`or_skip`]): a failure where the fixture must be there,
//! otherwise a printed `skipped:` line — never a silent pass.

use std::path::PathBuf;
use std::sync::Mutex;

use tlite_converter::{Result, events, io_err};

use crate::{ImportOptions, import_gguf};

/// The fixture cache: `$TLITE_CACHE`, else `.cache` at the workspace root.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("TLITE_CACHE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.cache"),
    }
}

/// The fetched GGUF of a fixture model (`smollm2-135m-instruct`, `gemma3-270m`, ...).
pub fn gguf_path(name: &str) -> PathBuf {
    cache_dir()
        .join("models")
        .join(name)
        .join(format!("{name}.gguf"))
}

/// The committed goldens (Hugging Face transformers results) of a fixture model:
/// `$TLITE_GOLDENS/<name>.json`, else `fixtures/goldens/` of the workspace.
pub fn golden_path(name: &str) -> PathBuf {
    let dir = match std::env::var_os("TLITE_GOLDENS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/goldens"),
    };
    dir.join(format!("{name}.json"))
}

static IMPORT: Mutex<()> = Mutex::new(());

/// The imported f32 Hugging Face folder of a fixture, importing it on first use; `None` when
/// the GGUF has not been fetched.
pub fn imported(name: &str) -> Result<Option<PathBuf>> {
    let gguf = gguf_path(name);
    if !gguf.is_file() {
        return Ok(None);
    }
    let _guard = IMPORT.lock().unwrap_or_else(|e| e.into_inner());
    let dir = cache_dir().join("hf").join(name);
    let stamp = dir.join(".imported");
    if !stamp.is_file() {
        import_gguf(
            &gguf,
            &dir,
            &ImportOptions {
                overwrite: true,
                ..Default::default()
            },
            &mut events::ignore,
        )?;
        std::fs::write(&stamp, "ok").map_err(io_err(&stamp))?;
    }
    Ok(Some(dir))
}

/// The models `fixtures/fetch.sh ci` fetches (what CI runs with).
pub const CI_MODELS: &[&str] = &["smollm2-135m-instruct"];

/// Whether a test must fail when the fixture model `name` is missing: when `CI` is set and CI
/// fetches it ([`CI_MODELS`]), or when `TLITE_ALL_MODELS` is set (every model was fetched).
pub fn required(name: &str) -> bool {
    let ci = std::env::var_os("CI").is_some() && CI_MODELS.contains(&name);
    ci || std::env::var_os("TLITE_ALL_MODELS").is_some()
}

/// `found`, or — the fixture model `name` missing — a panic when it is [`required`], else
/// `None` after printing `skipped: <test>: <name> is not fetched (...)` to stderr.
pub fn or_skip<T>(found: Option<T>, name: &str, test: &str) -> Option<T> {
    use std::io::Write as _;
    if found.is_some() {
        return found;
    }
    let path = gguf_path(name);
    assert!(
        !required(name),
        "{test}: fixture {name} is missing ({}): run fixtures/fetch.sh (required under CI, or \
         with TLITE_ALL_MODELS)",
        path.display()
    );
    let _ = writeln!(
        std::io::stderr(),
        "skipped: {test}: {name} is not fetched ({} missing; run fixtures/fetch.sh)",
        path.display()
    );
    None
}

/// The fetched GGUF of `name`, or `None` as [`or_skip`] says.
pub fn gguf_or_skip(name: &str, test: &str) -> Option<PathBuf> {
    let path = gguf_path(name);
    or_skip(path.is_file().then_some(path), name, test)
}

/// The imported folder of `name` ([`imported`]), or `None` as [`or_skip`] says.
pub fn imported_or_skip(name: &str, test: &str) -> Result<Option<PathBuf>> {
    Ok(or_skip(imported(name)?, name, test))
}

/// The Brown corpus fetched with the model `name` (`fixtures/fetch.sh ci`), or `None` as
/// [`or_skip`] says (a panic when `name` is [`required`]).
pub fn corpus_or_skip(name: &str, test: &str) -> Option<PathBuf> {
    let corpus = cache_dir().join("corpus").join("brown.txt");
    if corpus.is_file() {
        return Some(corpus);
    }
    assert!(!required(name), "{test}: {} is missing", corpus.display());
    eprintln!(
        "skipped: {test}: {} is missing (run fixtures/fetch.sh)",
        corpus.display()
    );
    None
}

/// The token ids of a golden file's JSON array (`"ids"`, `"greedy"`, ...).
pub fn golden_ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("golden ids are an array")
        .iter()
        .map(|x| x.as_u64().expect("golden id is an integer") as u32)
        .collect()
}
