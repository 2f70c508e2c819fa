//! What the commands print: the pipeline's [`Event`]s, as JSON lines
//! (`--json`) or readable lines. One place, so that `chat`, `say` and the
//! daemon print the same thing the same way.

use std::io::Write;

use crate::pipeline::Event;

/// Prints events: one JSON object per line with `--json`, else readable lines.
pub fn print_events(events: &[Event], json: bool, out: &mut dyn Write) -> std::io::Result<()> {
    for event in events {
        if json {
            writeln!(out, "{}", serde_json::to_string(event).unwrap_or_default())?;
            continue;
        }
        match event {
            Event::Intent {
                intent,
                risk,
                slots,
                by,
            } => {
                let how = match by {
                    crate::intent::By::Template => String::new(),
                    crate::intent::By::Fallback { score, .. } => {
                        format!(", by the fallback, score {score:.2}")
                    }
                };
                writeln!(out, "intent: {intent} (risk {}{how})", risk_word(*risk))?;
                for (k, v) in slots {
                    writeln!(out, "  {k} = {v}")?;
                }
            }
            Event::Response { text, .. } => writeln!(out, "> {text}")?,
            Event::ConfirmRequest {
                action_id,
                expires_in_secs,
                ..
            } => writeln!(
                out,
                "[waiting {expires_in_secs:.0}s for yes/no on {action_id}]"
            )?,
            Event::Executed { intent, risk, .. } => {
                writeln!(out, "[executed {intent}, risk {}]", risk_word(*risk))?
            }
            Event::Failed { intent, error, .. } => writeln!(out, "[failed {intent}: {error}]")?,
            Event::OutcomeUnknown { intent, error, .. } => {
                writeln!(out, "[outcome unknown for {intent}: {error}]")?
            }
            Event::Declined { intent, .. } => writeln!(out, "[declined {intent}]")?,
            Event::Expired { intent, .. } => writeln!(out, "[expired {intent}]")?,
            Event::Superseded { intent, .. } => writeln!(out, "[superseded {intent}]")?,
            Event::Refused { intent, .. } => writeln!(out, "[refused {intent}]")?,
            Event::Ask { intent, slot, .. } => writeln!(out, "[asking for {intent} {slot}]")?,
            Event::DidYouMean { intent, .. } => writeln!(out, "[did you mean {intent}?]")?,
            Event::NotUnderstood { .. } => writeln!(out, "[not understood]")?,
            Event::Wake { phrase, score } => writeln!(out, "[wake: {phrase}, score {score:.2}]")?,
            Event::Heard {
                text,
                confidence,
                backing,
            } => {
                let backed = backing.as_ref().map_or(String::new(), |b| {
                    format!(", backed by {:?}; alone {:.2}", b.text, b.own_confidence)
                });
                writeln!(out, "heard: {text:?} (confidence {confidence:.2}{backed})")?
            }
        }
    }
    out.flush()
}

/// "low" or "high".
pub fn risk_word(risk: crate::intent::Risk) -> &'static str {
    match risk {
        crate::intent::Risk::Low => "low",
        crate::intent::Risk::High => "high",
    }
}
