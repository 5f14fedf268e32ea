//! Progress events. Library code reports; only the CLI draws.

/// What a long operation reports as it goes.
#[derive(Clone, Debug)]
pub enum Event {
    /// A phase begins with `total` items (tensors).
    Start { phase: &'static str, total: usize },
    /// Item `index` (0-based) of the current phase is done.
    Item { index: usize, name: String },
    /// The phase is complete.
    Done { phase: &'static str },
}

/// A sink that ignores every event.
pub fn ignore(_: Event) {}
