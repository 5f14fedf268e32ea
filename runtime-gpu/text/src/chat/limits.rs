//! Bounds on rendering a chat template. A template comes from a model file that nobody vetted,
//! so each render is limited in everything minijinja lets a host limit, and turns every limit it
//! reaches into an error that names it — never a hang, a stack overflow or a giant prompt:
//!
//! - **source** ([`MAX_TEMPLATE_BYTES`]), **tokens per tag** ([`MAX_TAG_TOKENS`]) and **`elif`
//!   branches** ([`MAX_ELIFS`]), checked with minijinja's lexer before anything is parsed: a
//!   long operator or call chain (`1+1+1…`, `x.a.a…`, `f()()…`, `- - -1`) or a long `elif`
//!   chain is parsed and compiled recursively, one native frame per link, so these caps keep the
//!   compiler's recursion to a few thousand frames;
//! - **fuel** ([`FUEL_LIMIT`]): minijinja counts executed instructions; nested `range` loops
//!   stop here;
//! - **stack**: the render runs on its own thread, with a stack sized from the fuel. Lists built
//!   inside lists are printed, compared, serialized and dropped by recursion, one frame per
//!   level; every level costs at least one instruction, so the fuel bounds the depth and the
//!   stack ([`STACK_BYTES_PER_FUEL`] per unit, about twice the deepest frame measured) holds it;
//! - **namespaces**: the one mutable value a template has. A namespace holding itself
//!   (`{% set ns.me = ns %}`) recurses without end when printed or compared, whatever the stack,
//!   so every assignment to a namespace attribute is rewritten to pass its value through a check
//!   that refuses namespaces and other objects inside it (no cycle can form) and values nested
//!   deeper than [`MAX_NESTING`];
//! - **printing and `tojson` / `pprint`**: values nested deeper than [`MAX_NESTING`] are refused
//!   before they are walked, and a value whose text must exceed the output cap is refused
//!   before that text is built;
//! - **output** ([`MAX_OUTPUT_BYTES`]): the prompt is written through a writer that fails past
//!   the cap, so rendering stops there instead of after allocating everything;
//! - **time** ([`TIME_LIMIT`]): a few single operations are not paid in fuel (comparing two
//!   large shared-structure values, for one); a render still running after the time limit is
//!   abandoned — its thread cannot be stopped and ends when that operation does.
//!
//! What stays open: one instruction may allocate a lot (`'x' * 100000000` is 100 MB, and joining
//! such strings grows further); minijinja caps each repetition at 100 MB but not concatenation.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use minijinja::machinery::{Token, tokenize};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, ObjectRepr};
use minijinja::{Environment, Error as JinjaError, ErrorKind, Value};

use super::ChatMessage;
use crate::{Result, TextError};

/// Most bytes of template source. Real templates are 0.4–20 KB (SmolLM2's 368 B, Qwen2.5's
/// 2.5 KB, tool-calling templates ~15 KB).
pub const MAX_TEMPLATE_BYTES: usize = 1 << 20;
/// Most tokens in one `{{ … }}` or `{% … %}` tag: a chain of operators, attributes, calls or
/// filters parses to a tree as deep as it is long, which the parser and compiler walk
/// recursively (≤ 1 KiB of stack per level measured); real tags have under 50 tokens.
pub const MAX_TAG_TOKENS: usize = 4096;
/// Most `{% elif %}` branches in a template: minijinja nests each in the previous one (parsed
/// and compiled recursively, ≤ 1 KiB of stack each); real templates have fewer than 20.
pub const MAX_ELIFS: usize = 1024;
/// Instructions one render may execute. A one-message prompt costs 38 (SmolLM2), 43 (Qwen2.5)
/// or 71 (Gemma-3) and each further message about 25, 40 or 50, so a 10-message conversation
/// takes at most 516: the limit is ≥ 100× that (≥ 700× a one-question prompt) and still stops
/// a runaway loop within milliseconds.
pub const FUEL_LIMIT: u64 = 100_000;
/// Most bytes of rendered prompt: several times any context a model here takes.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;
/// Deepest nesting of lists and maps that a template may print, serialize or keep in a
/// namespace; a chat's data (messages, tool calls and their JSON arguments) is under 20 deep.
pub const MAX_NESTING: usize = 512;
/// Values the checks above may visit in one render (~0.5 s of work at most): a template that
/// re-stores a growing list in a namespace pays for each re-check here.
pub const MAX_CHECKED_VALUES: u64 = 10_000_000;
/// Wall-clock time of one render; real templates take well under a millisecond.
pub const TIME_LIMIT: Duration = Duration::from_secs(10);
/// Stack of the render thread besides the fuel-bound part: the parser and compiler, bounded by
/// [`MAX_TAG_TOKENS`] and [`MAX_ELIFS`], need a few MiB.
pub const STACK_BASE_BYTES: usize = 16 << 20;
/// Stack per unit of fuel: one level of nesting costs ≤ 524 B in the deepest recursion measured
/// (printing a list of lists; comparing 419 B, serializing 314 B, dropping 104 B).
pub const STACK_BYTES_PER_FUEL: usize = 1 << 10;

