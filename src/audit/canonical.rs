//! The canonical serialisation of a row and its hash.
//!
//! This is the one place that decides what a row's hash covers; the format is
//! described in the [module header](super) and pinned by a golden test below,
//! so that it can never drift silently (a drift would make every existing log
//! look tampered with).

use sha2::{Digest, Sha256};

/// The previous hash of row 1: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// First element of every canonical array; names the format version.
pub(crate) const FORMAT_TAG: &str = "voicegate-audit/1";

/// A row's content exactly as stored (text as text, reals as `f64`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RowContent {
    pub id: i64,
    pub time: String,
    pub action_id: String,
    pub intent: String,
    pub slots: String,
    pub transcript: String,
    pub reply_transcript: Option<String>,
    pub confidence: Option<f64>,
    pub wake_score: Option<f64>,
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
    pub prev_hash: String,
}

impl RowContent {
    /// The canonical form: a compact JSON array with a fixed field order.
    pub(crate) fn canonical(&self) -> String {
        let mut out = String::with_capacity(256 + self.transcript.len() + self.slots.len());
        out.push('[');
        push_str(&mut out, FORMAT_TAG);
        out.push(',');
        out.push_str(&self.id.to_string());
        for text in [
            &self.time,
            &self.action_id,
            &self.intent,
            &self.slots,
            &self.transcript,
        ] {
            out.push(',');
            push_str(&mut out, text);
        }
        out.push(',');
        push_opt_str(&mut out, self.reply_transcript.as_deref());
        out.push(',');
        push_opt_real(&mut out, self.confidence);
        out.push(',');
        push_opt_real(&mut out, self.wake_score);
        out.push(',');
        push_opt_str(&mut out, self.amount.as_deref());
        out.push(',');
        push_opt_str(&mut out, self.currency.as_deref());
        out.push(',');
        push_str(&mut out, &self.outcome);
        out.push(',');
        push_opt_str(&mut out, self.detail.as_deref());
        out.push(',');
        push_str(&mut out, &self.prev_hash);
        out.push(']');
        out
    }

    /// SHA-256 of the canonical form's UTF-8 bytes, as 64 lowercase hex digits.
    pub(crate) fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.canonical().as_bytes()))
    }
}

/// `null` or a JSON string.
fn push_opt_str(out: &mut String, value: Option<&str>) {
    match value {
        Some(s) => push_str(out, s),
        None => out.push_str("null"),
    }
}

/// `null` or a JSON string of the 16 lowercase hex digits of the IEEE 754
/// binary64 bit pattern (most significant first): exact, and the same in
/// every language, unlike decimal renderings of floats.
fn push_opt_real(out: &mut String, value: Option<f64>) {
    match value {
        Some(x) => push_str(out, &format!("{:016x}", x.to_bits())),
        None => out.push_str("null"),
    }
}

/// A JSON string: `"` and `\` escaped with a backslash; U+0008, U+0009,
/// U+000A, U+000C, U+000D as `\b \t \n \f \r`; every other character below
/// U+0020 as `\u00xx` (lowercase hex); everything else as raw UTF-8.
fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{0c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RowContent {
        RowContent {
            id: 1,
            time: "2025-01-31T09:00:00.000Z".into(),
            action_id: "a1".into(),
            intent: "OrderItem".into(),
            slots: r#"{"item":"oat milk","quantity":2}"#.into(),
            transcript: "order \"oat\" milk\n\u{1}é".into(),
            reply_transcript: None,
            confidence: Some(0.93),
            wake_score: None,
            amount: Some("12.50".into()),
            currency: Some("EUR".into()),
            outcome: "requested".into(),
            detail: Some("a\\b\t".into()),
            prev_hash: GENESIS_HASH.into(),
        }
    }

    #[test]
    fn canonical_form_is_pinned() {
        let expected = concat!(
            r#"["voicegate-audit/1",1,"2025-01-31T09:00:00.000Z","a1","OrderItem","#,
            r#""{\"item\":\"oat milk\",\"quantity\":2}","order \"oat\" milk\n\u0001é","#,
            r#"null,"3fedc28f5c28f5c3",null,"12.50","EUR","requested","a\\b\t","#,
            r#""0000000000000000000000000000000000000000000000000000000000000000"]"#
        );
        assert_eq!(sample().canonical(), expected);
    }

    #[test]
    fn hash_is_pinned() {
        // Computed independently with Python:
        // hashlib.sha256(json.dumps(arr, ensure_ascii=False,
        //     separators=(",", ":")).encode()).hexdigest()
        assert_eq!(
            sample().hash(),
            "9f83c1261f739cdfd3e80a3aebee0cfc6e11b29134116f8b70a2098bb23bf6bb"
        );
    }

    #[test]
    fn null_and_text_null_differ() {
        let mut a = sample();
        a.detail = None;
        let mut b = sample();
        b.detail = Some("null".into());
        let mut c = sample();
        c.detail = Some(String::new());
        assert_ne!(a.hash(), b.hash());
        assert_ne!(a.hash(), c.hash());
        assert_ne!(b.hash(), c.hash());
    }

    #[test]
    fn every_field_is_covered() {
        let base = sample();
        type Edit = Box<dyn Fn(&mut RowContent)>;
        let edits: Vec<(&str, Edit)> = vec![
            ("id", Box::new(|r| r.id = 2)),
            (
                "time",
                Box::new(|r| r.time = "2025-01-31T09:00:00.001Z".into()),
            ),
            ("action_id", Box::new(|r| r.action_id = "a2".into())),
            ("intent", Box::new(|r| r.intent = "Order".into())),
            ("slots", Box::new(|r| r.slots = "{}".into())),
            ("transcript", Box::new(|r| r.transcript = "x".into())),
            (
                "reply",
                Box::new(|r| r.reply_transcript = Some("ok".into())),
            ),
            ("confidence", Box::new(|r| r.confidence = Some(0.94))),
            ("wake", Box::new(|r| r.wake_score = Some(0.5))),
            ("amount", Box::new(|r| r.amount = Some("12.5".into()))),
            ("currency", Box::new(|r| r.currency = Some("USD".into()))),
            ("outcome", Box::new(|r| r.outcome = "executed".into())),
            ("detail", Box::new(|r| r.detail = None)),
            ("prev", Box::new(|r| r.prev_hash = "1".repeat(64))),
        ];
        for (name, edit) in edits {
            let mut row = base.clone();
            edit(&mut row);
            assert_ne!(row.hash(), base.hash(), "{name} is not covered by the hash");
        }
    }

    #[test]
    fn field_boundaries_are_unambiguous() {
        // Moving text between adjacent fields changes the hash.
        let mut a = sample();
        a.action_id = "a1\",\"x".into();
        a.intent = "y".into();
        let mut b = sample();
        b.action_id = "a1".into();
        b.intent = "x\",\"y".into();
        assert_ne!(a.canonical(), b.canonical());
    }
}
