//! Output folders that never destroy data.
//!
//! Every command that writes a model folder (`convert`, `import-gguf`, `synth`) goes through
//! [`Output`]: the target is checked first (it must not be, or contain, a source, the current
//! folder or one of its ancestors, and a non-empty folder is replaced only when tlite wrote it),
//! the new folder is built beside the target under a recognizable temporary name, and it is
//! swapped in only when complete — atomically where the platform can exchange two names
//! (Linux `renameat2(RENAME_EXCHANGE)`), else by moving the old folder aside first. The old
//! folder is removed only after the new one is in place. A temporary folder left by a process
//! that died (`kill -9`, power loss) is removed by the next run that writes beside it; an old
//! folder moved aside by a run that died before the swap completed is put back.
//!
//! Every folder tlite writes holds a marker file, [`MARKER`], which is how a later `--force`
//! knows the folder is tlite's to replace.

use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::{ConvertError, Result, io_err};

/// The marker file in every folder tlite writes.
pub const MARKER: &str = ".tlite-output";
/// Infix of a folder being built: `.<name>.tlite-tmp-<pid>`.
const TMP_TAG: &str = "tlite-tmp";
/// Infix of a replaced folder awaiting removal: `.<name>.tlite-old-<pid>`.
const OLD_TAG: &str = "tlite-old";
/// Infix of a folder of ours being deleted: `.<name>.tlite-trash-<pid>`. A folder is renamed
/// to it before its files go, so a deletion cut short (by SIGKILL) leaves a name the next run
/// recognizes whatever files remain.
const TRASH_TAG: &str = "tlite-trash";

/// Files a deployable model folder written before the marker existed may hold.
const LEGACY_DEPLOY_FILES: &[&str] = &[
    tlite_model::deploy::MODEL_FILE,
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
];

/// A folder being written. Dropped without [`Output::install`] (an error, a panic), it removes
/// its temporary folder.
#[derive(Debug)]
pub struct Output {
    target: PathBuf,
    tmp: PathBuf,
    installed: bool,
}

fn refuse(path: &Path, reason: impl Into<String>) -> ConvertError {
    ConvertError::OutputRefused {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// `path` made absolute without touching the file system: `.` dropped, `..` applied.
fn absolute(path: &Path) -> Result<PathBuf> {
    let cwd = std::env::current_dir().map_err(io_err(Path::new(".")))?;
    let mut out = PathBuf::new();
    for c in cwd.join(path).components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// The canonical form of `path` where it exists, else its parent's joined with its name.
fn resolve(path: &Path) -> Result<PathBuf> {
    let abs = absolute(path)?;
    if let Ok(c) = fs::canonicalize(&abs) {
        return Ok(c);
    }
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => Ok(resolve(parent)?.join(name)),
        _ => Ok(abs),
    }
}

impl Output {
    /// Checks `target` and creates the temporary folder beside it. `sources` are the inputs
    /// of the command (never replaced, never inside the target); `overwrite` allows replacing
    /// a non-empty folder that tlite wrote.
    pub fn prepare(target: &Path, sources: &[&Path], overwrite: bool) -> Result<Output> {
        let target = resolve(target)?;
        let (Some(parent), Some(name)) = (target.parent(), target.file_name()) else {
            return Err(refuse(&target, "the output must be a named folder"));
        };
        let name = name.to_string_lossy().into_owned();
        let cwd = resolve(Path::new("."))?;
        if cwd.starts_with(&target) {
            return Err(refuse(
                &target,
                "it is the current folder or one of its parents; choose a new folder",
            ));
        }
        for src in sources {
            let src = resolve(src)?;
            if src.starts_with(&target) {
                return Err(refuse(
                    &target,
                    format!(
                        "it is or contains the input {}; choose another folder",
                        src.display()
                    ),
                ));
            }
        }
        recover_stale(parent)?;
        match fs::symlink_metadata(&target) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&target)(e)),
            Ok(m) if !m.is_dir() => {
                return Err(refuse(&target, "it exists and is not a folder"));
            }
            Ok(_) if is_empty_dir(&target)? => {}
            Ok(_) if !overwrite => {
                return Err(ConvertError::OutputExists { path: target });
            }
            Ok(_) if !written_by_tlite(&target)? => {
                return Err(refuse(
                    &target,
                    "it holds files tlite did not write (--force replaces only a folder tlite \
                     wrote); choose a new or empty folder",
                ));
            }
            Ok(_) => {}
        }
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        let tmp = parent.join(format!(".{name}.{TMP_TAG}-{}", std::process::id()));
        if fs::symlink_metadata(&tmp).is_ok() {
            // Our own pid: a leftover of a dead process that had it before us.
            remove_any(&tmp)?;
        }
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        let out = Output {
            target,
            tmp,
            installed: false,
        };
        fs::write(out.tmp.join(MARKER), "tlite\n").map_err(io_err(&out.tmp))?;
        failpoint("tmp-created");
        Ok(out)
    }

    /// The folder to write into.
    pub fn dir(&self) -> &Path {
        &self.tmp
    }

    /// Where the folder will be installed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Moves the finished folder into place; the target is at every instant either the old
    /// folder or the new one (or, on platforms without an atomic exchange, briefly absent
    /// with the old folder beside it, which the next run puts back).
    pub fn install(mut self) -> Result<PathBuf> {
        failpoint("before-install");
        let exists = fs::symlink_metadata(&self.target).is_ok();
        if !exists {
            fs::rename(&self.tmp, &self.target).map_err(io_err(&self.target))?;
        } else if exchange(&self.tmp, &self.target).is_ok() {
            // The old folder now has the temporary name.
            failpoint("after-swap");
            self.installed = true;
            discard(&self.tmp, &self.sibling(TRASH_TAG))?;
            return Ok(self.target.clone());
        } else {
            let old = self.sibling(OLD_TAG);
            fs::rename(&self.target, &old).map_err(io_err(&self.target))?;
            failpoint("after-swap");
            if let Err(e) = fs::rename(&self.tmp, &self.target) {
                let _ = fs::rename(&old, &self.target);
                return Err(io_err(&self.target)(e));
            }
            self.installed = true;
            discard(&old, &self.sibling(TRASH_TAG))?;
        }
        self.installed = true;
        Ok(self.target.clone())
    }

    fn sibling(&self, tag: &str) -> PathBuf {
        let name = self
            .target
            .file_name()
            .unwrap_or_default()
            .to_string_lossy();
        self.target
            .with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.installed {
            // Best effort: the error being reported matters more than a failed cleanup.
            let _ = discard(&self.tmp, &self.sibling(TRASH_TAG));
        }
    }
}