/// The filter that checks values stored in a namespace, and the text that closes its call (see
/// [`prepare`]).
const NAMESPACE_FILTER: &str = "tlite_namespace_value";
const NAMESPACE_CLOSE: &str = ")|tlite_namespace_value";

/// The limits of one render; [`RenderLimits::DEFAULT`] holds the constants above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderLimits {
    /// Instructions the template may execute; the render thread's stack grows with it.
    pub fuel: u64,
    pub max_output_bytes: usize,
    pub max_nesting: usize,
    pub max_checked_values: u64,
    pub time_limit: Duration,
}

impl RenderLimits {
    pub const DEFAULT: RenderLimits = RenderLimits {
        fuel: FUEL_LIMIT,
        max_output_bytes: MAX_OUTPUT_BYTES,
        max_nesting: MAX_NESTING,
        max_checked_values: MAX_CHECKED_VALUES,
        time_limit: TIME_LIMIT,
    };

    /// The render thread's stack: room for a value nested as deep as the fuel allows.
    pub fn stack_bytes(&self) -> usize {
        usize::try_from(self.fuel)
            .unwrap_or(usize::MAX)
            .saturating_mul(STACK_BYTES_PER_FUEL)
            .saturating_add(STACK_BASE_BYTES)
    }
}

impl Default for RenderLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A rendered prompt and what it cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    /// Fuel (instructions) the render used, out of [`RenderLimits::fuel`].
    pub fuel_used: u64,
}

/// What a render stopped on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    TemplateSize(usize),
    TagTokens,
    Elifs,
    Fuel,
    Output,
    Nesting,
    Checks,
    NamespaceValue,
    Recursion(usize),
}

impl Stop {
    fn message(self, l: &RenderLimits) -> String {
        match self {
            Stop::TemplateSize(n) => {
                format!(
                    "the template is {n} bytes, more than {MAX_TEMPLATE_BYTES} (template size limit)"
                )
            }
            Stop::TagTokens => {
                format!("a tag holds more than {MAX_TAG_TOKENS} tokens (expression size limit)")
            }
            Stop::Elifs => {
                format!("the template has more than {MAX_ELIFS} `elif` branches (elif limit)")
            }
            Stop::Fuel => format!(
                "rendering stopped: the template used more than {} steps (fuel limit)",
                l.fuel
            ),
            Stop::Output => format!(
                "rendering stopped: the output exceeds {} bytes (output limit)",
                l.max_output_bytes
            ),
            Stop::Nesting => format!(
                "rendering stopped: a value is nested deeper than {} levels (nesting limit)",
                l.max_nesting
            ),
            Stop::Checks => format!(
                "rendering stopped: the template's values took more than {} checks (check limit)",
                l.max_checked_values
            ),
            Stop::NamespaceValue => "rendering stopped: a namespace attribute may hold strings, \
                 numbers, lists and dicts, not a namespace or other object that could refer back \
                 to it (namespace rule)"
                .to_owned(),
            Stop::Recursion(n) => format!(
                "rendering stopped: macro calls or recursive loops nested deeper than minijinja's \
                 limit of {n} (recursion limit)"
            ),
        }
    }
}

/// Renders `source` on a thread of its own within `limits`.
pub(super) fn render(
    source: &str,
    bos_token: &str,
    eos_token: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    limits: &RenderLimits,
) -> Result<Rendered> {
    if source.len() > MAX_TEMPLATE_BYTES {
        return Err(TextError::ChatTemplate(
            Stop::TemplateSize(source.len()).message(limits),
        ));
    }
    let job = Job {
        source: source.to_owned(),
        bos_token: bos_token.to_owned(),
        eos_token: eos_token.to_owned(),
        messages: messages.to_vec(),
        add_generation_prompt,
        limits: *limits,
    };
    let (tx, rx) = mpsc::sync_channel(1);
    let stack = limits.stack_bytes();
    let thread = std::thread::Builder::new()
        .name("chat-template".into())
        .stack_size(stack)
        .spawn(move || {
            let _ = tx.send(job.run());
        })
        .map_err(|e| {
            TextError::ChatTemplate(format!(
                "cannot start the render thread with a {} MiB stack (fuel {}): {e}",
                stack >> 20,
                limits.fuel
            ))
        })?;
    match rx.recv_timeout(limits.time_limit) {
        Ok(r) => {
            // The values are dropped on that thread's stack; wait for it.
            let _ = thread.join();
            r
        }
        Err(mpsc::RecvTimeoutError::Timeout) => Err(TextError::ChatTemplate(format!(
            "rendering stopped: the template ran longer than {:.3} s (time limit)",
            limits.time_limit.as_secs_f64()
        ))),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(TextError::ChatTemplate(
            "rendering failed: the render thread panicked".into(),
        )),
    }
}

