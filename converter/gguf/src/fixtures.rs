//! The real-model fixtures fetched by `fixtures/fetch.sh`: where they are, and their imported
//! Hugging Face folders (made once, on first use, under the same cache).

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
