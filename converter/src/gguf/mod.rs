//! GGUF import: a GGUF file becomes a Hugging Face-style folder (`config.json`,
//! `model.safetensors`, `tokenizer.json`).