struct Job {
    source: String,
    bos_token: String,
    eos_token: String,
    messages: Vec<ChatMessage>,
    add_generation_prompt: bool,
    limits: RenderLimits,
}

impl Job {
    fn run(self) -> Result<Rendered> {
        let l = self.limits;
        let err = |msg: String| TextError::ChatTemplate(msg);
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| err(e.to_string()))?;
        let source = prepare(&self.source, &syntax).map_err(|e| {
            err(match e {
                Unprepared::Limit(s) => s.message(&l),
                Unprepared::Lex(e) => format!("the template does not parse: {e:#}"),
            })
        })?;
        let tracker = Arc::new(Tracker::new(l));
        let mut env = environment(syntax, &tracker);
        env.set_fuel(Some(l.fuel));
        let recursion_limit = env.recursion_limit();
        let tmpl = env
            .template_from_str(&source)
            .map_err(|e| err(format!("the template does not parse: {e:#}")))?;
        let ctx = minijinja::context! {
            messages => Value::from(self.messages.iter().map(ChatMessage::to_value).collect::<Vec<_>>()),
            add_generation_prompt => self.add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        let mut out = CappedWriter {
            buf: Vec::new(),
            cap: l.max_output_bytes,
            over: false,
        };
        let fuel_used = match tmpl.render_captured_to(ctx, &mut out) {
            Ok(captured) => captured.state().fuel_levels().map_or(0, |(used, _)| used),
            Err(e) => {
                let stop = if out.over {
                    Some(Stop::Output)
                } else if e.kind() == ErrorKind::OutOfFuel {
                    Some(Stop::Fuel)
                } else if let Some(s) = tracker.stopped() {
                    Some(s)
                } else if e.detail().is_some_and(|d| d.contains("recursion limit")) {
                    Some(Stop::Recursion(recursion_limit))
                } else {
                    None
                };
                return Err(err(match stop {
                    Some(s) => match e.line() {
                        Some(line) => format!("{} at line {line}", s.message(&l)),
                        None => s.message(&l),
                    },
                    None => format!("rendering failed: {e:#}"),
                }));
            }
        };
        let text = String::from_utf8(out.buf)
            .map_err(|e| err(format!("rendering produced invalid UTF-8: {e}")))?;
        Ok(Rendered { text, fuel_used })
    }
}

/// The environment of one render: Hugging Face's conventions (trimmed blocks, Python string
/// methods, `raise_exception`) and the checks of this module.
fn environment(syntax: SyntaxConfig, tracker: &Arc<Tracker>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_syntax(syntax);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<Value, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
        },
    );
    let t = tracker.clone();
    env.set_formatter(move |out, state, value| {
        if value.as_object().is_some() {
            t.walk(value, Walk::Print)?;
        }
        minijinja::escape_formatter(out, state, value)
    });
    let t = tracker.clone();
    env.add_filter(
        "tojson",
        move |value: &Value, indent: Option<Value>, kwargs: Kwargs| {
            let indent = match indent {
                Some(v) => Some(v),
                None => kwargs.get::<Option<Value>>("indent")?,
            };
            let width = match &indent {
                None => 0,
                Some(v) => match bool::try_from(v.clone()) {
                    Ok(pretty) => 2 * usize::from(pretty),
                    Err(_) => usize::try_from(v.clone()).unwrap_or(0),
                },
            };
            t.walk(value, Walk::Json { indent: width })?;
            minijinja::filters::tojson(value, indent, kwargs)
        },
    );
    let t = tracker.clone();
    env.add_filter("pprint", move |value: &Value| {
        t.walk(value, Walk::Print)?;
        let mut s = CappedString {
            buf: String::new(),
            cap: t.limits.max_output_bytes,
        };
        match std::fmt::Write::write_fmt(&mut s, format_args!("{value:#?}")) {
            Ok(()) => Ok(s.buf),
            Err(_) => Err(t.stop(Stop::Output)),
        }
    });
    let t = tracker.clone();
    env.add_filter(NAMESPACE_FILTER, move |value: Value| {
        if value.as_object().is_some() {
            t.walk(&value, Walk::Namespace)?;
        }
        Ok::<_, JinjaError>(value)
    });
    env
}