fn is_empty_dir(p: &Path) -> Result<bool> {
    Ok(fs::read_dir(p).map_err(io_err(p))?.next().is_none())
}

/// A folder tlite wrote: it holds the marker, or it is a deployable model written before the
/// marker existed (the weights file and nothing but the files a conversion writes).
fn written_by_tlite(dir: &Path) -> Result<bool> {
    if dir.join(MARKER).is_file() {
        return Ok(true);
    }
    if !dir.join(tlite_model::deploy::MODEL_FILE).is_file() {
        return Ok(false);
    }
    for e in fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let name = e.file_name();
        let known = LEGACY_DEPLOY_FILES.iter().any(|f| name == *f);
        if !known || !e.file_type().map_err(io_err(dir))?.is_file() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Renames a folder of ours to `trash`, then removes it (see [`TRASH_TAG`]).
fn discard(p: &Path, trash: &Path) -> Result<()> {
    if fs::symlink_metadata(p).is_err() {
        return Ok(());
    }
    remove_any(trash)?;
    fs::rename(p, trash).map_err(io_err(p))?;
    failpoint("mid-discard");
    remove_any(trash)
}

fn remove_any(p: &Path) -> Result<()> {
    let m = match fs::symlink_metadata(p) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(p)(e)),
    };
    if m.is_dir() {
        fs::remove_dir_all(p).map_err(io_err(p))
    } else {
        fs::remove_file(p).map_err(io_err(p))
    }
}

/// `.<name>.<tag>-<pid>` parsed into (name, tag, pid).
fn parse_temp_name(file: &str) -> Option<(&str, &str, u32)> {
    let rest = file.strip_prefix('.')?;
    let (stem, pid) = rest.rsplit_once('-')?;
    let pid: u32 = pid.parse().ok()?;
    for tag in [TMP_TAG, OLD_TAG, TRASH_TAG] {
        if let Some(name) = stem.strip_suffix(tag).and_then(|s| s.strip_suffix('.'))
            && !name.is_empty()
        {
            return Some((name, tag, pid));
        }
    }
    None
}

