//! Output folders never destroy data. Refusals: `-o` at the current folder, at a source or a
//! folder holding it, at a folder tlite did not write; `out/.` replaces a previous output
//! properly. Crash safety of the commands that write model folders: `convert` and `import-gguf` are
//! killed with SIGKILL at fixed points of their output handling (the `TLITE_FAILPOINT` hook:
//! the process sends itself SIGKILL there) and at timed moments. Every time, the previous
//! output is intact (or replaced by a complete new one), and the next run leaves no temporary
//! folder behind.
#![cfg(unix)]

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use sha2::{Digest, Sha256};

const POINTS: &[&str] = &[
    "tmp-created",
    "mid-write",
    "before-install",
    "after-swap",
    "mid-discard",
];

fn tlite() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tlite"))
}

fn run_ok(args: &[&str]) {
    let out = tlite().args(args).output().expect("run tlite");
    assert!(
        out.status.success(),
        "tlite {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `tlite args` with the failpoint set; asserts it died of SIGKILL.
fn run_killed_at(args: &[&str], point: &str) {
    let status = tlite()
        .args(args)
        .env("TLITE_FAILPOINT", point)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run tlite");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "tlite {args:?} with failpoint {point} was not killed: {status:?}"
    );
}

/// Runs `tlite args` and kills it after `delay` (it may have finished by then).
fn run_killed_after(args: &[&str], delay: Duration) {
    let mut child = tlite()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tlite");
    std::thread::sleep(delay);
    let _ = child.kill();
    let _ = child.wait();
}

/// Every file of a folder with its sha256.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("read output folder") {
        let e = e.expect("entry");
        let bytes = std::fs::read(e.path()).expect("read file");
        out.insert(
            e.file_name().to_string_lossy().into_owned(),
            hex::encode(Sha256::digest(&bytes)),
        );
    }
    out
}

/// Names in `parent` that a tlite run uses while it works.
fn temp_folders(parent: &Path) -> Vec<String> {
    std::fs::read_dir(parent)
        .expect("read parent")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            [".tlite-tmp-", ".tlite-old-", ".tlite-trash-"]
                .iter()
                .any(|t| n.contains(t))
        })
        .collect()
}

