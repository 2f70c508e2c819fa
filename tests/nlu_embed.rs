//! The sentence embedder against its independent reference
//! (`scripts/nlu-reference.py`, which wrote `tests/data/nlu/reference.json`
//! with Hugging Face's tokenizer and a numpy forward): ids exactly,
//! embeddings to 1e-4; plus the typed errors for missing and damaged model
//! files.
//!
//! The tests that need the installed model skip with a printed reason when
//! it is absent, and fail under CI (`support/skip.rs`).

#[path = "support/skip.rs"]
mod skip;

use std::sync::OnceLock;

use serde_json::Value;
use voicegate::nlu::embed::{DIM, EmbedError, Embedder, cosine};
use voicegate::stt::model::{self, ModelError};

const TOLERANCE: f32 = 1e-4;

fn reference() -> Value {
    let text = std::fs::read_to_string("tests/data/nlu/reference.json").expect("the fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

/// The reference's sentences, in order.
fn sentences(reference: &Value) -> Vec<String> {
    reference["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| c["text"].as_str().expect("text").to_string())
        .collect()
}

/// The installed embedder, loaded once for all tests; `None` (after
/// [`skip::missing`]) when it is not installed.
fn embedder() -> Option<&'static Embedder> {
    static LOADED: OnceLock<Result<Embedder, String>> = OnceLock::new();
    match LOADED.get_or_init(|| Embedder::locate().map_err(|e| e.to_string())) {
        Ok(e) => Some(e),
        Err(reason) => {
            skip::missing(format!("no sentence embedder: {reason}"));
            None
        }
    }
}

#[test]
fn token_ids_match_the_reference() {
    let Some(embedder) = embedder() else { return };
    let reference = reference();
    for case in reference["cases"].as_array().expect("cases") {
        let text = case["text"].as_str().expect("text");
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).expect("ids");
        assert_eq!(embedder.tokenizer().encode(text), want, "{text:?}");
    }
}

#[test]
fn embeddings_match_the_reference() {
    let Some(embedder) = embedder() else { return };
    let reference = reference();
    let texts = sentences(&reference);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    // One batch: sentences of 7 to 128 tokens, so most rows are padded.
    let vectors = embedder.embed(&refs).expect("embed");
    assert_eq!(vectors.len(), texts.len());
    let mut largest = 0f32;
    for (case, v) in reference["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .zip(&vectors)
    {
        let want: Vec<f32> = serde_json::from_value(case["first16"].clone()).expect("first16");
        for (i, (got, want)) in v.iter().zip(&want).enumerate() {
            largest = largest.max((got - want).abs());
            assert!(
                (got - want).abs() < TOLERANCE,
                "{:?} dim {i}: {got} vs {want}",
                case["text"]
            );
        }
        assert_eq!(v.len(), DIM);
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    eprintln!("largest difference from the reference: {largest:.2e}");
    for pair in reference["cosines"].as_array().expect("cosines") {
        let (a, b) = (
            pair["a"].as_u64().unwrap() as usize,
            pair["b"].as_u64().unwrap() as usize,
        );
        let want = pair["cos"].as_f64().unwrap() as f32;
        let got = cosine(&vectors[a], &vectors[b]);
        assert!(
            (got - want).abs() < TOLERANCE,
            "cos({:?}, {:?}) = {got}, reference {want}",
            texts[a],
            texts[b]
        );
    }
}

#[test]
fn a_sentence_embeds_the_same_alone_or_in_a_batch() {
    let Some(embedder) = embedder() else { return };
    let long = "please remind me to water the plants every other evening";
    let batch = embedder.embed(&["hi", long, ""]).expect("batch");
    for (i, text) in ["hi", long, ""].iter().enumerate() {
        let alone = embedder.embed(&[text]).expect("alone");
        let diff = alone[0]
            .iter()
            .zip(&batch[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "{text:?}: {diff}");
    }
    assert!(embedder.embed(&[]).expect("nothing").is_empty());
}

#[test]
fn paraphrases_are_closer_than_other_requests() {
    let Some(embedder) = embedder() else { return };
    let v = embedder
        .embed(&[
            "set a timer for ten minutes",
            "start a 10 minute countdown",
            "what's the weather in Paris",
        ])
        .expect("embed");
    let (same, other) = (cosine(&v[0], &v[1]), cosine(&v[0], &v[2]));
    assert!(same > other + 0.3, "paraphrase {same}, other {other}");
}

/// A tokenizer.json small enough to write in a test.
const TINY_TOKENIZER: &str = r#"{
  "normalizer": {"type": "BertNormalizer", "lowercase": true},
  "pre_tokenizer": {"type": "BertPreTokenizer"},
  "model": {"type": "WordPiece", "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}}
}"#;

#[test]
fn missing_and_damaged_files_are_typed_errors_naming_the_fix() {
    let fix = "run `voicegate models install all-minilm-l6-v2";
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Embedder::load(dir.path())
        .err()
        .expect("an empty directory");
    assert!(matches!(err, EmbedError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains(fix), "{err}");
    assert!(err.to_string().contains("tokenizer.json"), "{err}");

    std::fs::write(dir.path().join("tokenizer.json"), TINY_TOKENIZER).expect("write");
    let err = Embedder::load(dir.path()).err().expect("no weights");
    assert!(matches!(err, EmbedError::Missing { .. }), "{err:?}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    std::fs::write(
        dir.path().join("model.safetensors"),
        b"\x10\0\0\0\0\0\0\0{}",
    )
    .expect("write");
    let err = Embedder::load(dir.path()).err().expect("junk weights");
    assert!(matches!(err, EmbedError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(fix), "{err}");

    std::fs::write(dir.path().join("tokenizer.json"), "{\"model\": 3").expect("write");
    let err = Embedder::load(dir.path()).err().expect("junk tokenizer");
    assert!(matches!(err, EmbedError::Corrupt { .. }), "{err:?}");

    // Through the models directory: not installed is the install command.
    let err = model::resolve_embedder(model::EMBEDDER, dir.path()).unwrap_err();
    assert!(
        matches!(err, ModelError::EmbedderNotInstalled { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(fix), "{err}");
}
