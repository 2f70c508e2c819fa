//! Writing rows as CSV or JSON.

use std::io::{self, Write};

use super::AuditRow;

/// The CSV columns, in the canonical order.
pub(crate) const CSV_HEADER: [&str; 15] = [
    "id",
    "time",
    "action_id",
    "intent",
    "slots",
    "transcript",
    "reply_transcript",
    "confidence",
    "wake_score",
    "amount",
    "currency",
    "outcome",
    "detail",
    "prev_hash",
    "hash",
];

/// RFC 4180 CSV: a header row, CRLF after every record, a field quoted (with
/// `"` doubled) when it holds a comma, quote, CR or LF. NULL is an empty
/// field; reals use the shortest decimal that reads back exactly.
///
/// Values are written as they are: a spreadsheet may treat a transcript
/// starting with `=` as a formula, so open exports as text.
pub(crate) fn write_csv(rows: &[AuditRow], out: &mut dyn Write) -> io::Result<()> {
    write_record(out, CSV_HEADER.iter().map(|s| s.to_string()))?;
    for row in rows {
        let e = &row.event;
        let slots = serde_json::to_string(&e.slots).map_err(io::Error::other)?;
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let real = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        let fields = [
            row.id.to_string(),
            super::format_time(&row.time),
            e.action_id.clone(),
            e.intent.clone(),
            slots,
            e.transcript.clone(),
            opt(&e.reply_transcript),
            real(e.confidence),
            real(e.wake_score),
            opt(&e.amount),
            opt(&e.currency),
            e.outcome.as_str().to_string(),
            opt(&e.detail),
            row.prev_hash.clone(),
            row.hash.clone(),
        ];
        write_record(out, fields.into_iter())?;
    }
    out.flush()
}

fn write_record(out: &mut dyn Write, fields: impl Iterator<Item = String>) -> io::Result<()> {
    let mut line = String::new();
    for (i, field) in fields.enumerate() {
        if i > 0 {
            line.push(',');
        }
        line.push_str(&csv_field(&field));
    }
    line.push_str("\r\n");
    out.write_all(line.as_bytes())
}

/// One field, quoted if needed.
pub(crate) fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// A JSON array of [`AuditRow::to_json`] objects, one per line.
pub(crate) fn write_json(rows: &[AuditRow], out: &mut dyn Write) -> io::Result<()> {
    if rows.is_empty() {
        out.write_all(b"[]\n")?;
        return out.flush();
    }
    out.write_all(b"[\n")?;
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            out.write_all(b",\n")?;
        }
        serde_json::to_writer(&mut *out, &row.to_json()).map_err(io::Error::other)?;
    }
    out.write_all(b"\n]\n")?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_when_needed() {
        let cases = [
            ("plain", "plain"),
            ("", ""),
            ("a,b", "\"a,b\""),
            ("say \"hi\"", "\"say \"\"hi\"\"\""),
            ("two\nlines", "\"two\nlines\""),
            ("cr\r", "\"cr\r\""),
            ("'); DROP TABLE audit; --", "'); DROP TABLE audit; --"),
        ];
        for (input, expected) in cases {
            assert_eq!(csv_field(input), expected, "{input:?}");
        }
    }
}