/// Kills `args` (which writes `out`) at every failpoint and at timed moments; after each kill
/// the output is the previous one or a complete new one (`is_complete`), and a normal run
/// afterwards succeeds and leaves nothing behind.
fn check_crash_safety(args: &[&str], out: &Path, is_complete: impl Fn(&Path) -> bool) {
    let parent = out.parent().expect("parent");
    run_ok(args);
    let mut previous = snapshot(out);
    for point in POINTS {
        run_killed_at(args, point);
        let now = snapshot(out);
        if ["after-swap", "mid-discard"].contains(point) {
            // The new folder may already be in place: then it must be complete.
            assert!(
                now == previous || is_complete(out),
                "killed at {point}: output neither the previous one nor complete"
            );
        } else {
            assert_eq!(now, previous, "killed at {point}: previous output changed");
        }
        run_ok(args);
        assert_eq!(
            temp_folders(parent),
            Vec::<String>::new(),
            "temporary folders left after the run following a kill at {point}"
        );
        assert!(is_complete(out));
        previous = snapshot(out);
    }
    for ms in [2u64, 10, 30, 80, 200] {
        run_killed_after(args, Duration::from_millis(ms));
        let now = snapshot(out);
        assert!(
            now == previous || is_complete(out),
            "killed after {ms} ms: output neither the previous one nor complete"
        );
        run_ok(args);
        assert_eq!(temp_folders(parent), Vec::<String>::new(), "after {ms} ms");
        previous = snapshot(out);
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn convert_survives_sigkill() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let ck: PathBuf = tmp.path().join("ck");
    let out = tmp.path().join("out");
    run_ok(&["synth", "tiny-llama", "-o", s(&ck)]);
    let args = ["convert", s(&ck), "-o", s(&out), "-g", "32", "--force"];
    check_crash_safety(&args, &out, |dir| {
        tlite()
            .args(["inspect", s(dir)])
            .output()
            .is_ok_and(|o| o.status.success())
    });
}

/// Runs tlite in `cwd`; returns (success, stderr).
fn run_in(cwd: &Path, args: &[&str]) -> (bool, String) {
    let out = tlite()
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run tlite");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn outputs_that_would_destroy_data_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ck = root.join("ck");
    run_ok(&["synth", "tiny-llama", "-o", s(&ck)]);
    // A user's folder with their own files.
    let work = root.join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("notes.txt"), "mine").unwrap();
    let before = snapshot(&work);
    // (folder to run in, arguments, words the error must contain)
    let cases: &[(&Path, &[&str], &str)] = &[
        (
            &work,
            &["convert", s(&ck), "-o", ".", "--force"],
            "current folder",
        ),
        (
            &work,
            &["convert", s(&ck), "-o", "./", "--force"],
            "current folder",
        ),
        (
            &work,
            &["convert", s(&ck), "-o", "..", "--force"],
            "current folder",
        ),
        (
            &work,
            &["synth", "tiny-llama", "-o", ".", "--force"],
            "current folder",
        ),
        (
            &work,
            &["convert", s(&ck), "-o", s(&ck), "--force"],
            "input",
        ),
        (
            &work,
            &["convert", s(&ck), "-o", s(root), "--force"],
            "current folder",
        ),
        (
            root,
            &["convert", s(&ck), "-o", s(&work), "--force"],
            "did not write",
        ),
        (
            root,
            &["convert", s(&ck), "-o", "work/.", "--force"],
            "did not write",
        ),
        (
            root,
            &["synth", "tiny-llama", "-o", s(&work), "--force"],
            "did not write",
        ),
        (root, &["convert", s(&ck), "-o", s(&work)], "--force"),
        (
            root,
            &["convert", s(&ck), "-o", "work/notes.txt", "--force"],
            "not a folder",
        ),
    ];
    for (cwd, args, needle) in cases {
        let (ok, err) = run_in(cwd, args);
        assert_eq!(
            err.lines().filter(|l| l.starts_with("error")).count(),
            1,
            "{err}"
        );
        assert!(!ok, "tlite {args:?} succeeded");
        assert!(err.contains(needle), "tlite {args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(snapshot(&work), before, "tlite {args:?} changed the folder");
        assert!(
            ck.join("model.safetensors").is_file(),
            "{args:?} lost the source"
        );
        assert_eq!(temp_folders(root), Vec::<String>::new());
        assert_eq!(temp_folders(&work), Vec::<String>::new());
    }
    // A source inside the target: `-o root` from elsewhere.
    let (ok, err) = run_in(&ck, &["convert", s(&ck), "-o", s(root), "--force"]);
    assert!(!ok && err.contains("current folder"), "{err}");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let (ok, err) = run_in(
        elsewhere.path(),
        &["convert", s(&ck), "-o", s(root), "--force"],
    );
    assert!(!ok && err.contains("input"), "{err}");
}

#[test]
fn force_replaces_a_previous_output_through_a_dot_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let ck = root.join("ck");
    let out = root.join("out");
    run_ok(&["synth", "tiny-llama", "-o", s(&ck)]);
    run_ok(&["convert", s(&ck), "-o", s(&out), "-g", "32"]);
    let first = snapshot(&out);
    let dotted = format!("{}/.", s(&out));
    run_ok(&["convert", s(&ck), "-o", &dotted, "-g", "64", "--force"]);
    let second = snapshot(&out);
    assert_ne!(first, second, "the output was not replaced");
    assert!(second.contains_key("model.m0e4.safetensors"));
    assert_eq!(temp_folders(root), Vec::<String>::new());
    // An empty folder is a fine target without --force.
    let empty = root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    run_ok(&["convert", s(&ck), "-o", s(&empty), "-g", "32"]);
    assert!(empty.join("model.m0e4.safetensors").is_file());
}

#[test]
fn import_gguf_survives_sigkill() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let src = tmp.path().join("tiny.gguf");
    let mut g = tlite_gguf::writer::Gguf::tiny_llama();
    // Enough tensor data that a timed kill can land inside the write.
    g.remove_tensor("output.weight");
    g.f32_tensor("output.weight", vec![4, 8]);
    std::fs::write(&src, g.bytes()).expect("write gguf");
    let out = tmp.path().join("hf");
    let args = ["import-gguf", s(&src), "-o", s(&out), "--force"];
    check_crash_safety(&args, &out, |dir| {
        tlite_converter::checkpoint::Checkpoint::open_dir(dir)
            .and_then(|ck| ck.expected_tensors().map(|_| ()))
            .is_ok()
    });
}
