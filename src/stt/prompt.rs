//! Whisper's initial prompts, made from the loaded intents: the vocabulary
//! prompt (free decoding, or `--prompt`), and the same prompt as the daemon
//! hears commands, after the wake word. Pure text in, text out.

use crate::intent::IntentSet;

/// The vocabulary prompt: one sample sentence per intent, in the intents'
/// own words, so whisper leans toward what the intents understand.
pub fn vocabulary_prompt(intents: &IntentSet) -> String {
    let mut sentences: Vec<String> = Vec::new();
    for intent in &intents.definitions().intents {
        if matches!(
            intent.action.as_ref().map(|a| a.kind.as_str()),
            Some("gate.confirm" | "gate.decline")
        ) {
            continue;
        }
        if let Some((text, _)) = intent.tests.first().and_then(|t| t.sentences.first()) {
            let mut s = text.trim().to_string();
            if let Some(first) = s.get(..1) {
                s = first.to_uppercase() + &s[1..];
            }
            sentences.push(s);
        }
    }
    // (Measured: adding the closed lists' values made short replies worse —
    // "milk, no." for "No." — so the prompt is sentences only.)
    let mut prompt = sentences.join(". ");
    prompt.push('.');
    // whisper keeps at most 224 prompt tokens (the last ones); stay inside.
    const MAX_CHARS: usize = 800;
    if prompt.len() > MAX_CHARS {
        // Keep the end (the sentences); drop words from the front.
        let mut start = prompt.len() - MAX_CHARS;
        while !prompt.is_char_boundary(start) {
            start += 1;
        }
        let start = prompt[start..]
            .find(", ")
            .map(|i| start + i + 2)
            .unwrap_or(start);
        prompt = prompt[start..].to_string();
    }
    prompt
}

/// How whisper writes a phrase at the start of a transcript: a leading
/// space, the first letter capitalised ("jarvis" → " Jarvis").
pub fn whisper_spelling(phrase: &str) -> String {
    let phrase = phrase.trim();
    let mut chars = phrase.chars();
    match chars.next() {
        Some(first) => format!(" {}{}", first.to_uppercase(), chars.as_str()),
        None => String::new(),
    }
}

/// The vocabulary prompt as the daemon hears commands: each sentence after
/// the wake word ("Jarvis, play some jazz."), since with a wake word every
/// command's audio starts with it. Measured on the piper fixtures: with the
/// plain prompt whisper wrote "Jarvis. Place some jazz."; with this one the
/// command comes out right.
pub fn wake_prompt(prompt: &str, phrase: &str) -> String {
    if prompt.is_empty() {
        return String::new();
    }
    let wake = whisper_spelling(phrase);
    let wake = wake.trim();
    prompt
        .split(". ")
        .map(|sentence| {
            let mut chars = sentence.chars();
            let rest: String = match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => String::new(),
            };
            format!("{wake}, {rest}")
        })
        .collect::<Vec<_>>()
        .join(". ")
}