/// Removes the temporary folders in `parent` whose process is gone, and puts back an old
/// folder that a dead process had moved aside when its target is missing.
pub fn recover_stale(parent: &Path) -> Result<()> {
    let Ok(entries) = fs::read_dir(parent) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let file = e.file_name();
        let Some((name, tag, pid)) = file.to_str().and_then(parse_temp_name) else {
            continue;
        };
        // This process's own folders belong to an Output still at work (several may run at
        // once in one process); an exact-name leftover is handled by `prepare`.
        if pid == std::process::id() || process_alive(pid) {
            continue;
        }
        // Only folders tlite wrote (or an empty one, created just before its marker) go;
        // trash was ours when it was renamed, whatever is left in it.
        let path = e.path();
        let ours = tag == TRASH_TAG
            || written_by_tlite(&path).unwrap_or(false)
            || is_empty_dir(&path).unwrap_or(false);
        if !path.is_dir() || !ours {
            continue;
        }
        let target = parent.join(name);
        if tag == OLD_TAG && fs::symlink_metadata(&target).is_err() {
            fs::rename(&path, &target).map_err(io_err(&target))?;
        } else {
            remove_any(&path)?;
        }
    }
    Ok(())
}

#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    // Without a portable check, assume alive: leftovers are kept rather than risk removing a
    // running process's folder.
    true
}

/// Exchanges two paths atomically (Linux), or fails.
#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let ca = CString::new(a.as_os_str().as_bytes())?;
    let cb = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths; AT_FDCWD is ignored for absolute ones.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// Test hook: when `TLITE_FAILPOINT` names this point, the process kills itself with SIGKILL
/// right there, as a crash or `kill -9` would (the crash-safety tests use it). Costs one
/// environment lookup per point.
pub fn failpoint(name: &str) {
    #[cfg(unix)]
    if std::env::var_os("TLITE_FAILPOINT").is_some_and(|v| v == name) {
        // SAFETY: sending a signal to ourselves.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
    #[cfg(not(unix))]
    let _ = name;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_parse() {
        assert_eq!(
            parse_temp_name(".out.tlite-tmp-42"),
            Some(("out", TMP_TAG, 42))
        );
        assert_eq!(
            parse_temp_name(".a.b.tlite-old-7"),
            Some(("a.b", OLD_TAG, 7))
        );
        assert_eq!(parse_temp_name(".out.tmp-42"), None);
        assert_eq!(parse_temp_name("out.tlite-tmp-42"), None);
        assert_eq!(parse_temp_name("..tlite-tmp-42"), None);
        assert_eq!(parse_temp_name(".x.tlite-tmp-"), None);
    }

    /// Entries of `dir` that a run uses while it works.
    fn temp_entries(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| parse_temp_name(n).is_some())
            .collect()
    }

    #[test]
    fn a_panic_while_writing_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let target = root.join("out");
        let r = std::panic::catch_unwind(|| {
            let out = Output::prepare(&target, &[], false).unwrap();
            fs::write(out.dir().join("half-written"), "x").unwrap();
            panic!("a bug while writing");
        });
        assert!(r.is_err());
        assert_eq!(temp_entries(root), Vec::<String>::new());
        assert!(!target.exists());
    }

    #[test]
    fn a_dead_runs_leftovers_are_recovered() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        // pid 0x7fff_fff0 is far above any pid_max: no such process.
        let dead = 0x7fff_fff0u32;
        let mk = |name: &str, files: &[&str]| {
            let d = root.join(name);
            fs::create_dir_all(&d).unwrap();
            for f in files {
                fs::write(d.join(f), "x").unwrap();
            }
        };
        mk(
            &format!(".a.{TMP_TAG}-{dead}"),
            &[MARKER, "model.safetensors"],
        );
        mk(&format!(".b.{TRASH_TAG}-{dead}"), &["config.json"]);
        mk(&format!(".c.{OLD_TAG}-{dead}"), &[MARKER, "config.json"]);
        // Not ours: a folder with the name but none of our files is left alone.
        mk(&format!(".d.{TMP_TAG}-{dead}"), &["notes.txt"]);
        recover_stale(root).unwrap();
        let mut left = temp_entries(root);
        left.sort();
        assert_eq!(left, vec![format!(".d.{TMP_TAG}-{dead}")]);
        // The old folder of a run that died mid-swap is put back where it was.
        assert!(root.join("c").join("config.json").is_file());
    }

    #[test]
    fn absolute_applies_dots() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(absolute(Path::new("a/./b/..")).unwrap(), cwd.join("a"));
        assert_eq!(absolute(Path::new("out/.")).unwrap(), cwd.join("out"));
    }
}
