//! BERT's uncased WordPiece tokenizer, read from a Hugging Face
//! `tokenizer.json`: text → the token ids all-MiniLM-L6-v2 was trained on.
//!
//! Why it exists: the embedder is only as good as its ids, and they must be
//! exactly the reference's (`tokenizers`, checked by
//! `tests/data/nlu/reference.json`). The `tokenizers` crate would give them
//! too, but pulls in a heavy C build; BERT's recipe is small:
//!
//! 1. normalise: drop NUL, U+FFFD and control/format/private-use characters,
//!    turn whitespace into spaces, put spaces around CJK ideographs, strip
//!    accents (NFD, drop non-spacing marks), lowercase, char by char;
//! 2. split on whitespace, and around each punctuation character (ASCII
//!    punctuation, which includes `$`, `+`, `^`…, or Unicode P*);
//! 3. each word → the longest vocabulary entry that starts it, then the
//!    longest `##`-prefixed entry that continues it, and so on; a word with
//!    no such split, or over 100 characters, is one `[UNK]`;
//! 4. `[CLS] … [SEP]`, cut to the model's 128 tokens.
//!
//! Which steps run comes from the file's `normalizer`; a file that asks
//! for anything else (another model type, normaliser or pre-tokeniser) is
//! refused rather than tokenised differently.

use std::collections::HashMap;

use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use super::unicode_tables::{FORMAT, NONSPACING_MARK, PUNCTUATION};

/// The sequence length the model's `tokenizer.json` truncates to when it
/// does not say (all-MiniLM-L6-v2's says 128).
pub const DEFAULT_MAX_TOKENS: usize = 128;

/// What is wrong with a `tokenizer.json`.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// Not JSON.
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not a BERT WordPiece tokenizer we can reproduce.
    #[error("{0}")]
    Unsupported(String),
}

/// A BERT WordPiece tokenizer (see the module documentation).
#[derive(Debug, Clone)]
pub struct Tokenizer {
    vocab: HashMap<String, u32>,
    prefix: String,
    max_word_chars: usize,
    unk: u32,
    cls: u32,
    sep: u32,
    max_tokens: usize,
    clean_text: bool,
    chinese_chars: bool,
    strip_accents: bool,
    lowercase: bool,
}

fn unsupported(what: impl Into<String>) -> TokenizerError {
    TokenizerError::Unsupported(what.into())
}

/// A boolean field of the normaliser; `null` or absent is `None`.
fn flag(normalizer: &Value, key: &str) -> Result<Option<bool>, TokenizerError> {
    match normalizer.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(unsupported(format!("normalizer.{key} is {other}"))),
    }
}

impl Tokenizer {
    /// Reads a Hugging Face `tokenizer.json`.
    pub fn from_json(text: &str) -> Result<Self, TokenizerError> {
        let root: Value = serde_json::from_str(text)?;
        let model = &root["model"];
        if model["type"] != "WordPiece" {
            return Err(unsupported(format!(
                "model.type is {}, not WordPiece",
                model["type"]
            )));
        }
        let vocab_json = model["vocab"]
            .as_object()
            .ok_or_else(|| unsupported("model.vocab is not an object"))?;
        let mut vocab = HashMap::with_capacity(vocab_json.len());
        for (piece, id) in vocab_json {
            let id = id
                .as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| unsupported(format!("vocab id of {piece:?} is {id}")))?;
            vocab.insert(piece.clone(), id);
        }
        let id_of = |piece: &str| {
            vocab
                .get(piece)
                .copied()
                .ok_or_else(|| unsupported(format!("the vocabulary has no {piece}")))
        };
        let unk_token = model["unk_token"].as_str().unwrap_or("[UNK]");
        let (unk, cls, sep) = (id_of(unk_token)?, id_of("[CLS]")?, id_of("[SEP]")?);
        let prefix = model["continuing_subword_prefix"]
            .as_str()
            .unwrap_or("##")
            .to_string();
        let max_word_chars = model["max_input_chars_per_word"].as_u64().unwrap_or(100) as usize;

