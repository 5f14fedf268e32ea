//! Repo ids on the command line: `org/name[@revision]` resolved from the HF cache, else
//! downloaded into it (`tlite_converter::hub`), with a progress bar per file. What the
//! environment sets (`HF_HOME`, `HF_HUB_CACHE`, `HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE`)
//! is read here, once.

use std::path::Path;

use anyhow::bail;
use indicatif::{ProgressBar, ProgressStyle};
use tlite_converter::hub::{self, HubEvent, HubOptions, RepoSpec};

/// `src` as a local path: itself when it exists, else the snapshot folder of the repo id it
/// names (cached or downloaded).
pub fn local(src: &str) -> anyhow::Result<String> {
    if Path::new(src).exists() {
        return Ok(src.to_owned());
    }
    let spec = match RepoSpec::parse(src) {
        Ok(s) => s,
        Err(reason) => {
            bail!("{src}: no such file or folder, and not a Hugging Face repo id either ({reason})")
        }
    };
    let opts = HubOptions::from_env()?;
    let mut bars = Bars { bar: None };
    let snap = hub::resolve(&opts, &spec, &mut |e| bars.on(&spec, &opts, e))?;
    bars.done();
    Ok(snap.to_string_lossy().into_owned())
}

/// One bar per file, left on screen when the file is complete (hidden when stderr is not a
/// terminal).
struct Bars {
    bar: Option<ProgressBar>,
}

impl Bars {
    fn on(&mut self, spec: &RepoSpec, opts: &HubOptions, e: HubEvent) {
        match e {
            HubEvent::Cached { snapshot } => {
                eprintln!("hub: {spec} from the cache ({})", snapshot.display())
            }
            HubEvent::Resolved { commit } => eprintln!(
                "hub: {spec} is commit {commit}; downloading from {} into {}",
                opts.endpoint,
                opts.cache.display()
            ),
            HubEvent::FileStart { name, size, from } => {
                self.done();
                let b = ProgressBar::new(size);
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix:<34} [{bar:32}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})",
                    )
                    .expect("static template")
                    .progress_chars("=> "),
                );
                b.set_prefix(name);
                b.set_position(from);
                self.bar = Some(b);
            }
            HubEvent::FileProgress { done, .. } => {
                if let Some(b) = &self.bar {
                    b.set_position(done);
                }
            }
            HubEvent::FileDone { .. } => self.done(),
            HubEvent::Retry {
                name,
                attempt,
                done,
                reason,
            } => {
                let line = format!(
                    "hub: {name} broke off at {done} bytes ({reason}); resuming (attempt {attempt})"
                );
                match &self.bar {
                    Some(b) => b.println(line),
                    None => eprintln!("{line}"),
                }
            }
        }
    }

    fn done(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }
}
