//! Chat-template rendering with a hostile template: must end (fuel), never overflow the stack
//! (depth limit) and never produce unbounded output (size cap).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tlite_text::chat::{ChatMessage, ChatTemplate};

fuzz_target!(|data: &[u8]| {
    let t = ChatTemplate {
        source: String::from_utf8_lossy(data).into_owned(),
        bos_token: "<s>".into(),
        eos_token: "</s>".into(),
    };
    let messages = [
        ChatMessage::new("system", "You are helpful."),
        ChatMessage::new("user", "Hello"),
        ChatMessage::new("assistant", "Hi!"),
        ChatMessage::new("user", "What is 2+2?"),
    ];
    let _ = t.render(&messages, true);
});
