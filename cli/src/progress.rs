//! Progress bars: the only place tlite draws them. Hidden when stderr is not a terminal.

use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:32}] {pos}/{len} {wide_msg} ({elapsed})")
            .expect("static template")
            .progress_chars("=> "),
    );
    pb.set_prefix(what.to_owned());
    pb
}

/// Draws a bar from the library's progress events.
pub struct EventBar {
    bar: Option<ProgressBar>,
}

impl EventBar {
    pub fn new() -> Self {
        EventBar { bar: None }
    }

    pub fn on(&mut self, e: tlite_converter::Event) {
        use tlite_converter::Event;
        match e {
            Event::Start { phase, total } => self.bar = Some(bar(total as u64, phase)),
            Event::Item { name, .. } => {
                if let Some(b) = &self.bar {
                    b.set_message(name);
                    b.inc(1);
                }
            }
            Event::Done { .. } => self.finish(),
        }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// Bytes in binary units.
pub fn bytes(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}
