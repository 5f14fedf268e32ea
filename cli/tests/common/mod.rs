//! Helpers shared by the CLI tests: run the `tlite` binary and read what it printed.
// Each test crate uses a different subset of these.
#![allow(dead_code)]

use std::process::Command;

/// What a `tlite` run printed, and whether it succeeded.
pub struct Out {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tlite ARGS` (no backtraces in its errors).
pub fn tlite(args: &[&str]) -> Out {
    let out = Command::new(env!("CARGO_BIN_EXE_tlite"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run tlite");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `tlite ARGS`: success, and stdout followed by stderr as one text.
pub fn tlite_text(args: &[&str]) -> (bool, String) {
    let r = tlite(args);
    (r.ok, format!("{}{}", r.stdout, r.stderr))
}

/// Whether `r` failed for want of a GPU adapter (then the caller skips): a failure under CI,
/// which always has one, and a printed `SKIPPED` elsewhere.
pub fn no_gpu(r: &Out) -> bool {
    use std::io::Write as _;
    if r.ok || !r.stderr.contains("no GPU adapter") {
        return false;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no GPU adapter under CI: {}",
        r.stderr
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED: {}", r.stderr);
    true
}

/// A path `name` inside the temporary folder `dir` (nothing there yet).
pub fn tmp(dir: &tempfile::TempDir, name: &str) -> String {
    dir.path().join(name).to_string_lossy().into_owned()
}
