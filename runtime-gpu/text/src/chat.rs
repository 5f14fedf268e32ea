//! Chat templates: the Jinja `chat_template` of a model's `tokenizer_config.json` (or its
//! `chat_template.jinja`) rendered with minijinja the way `transformers` does it — blocks trimmed
//! and left-stripped, loop controls, Python string methods (`.strip()`, `.startswith()`, ...),
//! `raise_exception`, and `messages` / `add_generation_prompt` / `bos_token` / `eos_token` in the
//! context. Templates come from model files, so every render is bounded ([`RenderLimits`]).

mod limits;

use std::path::Path;

use minijinja::Value;
use serde_json::Value as Json;

pub use limits::{
    FUEL_LIMIT, MAX_CHECKED_VALUES, MAX_ELIFS, MAX_NESTING, MAX_OUTPUT_BYTES, MAX_TAG_TOKENS,
    MAX_TEMPLATE_BYTES, RenderLimits, Rendered, TIME_LIMIT,
};

use crate::{Result, TextError};

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    fn to_value(&self) -> Value {
        Value::from_pairs([("role", &self.role), ("content", &self.content)])
    }
}

/// A one-question conversation, with an optional system message first.
pub fn conversation(system: Option<&str>, user: &str) -> Vec<ChatMessage> {
    system
        .map(|s| ChatMessage::new("system", s))
        .into_iter()
        .chain([ChatMessage::new("user", user)])
        .collect()
}

/// A model's chat template with the special-token strings it refers to.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    pub source: String,
    pub bos_token: String,
    pub eos_token: String,
}

impl ChatTemplate {
    /// The template of the model folder `dir`: `tokenizer_config.json`'s `chat_template`, else
    /// `chat_template.jinja`; `None` when the model has neither.
    pub fn from_model_dir(dir: &Path) -> Result<Option<Self>> {
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: Json = match std::fs::read_to_string(&cfg_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                TextError::ChatTemplate(format!("{} is not valid JSON: {e}", cfg_path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Json::Null,
            Err(e) => {
                return Err(TextError::ChatTemplate(format!(
                    "reading {}: {e}",
                    cfg_path.display()
                )));
            }
        };
        let jinja_path = dir.join("chat_template.jinja");
        let source = match template_of(&cfg) {
            Some(s) => s,
            None if jinja_path.is_file() => std::fs::read_to_string(&jinja_path).map_err(|e| {
                TextError::ChatTemplate(format!("reading {}: {e}", jinja_path.display()))
            })?,
            None => return Ok(None),
        };
        Ok(Some(ChatTemplate {
            source,
            bos_token: token_string(&cfg["bos_token"]),
            eos_token: token_string(&cfg["eos_token"]),
        }))
    }

    /// The prompt text of `messages`; `add_generation_prompt` opens the assistant's turn.
    /// Rendered within [`RenderLimits::DEFAULT`]: a limit reached is an error naming it.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        self.render_limited(messages, add_generation_prompt, &RenderLimits::DEFAULT)
            .map(|r| r.text)
    }

    /// As [`Self::render`], within `limits`, with the fuel the render used.
    pub fn render_limited(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        limits: &RenderLimits,
    ) -> Result<Rendered> {
        limits::render(
            &self.source,
            &self.bos_token,
            &self.eos_token,
            messages,
            add_generation_prompt,
            limits,
        )
    }
}

/// `chat_template` as a string, or the `default` (else first) of a list of named templates.
fn template_of(cfg: &Json) -> Option<String> {
    match &cfg["chat_template"] {
        Json::String(s) => Some(s.clone()),
        Json::Array(list) => list
            .iter()
            .find(|t| t["name"] == "default")
            .or_else(|| list.first())
            .and_then(|t| t["template"].as_str())
            .map(str::to_owned),
        _ => None,
    }
}

/// A special token given as a string or as an added-token object (`{"content": ...}`).
fn token_string(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Object(o) => o
            .get("content")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inline(source: &str) -> ChatTemplate {
        ChatTemplate {
            source: source.into(),
            bos_token: "<s>".into(),
            eos_token: "</s>".into(),
        }
    }

    #[test]
    fn renders_an_inline_template() {
        // The shape of most HF templates: bos, a loop, `.strip()`, trimmed blocks, a generation
        // prompt.
        let t = inline(
            "{{ bos_token }}{% for m in messages %}\n\
             {% if m['role'] == 'system' %}\n\
             [SYS]{{ m['content'].strip() }}[/SYS]\n\
             {% else %}\n\
             <{{ m.role }}>{{ m['content'] | trim }}{{ eos_token }}\n\
             {% endif %}\n\
             {% endfor %}\n\
             {% if add_generation_prompt %}<assistant>{% endif %}",
        );
        let msgs = conversation(Some("  Be brief. "), " Hi ");
        assert_eq!(
            t.render(&msgs, true).unwrap(),
            "<s>[SYS]Be brief.[/SYS]\n<user>Hi</s>\n<assistant>"
        );
        assert_eq!(
            t.render(&msgs, false).unwrap(),
            "<s>[SYS]Be brief.[/SYS]\n<user>Hi</s>\n"
        );
    }

    #[test]
    fn raise_exception_and_bad_templates_are_errors() {
        let t = inline(
            "{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok",
        );
        let e = t.render(&conversation(Some("x"), "y"), true).unwrap_err();
        assert!(e.to_string().contains("System role not supported"), "{e}");
        assert_eq!(t.render(&conversation(None, "y"), true).unwrap(), "ok");
        let bad = inline("{% for m in messages %}");
        assert!(matches!(
            bad.render(&[], true),
            Err(TextError::ChatTemplate(_))
        ));
    }

    #[test]
    fn reads_named_templates_and_token_objects() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let cfg = serde_json::json!({
            "bos_token": {"content": "<bos>", "lstrip": false},
            "eos_token": "<eos>",
            "chat_template": [
                {"name": "tool_use", "template": "tools"},
                {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}
            ]
        });
        std::fs::write(dir.join("tokenizer_config.json"), cfg.to_string()).unwrap();
        let t = ChatTemplate::from_model_dir(dir).unwrap().unwrap();
        assert_eq!(
            t.render(&conversation(None, "q"), true).unwrap(),
            "<bos>q<eos>"
        );
        std::fs::write(dir.join("tokenizer_config.json"), "{}").unwrap();
        assert!(ChatTemplate::from_model_dir(dir).unwrap().is_none());
    }

    // The real templates (SmolLM2, Qwen2.5, Gemma-3): tests/chat_templates.rs; the render
    // limits: tests/chat_limits.rs.
}
