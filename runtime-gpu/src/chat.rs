//! Chat templates: the Jinja `chat_template` of a model's `tokenizer_config.json` (or its
//! `chat_template.jinja`) rendered with minijinja the way `transformers` does it — blocks trimmed
//! and left-stripped, loop controls, Python string methods (`.strip()`, `.startswith()`, ...),
//! `raise_exception`, and `messages` / `add_generation_prompt` / `bos_token` / `eos_token` in the
//! context.

use std::path::Path;

use minijinja::{Environment, Error as JinjaError, ErrorKind, Value, syntax::SyntaxConfig};
use serde_json::Value as Json;

use crate::{GpuError, Result};

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
                GpuError::ChatTemplate(format!("{} is not valid JSON: {e}", cfg_path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Json::Null,
            Err(e) => {
                return Err(GpuError::ChatTemplate(format!(
                    "reading {}: {e}",
                    cfg_path.display()
                )));
            }
        };
        let jinja_path = dir.join("chat_template.jinja");
        let source = match template_of(&cfg) {
            Some(s) => s,
            None if jinja_path.is_file() => std::fs::read_to_string(&jinja_path).map_err(|e| {
                GpuError::ChatTemplate(format!("reading {}: {e}", jinja_path.display()))
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
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| GpuError::ChatTemplate(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<Value, JinjaError> {
                Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
            },
        );
        let tmpl = env
            .template_from_str(&self.source)
            .map_err(|e| GpuError::ChatTemplate(format!("the template does not parse: {e:#}")))?;
        let ctx = minijinja::context! {
            messages => Value::from(messages.iter().map(ChatMessage::to_value).collect::<Vec<_>>()),
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        tmpl.render(ctx)
            .map_err(|e| GpuError::ChatTemplate(format!("rendering failed: {e:#}")))
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
            Err(GpuError::ChatTemplate(_))
        ));
    }

    #[test]
    fn reads_named_templates_and_token_objects() {
        let dir = std::env::temp_dir().join(format!("tlite-chat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cfg = serde_json::json!({
            "bos_token": {"content": "<bos>", "lstrip": false},
            "eos_token": "<eos>",
            "chat_template": [
                {"name": "tool_use", "template": "tools"},
                {"name": "default", "template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"}
            ]
        });
        std::fs::write(dir.join("tokenizer_config.json"), cfg.to_string()).unwrap();
        let t = ChatTemplate::from_model_dir(&dir).unwrap().unwrap();
        assert_eq!(
            t.render(&conversation(None, "q"), true).unwrap(),
            "<bos>q<eos>"
        );
        std::fs::write(dir.join("tokenizer_config.json"), "{}").unwrap();
        assert!(ChatTemplate::from_model_dir(&dir).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The template of a fetched fixture model, or `None` (said loudly) when it is missing.
    fn fixture(name: &str) -> Option<ChatTemplate> {
        let dir = tlite_converter::fixtures::cache_dir().join("hf").join(name);
        let t = ChatTemplate::from_model_dir(&dir).unwrap();
        if t.is_none() {
            eprintln!(
                "SKIPPED: {} has no chat template (fixture not fetched)",
                dir.display()
            );
        }
        t
    }

    #[test]
    fn renders_smollm2s_template() {
        let Some(t) = fixture("smollm2-135m-instruct") else {
            return;
        };
        let out = t.render(&conversation(None, "What is 2+2?"), true).unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = t
            .render(&conversation(Some("Answer in French."), "Hi"), false)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nAnswer in French.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        );
    }

    #[test]
    fn renders_qwen25s_template() {
        // Whitespace control (`{%-`), `tools` undefined, `loop.first`, attribute access.
        let Some(t) = fixture("qwen2.5-coder-0.5b-instruct") else {
            return;
        };
        let mut msgs = conversation(None, "What is 2+2?");
        msgs.push(ChatMessage::new("assistant", "4"));
        msgs.push(ChatMessage::new("user", "And 3+3?"));
        assert_eq!(
            t.render(&msgs, true).unwrap(),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
             <|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n\
             <|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n"
        );
    }
}