        let normalizer = &root["normalizer"];
        if normalizer["type"] != "BertNormalizer" {
            return Err(unsupported(format!(
                "normalizer.type is {}, not BertNormalizer",
                normalizer["type"]
            )));
        }
        let lowercase = flag(normalizer, "lowercase")?.unwrap_or(true);
        let clean_text = flag(normalizer, "clean_text")?.unwrap_or(true);
        let chinese_chars = flag(normalizer, "handle_chinese_chars")?.unwrap_or(true);
        // BERT's rule: unset, accents are stripped exactly when lowercasing.
        let strip_accents = flag(normalizer, "strip_accents")?.unwrap_or(lowercase);
        if root["pre_tokenizer"]["type"] != "BertPreTokenizer" {
            return Err(unsupported(format!(
                "pre_tokenizer.type is {}, not BertPreTokenizer",
                root["pre_tokenizer"]["type"]
            )));
        }
        let max_tokens = root["truncation"]["max_length"]
            .as_u64()
            .map_or(DEFAULT_MAX_TOKENS, |n| n as usize);
        if max_tokens < 2 {
            return Err(unsupported(format!(
                "truncation.max_length is {max_tokens}"
            )));
        }
        Ok(Tokenizer {
            vocab,
            prefix,
            max_word_chars,
            unk,
            cls,
            sep,
            max_tokens,
            clean_text,
            chinese_chars,
            strip_accents,
            lowercase,
        })
    }

    /// The most ids [`encode`](Self::encode) returns, `[CLS]` and `[SEP]`
    /// included.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// One more than the largest id it can give (the rows an embedding
    /// table needs).
    pub fn vocab_size(&self) -> usize {
        self.vocab.values().max().map_or(0, |&id| id as usize + 1)
    }

    /// `text` → `[CLS] pieces… [SEP]`, at most [`max_tokens`](Self::max_tokens).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let normalized = self.normalize(text);
        let room = self.max_tokens - 2;
        let mut ids = Vec::with_capacity(16);
        ids.push(self.cls);
        for word in pre_tokenize(&normalized) {
            if ids.len() > room {
                break;
            }
            self.word_pieces(word, &mut ids);
        }
        ids.truncate(room + 1);
        ids.push(self.sep);
        ids
    }

    /// Step 1 of the module documentation.
    fn normalize(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len() + 8);
        for c in text.chars() {
            if self.clean_text {
                if c == '\0' || c == '\u{FFFD}' || is_control(c) {
                    continue;
                }
                if c.is_whitespace() {
                    out.push(' ');
                    continue;
                }
            }
            if self.chinese_chars && is_cjk_ideograph(c) {
                out.push(' ');
                out.push(c);
                out.push(' ');
            } else {
                out.push(c);
            }
        }
        if self.strip_accents {
            out = out
                .nfd()
                .filter(|&c| !in_table(NONSPACING_MARK, c))
                .collect();
        }
        if self.lowercase {
            // Char by char, as the reference does (no final-sigma rule).
            out = out.chars().flat_map(char::to_lowercase).collect();
        }
        out
    }

    /// Step 3 of the module documentation, appending to `ids`.
    fn word_pieces(&self, word: &str, ids: &mut Vec<u32>) {
        if word.chars().count() > self.max_word_chars {
            ids.push(self.unk);
            return;
        }
        let first = ids.len();
        let mut piece = String::with_capacity(word.len() + self.prefix.len());
        let mut start = 0;
        while start < word.len() {
            // Longest match first: shrink the end one character at a time.
            let mut end = word.len();
            let found = loop {
                piece.clear();
                if start > 0 {
                    piece.push_str(&self.prefix);
                }
                piece.push_str(&word[start..end]);
                if let Some(&id) = self.vocab.get(&piece) {
                    break Some(id);
                }
                match word[start..end].char_indices().next_back() {
                    Some((i, _)) if i > 0 => end = start + i,
                    _ => break None,
                }
            };
            match found {
                Some(id) => ids.push(id),
                None => {
                    // No split of the whole word: it is one unknown token.
                    ids.truncate(first);
                    ids.push(self.unk);
                    return;
                }
            }
            start = end;
        }
    }
}