/// Checks `source` with minijinja's own lexer and rewrites each assignment to a namespace
/// attribute, `{% set ns.a = EXPR %}`, to `{% set ns.a =(EXPR)|tlite_namespace_value %}`.
/// Insertions stay on their line, so error line numbers are unchanged.
fn prepare(source: &str, syntax: &SyntaxConfig) -> std::result::Result<String, Unprepared> {
    enum Set {
        /// Not in a `set` tag, or in one that assigns no namespace attribute.
        No,
        /// In the target of a `set` tag; whether it has a `.`.
        Target { dotted: bool },
        /// In the value of `{% set ns.a = … %}`; where its last token ends.
        Value { last_end: Option<u32> },
    }
    let mut inserts: Vec<(u32, &str)> = Vec::new();
    let (mut in_tag, mut tag_tokens, mut elifs) = (false, 0usize, 0usize);
    let mut set = Set::No;
    for item in tokenize(source, false, syntax.clone()) {
        let (token, span) = item.map_err(Unprepared::Lex)?;
        match token {
            Token::VariableStart | Token::BlockStart => {
                (in_tag, tag_tokens, set) = (true, 0, Set::No);
                continue;
            }
            Token::VariableEnd | Token::BlockEnd => {
                if let Set::Value {
                    last_end: Some(end),
                } = set
                {
                    inserts.push((end, NAMESPACE_CLOSE));
                }
                (in_tag, set) = (false, Set::No);
                continue;
            }
            _ if !in_tag => continue,
            _ => {}
        }
        tag_tokens += 1;
        if tag_tokens > MAX_TAG_TOKENS {
            return Err(Unprepared::Limit(Stop::TagTokens));
        }
        set = match (set, &token) {
            (Set::No, Token::Ident("set")) if tag_tokens == 1 => Set::Target { dotted: false },
            (Set::No, Token::Ident("elif")) if tag_tokens == 1 => {
                elifs += 1;
                if elifs > MAX_ELIFS {
                    return Err(Unprepared::Limit(Stop::Elifs));
                }
                Set::No
            }
            (Set::Target { .. }, Token::Dot) => Set::Target { dotted: true },
            (Set::Target { dotted: true }, Token::Assign) => {
                inserts.push((span.end_offset, "("));
                Set::Value { last_end: None }
            }
            (Set::Target { dotted: false }, Token::Assign) => Set::No,
            (Set::Value { .. }, _) => Set::Value {
                last_end: Some(span.end_offset),
            },
            (s, _) => s,
        };
    }
    let mut out = String::with_capacity(source.len() + inserts.len() * 24);
    let mut at = 0usize;
    for (offset, text) in inserts {
        let offset = offset as usize;
        out.push_str(&source[at..offset]);
        out.push_str(text);
        at = offset;
    }
    out.push_str(&source[at..]);
    Ok(out)
}

/// Why [`prepare`] refused a template.
enum Unprepared {
    Limit(Stop),
    /// A lexing error, which the parser would report at the same place (the parser is not run:
    /// it could recurse deeply on the tokens before the error).
    Lex(JinjaError),
}

/// How a value is about to be used, which decides what its check counts.
#[derive(Clone, Copy)]
enum Walk {
    /// Printed (`{{ }}`, `pprint`): depth, and at least one byte of text per value.
    Print,
    /// Serialized by `tojson` with this indent: depth and a lower bound of the JSON's length.
    Json { indent: usize },
    /// Stored in a namespace attribute: depth, and no namespace or unknown object inside.
    Namespace,
}

/// The limits of one render and what its checks have used and hit.
struct Tracker {
    limits: RenderLimits,
    checks_left: AtomicU64,
    stopped: Mutex<Option<Stop>>,
}

impl Tracker {
    fn new(limits: RenderLimits) -> Self {
        Tracker {
            limits,
            checks_left: AtomicU64::new(limits.max_checked_values),
            stopped: Mutex::new(None),
        }
    }

