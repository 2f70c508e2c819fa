//! The tokens: CTranslate2's `vocabulary.txt` → the byte strings ggml stores.
//!
//! Why it exists: the vocabulary file writes each token through GPT-2's
//! byte-to-unicode table; whisper.cpp wants the raw bytes, and only the
//! ordinary tokens (before `<|endoftext|>`).

use std::path::Path;

use super::{ConvertError, END_OF_TEXT};

// ---------------------------------------------------------------------------
// GPT-2 byte-level tokens
// ---------------------------------------------------------------------------

/// Whether GPT-2's table maps byte `b` to the character with the same code.
pub(super) const fn gpt2_printable(b: u32) -> bool {
    (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)
}

/// The 68 bytes GPT-2 maps to U+0100.., in that order.
pub(super) const GPT2_SHIFTED: [u8; 68] = {
    let mut table = [0u8; 68];
    let mut n = 0;
    let mut b = 0u32;
    while b < 256 {
        if !gpt2_printable(b) {
            table[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    table
};

/// GPT-2's `bytes_to_unicode`: the character standing for byte `b` in
/// byte-level BPE token strings.
pub fn gpt2_byte_to_char(b: u8) -> char {
    if gpt2_printable(u32::from(b)) {
        return char::from(b);
    }
    let index = GPT2_SHIFTED.iter().position(|&x| x == b).unwrap_or(0);
    char::from_u32(256 + index as u32).unwrap_or('\u{100}')
}

/// The inverse of [`gpt2_byte_to_char`]; `None` for characters outside the
/// table.
pub fn gpt2_char_to_byte(c: char) -> Option<u8> {
    let u = u32::from(c);
    if gpt2_printable(u) {
        return Some(u as u8);
    }
    if (256..256 + GPT2_SHIFTED.len() as u32).contains(&u) {
        return Some(GPT2_SHIFTED[(u - 256) as usize]);
    }
    None
}

/// Decodes a GPT-2 byte-level token string (`"Ġhello"`) to its bytes
/// (`b" hello"`). Err: the first character outside the table.
pub fn gpt2_token_bytes(token: &str) -> Result<Vec<u8>, char> {
    token
        .chars()
        .map(|c| gpt2_char_to_byte(c).ok_or(c))
        .collect()
}

// ---------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------

/// Reads `vocabulary.txt` (one GPT-2 byte-level token per line, ids in line
/// order) and returns the ordinary tokens' bytes, those before
/// `<|endoftext|>`.
pub(super) fn read_vocabulary(path: &Path, n_vocab: i32) -> Result<Vec<Vec<u8>>, ConvertError> {
    let bad = |reason: String| ConvertError::Vocabulary {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|source| ConvertError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        bad(format!(
            "not UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let body = text.strip_suffix('\n').unwrap_or(&text);
    let lines: Vec<&str> = body.split('\n').collect();
    if lines.len() != n_vocab as usize {
        return Err(bad(format!(
            "{} tokens, but the model has {n_vocab}",
            lines.len()
        )));
    }
    let end = lines
        .iter()
        .position(|l| *l == END_OF_TEXT)
        .ok_or_else(|| {
            bad(format!(
                "no '{END_OF_TEXT}' token: not a whisper vocabulary"
            ))
        })?;
    lines[..end]
        .iter()
        .enumerate()
        .map(|(i, token)| {
            gpt2_token_bytes(token).map_err(|c| {
                bad(format!(
                    "line {}: character U+{:04X} is not a GPT-2 byte-level character",
                    i + 1,
                    u32::from(c)
                ))
            })
        })
        .collect()
}
