//! Repo ids through the binary, against the hub stand-in of the converter's tests
//! (`converter/tests/support/hub_server.rs`, on 127.0.0.1): `tlite convert org/name` downloads
//! into `$HF_HOME/hub` with the environment set on the child process, then `inspect` and `ppl`
//! find it in the cache with the server stopped, with and without `HF_HUB_OFFLINE=1`; errors
//! (offline and not cached, a gated repository) are one clear line.

#[path = "../../converter/tests/support/hub_server.rs"]
mod hub_server;

use std::path::Path;
use std::process::Command;

use hub_server::{HubServer, Repo};
use tlite_converter::synth::{SynthSpec, write_checkpoint};
use tlite_model::arch::Family;

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// `tlite args` with the hub environment of `home` (and `extra`), nothing inherited from ours.
fn tlite(home: &Path, endpoint: &str, extra: &[(&str, &str)], args: &[&str]) -> Out {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tlite"));
    c.args(args).env("RUST_BACKTRACE", "0");
    for k in [
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HUB_OFFLINE",
    ] {
        c.env_remove(k);
    }
    c.env("HF_HOME", home).env("HF_ENDPOINT", endpoint);
    for (k, v) in extra {
        c.env(k, v);
    }
    let out = c.output().expect("run tlite");
    Out {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn convert_downloads_a_repo_id_and_later_commands_use_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck");
    write_checkpoint(&SynthSpec::tiny(Family::Llama), &ck).unwrap();
    let mut gated = Repo::from_dir("org/gated", &ck);
    gated.gated = true;
    let mut server = HubServer::start(vec![Repo::from_dir("org/tiny", &ck), gated]);
    let endpoint = server.endpoint();
    let home = tmp.path().join("hf-home");
    let out = tmp.path().join("m0e4");
    let (home_s, out_s) = (
        home.to_string_lossy().into_owned(),
        out.to_string_lossy().into_owned(),
    );

    let r = tlite(
        &home,
        &endpoint,
        &[],
        &["convert", "org/tiny", "-o", &out_s, "-g", "32"],
    );
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stderr.contains("downloading from") && r.stdout.contains("bits per weight"),
        "{}\n{}",
        r.stderr,
        r.stdout
    );
    let snapshots = home.join("hub/models--org--tiny/snapshots");
    assert_eq!(std::fs::read_dir(&snapshots).unwrap().count(), 1);

    let r = tlite(
        &home,
        &endpoint,
        &[],
        &["run", &out_s, "--device", "cpu", "-p", "hi", "-n", "2"],
    );
    assert!(r.ok, "{}", r.stderr);

    // The gated repository: one line naming HF_TOKEN.
    let r = tlite(&home, &endpoint, &[], &["inspect", "org/gated"]);
    assert!(!r.ok);
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains("HF_TOKEN") && last.contains("401"),
        "{}",
        r.stderr
    );

    // The server gone: the cache serves, online or offline.
    server.stop();
    let text = tmp.path().join("text.txt");
    std::fs::write(
        &text,
        "the cat is on the mat, then the dog is on the cat. ".repeat(20),
    )
    .unwrap();
    let text_s = text.to_string_lossy().into_owned();
    for extra in [&[][..], &[("HF_HUB_OFFLINE", "1")][..]] {
        let r = tlite(&home, &endpoint, extra, &["inspect", "org/tiny"]);
        assert!(r.ok, "{extra:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("from the cache") && r.stdout.contains("architecture Llama"),
            "{}{}",
            r.stderr,
            r.stdout
        );
        let r = tlite(
            &home,
            &endpoint,
            extra,
            &["quant-error", "org/tiny", "-g", "32", "--filter", "q_proj"],
        );
        assert!(r.ok, "{extra:?}: {}", r.stderr);
        let r = tlite(
            &home,
            &endpoint,
            extra,
            &[
                "ppl", "org/tiny", "--data", &text_s, "--ctx", "32", "--chunks", "1",
            ],
        );
        assert!(r.ok && r.stdout.contains("PPL"), "{extra:?}: {}", r.stderr);
    }
    let r = tlite(
        &home,
        &endpoint,
        &[("HF_HUB_OFFLINE", "1")],
        &["convert", "org/missing", "-o", &out_s],
    );
    assert!(
        !r.ok && r.stderr.contains("HF_HUB_OFFLINE") && r.stderr.contains(&home_s),
        "{}",
        r.stderr
    );
    let r = tlite(&home, &endpoint, &[], &["inspect", "org/missing"]);
    assert!(
        !r.ok && r.stderr.contains("cannot reach the hub"),
        "{}",
        r.stderr
    );
    // A path that is neither a folder nor a repo id.
    let r = tlite(&home, &endpoint, &[], &["inspect", "./no/such/dir"]);
    assert!(
        !r.ok && r.stderr.contains("no such file or folder"),
        "{}",
        r.stderr
    );
}