    fn stopped(&self) -> Option<Stop> {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `s` (the first stop is the one reported) and returns the error that ends the
    /// render.
    fn stop(&self, s: Stop) -> JinjaError {
        self.stopped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(s);
        JinjaError::new(ErrorKind::InvalidOperation, s.message(&self.limits))
    }

    /// Walks `value` without recursion (one iterator per level), checking it for `how`.
    fn walk(&self, value: &Value, how: Walk) -> std::result::Result<(), JinjaError> {
        type Items = Box<dyn Iterator<Item = Value>>;
        let max_bytes = self.limits.max_output_bytes as u64;
        // A lower bound of the bytes the value prints or serializes to.
        let mut bytes = 0u64;
        let mut levels: Vec<Items> = Vec::new();
        let mut next: Option<Value> = Some(value.clone());
        loop {
            let v = match next.take() {
                Some(v) => v,
                None => match levels.last_mut() {
                    None => return Ok(()),
                    Some(items) => match items.next() {
                        Some(v) => {
                            // A separator, and with an indent a new line at this depth.
                            bytes += 1;
                            if let Walk::Json { indent } = how {
                                bytes = bytes.saturating_add(
                                    (indent as u64).saturating_mul(levels.len() as u64),
                                );
                            }
                            v
                        }
                        None => {
                            levels.pop();
                            continue;
                        }
                    },
                },
            };
            if self.checks_left.fetch_sub(1, Ordering::Relaxed) == 0 {
                self.checks_left.store(0, Ordering::Relaxed);
                return Err(self.stop(Stop::Checks));
            }
            let items: Option<Items> = match v.as_object() {
                None => {
                    bytes += match v.as_str() {
                        Some(s) => s.len() as u64 + 2,
                        None => u64::from(!v.is_undefined()),
                    };
                    None
                }
                Some(obj) => match obj.repr() {
                    ObjectRepr::Seq | ObjectRepr::Iterable => {
                        obj.try_iter().map(|i| Box::new(i) as Items)
                    }
                    ObjectRepr::Map => {
                        if let Walk::Namespace = how
                            && v.downcast_object_ref::<BTreeMap<Value, Value>>().is_none()
                        {
                            return Err(self.stop(Stop::NamespaceValue));
                        }
                        obj.try_iter_pairs()
                            .map(|i| Box::new(i.flat_map(|(k, v)| [k, v])) as Items)
                    }
                    // Plain objects (macros, loop state) print as a name.
                    _ => {
                        if let Walk::Namespace = how {
                            return Err(self.stop(Stop::NamespaceValue));
                        }
                        None
                    }
                },
            };
            if let Some(items) = items {
                if levels.len() >= self.limits.max_nesting {
                    return Err(self.stop(Stop::Nesting));
                }
                bytes += 2;
                levels.push(items);
            }
            if !matches!(how, Walk::Namespace) && bytes > max_bytes {
                return Err(self.stop(Stop::Output));
            }
        }
    }
}

/// The prompt's bytes, refusing any write that would take them past `cap`.
struct CappedWriter {
    buf: Vec<u8>,
    cap: usize,
    over: bool,
}

impl io::Write for CappedWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.buf.len() + b.len() > self.cap {
            self.over = true;
            return Err(io::Error::other("the output limit is reached"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A string that refuses to grow past `cap` bytes.
struct CappedString {
    buf: String,
    cap: usize,
}

impl std::fmt::Write for CappedString {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.buf.len() + s.len() > self.cap {
            return Err(std::fmt::Error);
        }
        self.buf.push_str(s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared(src: &str) -> String {
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .unwrap();
        prepare(src, &syntax).unwrap_or_else(|_| panic!("prepare {src}"))
    }

    #[test]
    fn namespace_assignments_are_rewritten_and_nothing_else() {
        assert_eq!(
            prepared(
                "{%- set ns.a = x if y else 'z' -%}{% set b = ns %}{% set ns.c %}t{% endset %}"
            ),
            "{%- set ns.a =( x if y else 'z')|tlite_namespace_value -%}{% set b = ns %}\
             {% set ns.c %}t{% endset %}"
        );
        assert_eq!(
            prepared(
                "{% set ns.a, ns.b = 1, [2] %}{{ 'set ns.x = 1' }}{% raw %}{% set ns.y = 2 %}{% endraw %}"
            ),
            "{% set ns.a, ns.b =( 1, [2])|tlite_namespace_value %}{{ 'set ns.x = 1' }}\
             {% raw %}{% set ns.y = 2 %}{% endraw %}"
        );
    }

    #[test]
    fn the_dict_type_namespaces_may_hold_is_minijinjas_map() {
        // The namespace rule lets `BTreeMap<Value, Value>` (minijinja's `ValueMap` without its
        // `preserve_order` feature) through; if that changes, dicts would be refused.
        let v = Value::from_pairs([("a", 1)]);
        assert!(v.downcast_object_ref::<BTreeMap<Value, Value>>().is_some());
    }
}
