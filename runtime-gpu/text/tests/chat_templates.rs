//! The real chat templates (SmolLM2's and Qwen2.5's from their fetched GGUF fixtures, Gemma-3's
//! inline) render exactly, and a 10-message conversation costs at most 1/100 of the fuel limit
//! (tests/chat_limits.rs covers the hostile ones). Reading a GGUF needs the importer, a
//! dev-dependency only: tlite-text itself does not link it. The tests live in `mod chat`, so
//! `cargo test -p tlite-text chat` runs them.

mod chat {
    use tlite_gguf::reader::GgufFile;
    use tlite_text::chat::{ChatMessage, ChatTemplate, FUEL_LIMIT, RenderLimits, conversation};

    // --- The real templates ---------------------------------------------------------------------

    /// Gemma-3's chat template (the `chat_template` of google/gemma-3-*-it's tokenizer_config.json).
    /// The fetched Gemma-3 fixture is the base model, whose GGUF has no template.
    const GEMMA3_TEMPLATE: &str = "{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = \"\" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = \"model\" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception(\"Invalid content type\") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
";

    /// The chat template of a fetched fixture model, read from its GGUF (fixtures/fetch.sh). A
    /// missing fixture fails the test where it is required
    /// (`tlite_gguf::fixtures::required`); otherwise the test says it skipped.
    fn fixture(name: &str) -> Option<ChatTemplate> {
        let path = tlite_gguf::fixtures::gguf_or_skip(name, "chat template")?;
        let g = GgufFile::open(&path).unwrap();
        let tokens = g
            .strings("tokenizer.ggml.tokens")
            .unwrap()
            .unwrap_or_default();
        let token = |key: &str| {
            g.u64(key)
                .unwrap()
                .and_then(|i| tokens.get(i as usize))
                .map_or_else(String::new, |t| t.to_string())
        };
        let source = g
            .str("tokenizer.chat_template")
            .unwrap()
            .unwrap_or_else(|| panic!("{} has no chat template", path.display()));
        Some(ChatTemplate {
            source: source.to_owned(),
            bos_token: token("tokenizer.ggml.bos_token_id"),
            eos_token: token("tokenizer.ggml.eos_token_id"),
        })
    }

    fn gemma3() -> ChatTemplate {
        ChatTemplate {
            source: GEMMA3_TEMPLATE.into(),
            bos_token: "<bos>".into(),
            eos_token: "<eos>".into(),
        }
    }

    /// A conversation of `turns` user/assistant messages, after a system message if `system`.
    fn long_conversation(turns: usize, system: bool) -> Vec<ChatMessage> {
        let mut m = conversation(system.then_some("Be brief."), "What is 2+2?");
        for i in 1..turns {
            let role = if i % 2 == 1 { "assistant" } else { "user" };
            m.push(ChatMessage::new(role, &format!("message {i}")));
        }
        m
    }

    /// The fuel a 10-message conversation costs is at most 1/100 of the limit.
    fn assert_fuel_margin(name: &str, t: &ChatTemplate, system: bool) {
        let msgs = long_conversation(10, system);
        let r = t
            .render_limited(&msgs, true, &RenderLimits::DEFAULT)
            .unwrap();
        eprintln!(
            "{name}: a 10-message conversation used {} of {FUEL_LIMIT} fuel",
            r.fuel_used
        );
        assert!(
            r.fuel_used > 0 && r.fuel_used * 100 <= FUEL_LIMIT,
            "{name}: {}",
            r.fuel_used
        );
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
        assert_fuel_margin("SmolLM2", &t, true);
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
        assert_fuel_margin("Qwen2.5", &t, true);
    }

    #[test]
    fn renders_gemma3s_template() {
        let t = gemma3();
        assert_eq!(
            t.render(&conversation(None, "What is 2+2?"), true).unwrap(),
            "<bos><start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(
            t.render(&conversation(Some("Answer in French."), " Hi "), false)
                .unwrap(),
            "<bos><start_of_turn>user\nAnswer in French.\n\nHi<end_of_turn>\n"
        );
        let e = t
            .render(&[ChatMessage::new("assistant", "x")], true)
            .unwrap_err();
        assert!(e.to_string().contains("roles must alternate"), "{e}");
        // Gemma-3 has no system turn: the system message joins the first user message.
        assert_fuel_margin("Gemma-3", &t, false);
    }
}
