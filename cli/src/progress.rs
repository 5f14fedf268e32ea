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

/// A bar over perplexity windows of `ctx` tokens with the evaluation speed and the time left.
pub struct WindowBar {
    pb: ProgressBar,
    ctx: usize,
    start: std::time::Instant,
}

impl WindowBar {
    pub fn new(windows: usize, ctx: usize) -> Self {
        let pb = ProgressBar::new(windows as u64);
        pb.set_style(
            ProgressStyle::with_template(
                "windows [{bar:32}] {pos}/{len} {msg} ({elapsed}, ETA {eta})",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        WindowBar {
            pb,
            ctx,
            start: std::time::Instant::now(),
        }
    }

    /// `done` windows evaluated (of `models` models run on each window).
    pub fn tick(&self, done: usize, models: usize) {
        let s = self.start.elapsed().as_secs_f64().max(1e-9);
        let tps = (done * self.ctx * models) as f64 / s;
        self.pb.set_message(format!("{tps:.0} tok/s"));
        self.pb.set_position(done as u64);
    }

    pub fn finish(&self) {
        self.pb.finish_and_clear();
    }
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