/// Step 2 of the module documentation: words, with each punctuation
/// character a word of its own.
fn pre_tokenize(text: &str) -> impl Iterator<Item = &str> {
    text.split(char::is_whitespace).flat_map(|chunk| {
        let mut pieces = Vec::new();
        let mut start = 0;
        for (i, c) in chunk.char_indices() {
            if is_punctuation(c) {
                if start < i {
                    pieces.push(&chunk[start..i]);
                }
                pieces.push(&chunk[i..i + c.len_utf8()]);
                start = i + c.len_utf8();
            }
        }
        if start < chunk.len() {
            pieces.push(&chunk[start..]);
        }
        pieces
    })
}

fn in_table(table: &[(u32, u32)], c: char) -> bool {
    let c = c as u32;
    table
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// BERT's "control": categories Cc, Cf and Co, except tab, newline and
/// carriage return (whitespace to BERT). Unassigned code points (Cn), which
/// the reference also drops, are kept: no table of them here.
fn is_control(c: char) -> bool {
    if matches!(c, '\t' | '\n' | '\r') {
        return false;
    }
    c.is_control()
        || in_table(FORMAT, c)
        || matches!(c as u32, 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD)
}

fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation() || in_table(PUNCTUATION, c)
}

/// The CJK Unified Ideographs blocks BERT treats as one word each (not
/// kana or hangul: they are written with spaces).
fn is_cjk_ideograph(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF
        | 0x3400..=0x4DBF
        | 0x20000..=0x2A6DF
        | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F
        | 0x2B820..=0x2CEAF
        | 0xF900..=0xFAFF
        | 0x2F800..=0x2FA1F)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny tokenizer.json (with the pre-tokenizer `pre`): enough
    /// vocabulary to see each rule.
    fn tiny_json(pre: &str) -> String {
        let vocab = [
            "[PAD]", "[UNK]", "[CLS]", "[SEP]", "un", "##aff", "##able", "cafe", "!", ",", "$",
            "3", ".", "99", "東", "京", "a", "##b",
        ];
        let vocab: serde_json::Map<String, Value> = vocab
            .iter()
            .enumerate()
            .map(|(i, p)| (p.to_string(), Value::from(i)))
            .collect();
        let json = serde_json::json!({
            "truncation": {"max_length": 8},
            "normalizer": {"type": "BertNormalizer", "clean_text": true,
                "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
            "pre_tokenizer": {"type": pre},
            "model": {"type": "WordPiece", "unk_token": "[UNK]",
                "continuing_subword_prefix": "##", "max_input_chars_per_word": 10,
                "vocab": vocab},
        });
        json.to_string()
    }

    fn tiny() -> Tokenizer {
        Tokenizer::from_json(&tiny_json("BertPreTokenizer")).unwrap()
    }

    #[test]
    fn the_rules() {
        let t = tiny();
        // [CLS]=2 [SEP]=3 [UNK]=1
        assert_eq!(t.encode("Unaffable"), [2, 4, 5, 6, 3]);
        assert_eq!(t.encode("CAFÉ!"), [2, 7, 8, 3]);
        assert_eq!(t.encode("$3.99,"), [2, 10, 11, 12, 13, 9, 3]);
        assert_eq!(t.encode("東京"), [2, 14, 15, 3]);
        // No split of the whole word: one [UNK], not "un" + [UNK].
        assert_eq!(t.encode("unx"), [2, 1, 3]);
        // Over max_input_chars_per_word (10 here).
        assert_eq!(t.encode("abbbbbbbbbb ab"), [2, 1, 16, 17, 3]);
        // Control and zero-width characters vanish; tabs separate.
        assert_eq!(t.encode("a\u{200B}b\u{0}\tcafe"), [2, 16, 17, 7, 3]);
        assert_eq!(t.encode(""), [2, 3]);
        // Cut to max_length (8) with [SEP] kept.
        assert_eq!(
            t.encode("a a a a a a a a a a"),
            [2, 16, 16, 16, 16, 16, 16, 3]
        );
    }

    #[test]
    fn refuses_what_it_cannot_reproduce() {
        let err = Tokenizer::from_json(
            &serde_json::to_string(&serde_json::json!({
                "model": {"type": "BPE", "vocab": {}}
            }))
            .unwrap(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("not WordPiece"), "{err}");
        let err = Tokenizer::from_json(&tiny_json("Whitespace")).unwrap_err();
        assert!(err.to_string().contains("not BertPreTokenizer"), "{err}");
        assert!(Tokenizer::from_json("{").is_err());
    }
}
