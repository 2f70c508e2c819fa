//! What the gate says and hands on, filled from a match: the read-back of
//! an intent's `confirm:` template (every slot the action gets is heard),
//! and an action's parameters with their `{slot}` placeholders filled.

use serde_json::Value;

use super::Money;
use crate::intent::Match;

/// Fills `{slot}` placeholders in action parameters. A string that is just
/// one placeholder takes the slot's value as is (a number stays a number).
pub(super) fn fill_params(params: &Value, m: &Match) -> Value {
    match params {
        Value::String(s) => {
            let trimmed = s.trim();
            if let Some(name) = trimmed.strip_prefix('{').and_then(|r| r.strip_suffix('}'))
                && !name.contains(['{', '}'])
            {
                return m.slot(name).cloned().unwrap_or(Value::Null);
            }
            Value::String(fill_text(s, m))
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| fill_params(v, m)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill_params(v, m)))
                .collect(),
        ),
        other => other.clone(),
    }
}

pub(super) fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A time value as said back ("19:00" → "7 PM"); anything else as it is.
fn clock_text(v: &Value) -> String {
    let text = value_text(v);
    match chrono::NaiveTime::parse_from_str(&text, "%H:%M") {
        Ok(t) => crate::intent::builtins::speak_clock(t),
        Err(_) => text,
    }
}

/// Renders a read-back template: `{slot}` becomes the slot's value,
/// `{slot.text}` the words that were spoken for it ("packs" where the value
/// is "pack"), `{slot.clock}` a time on a 12-hour clock, and a `[...]` part is said only if every slot in it has a
/// value ("[with {milk}]" disappears when no milk was asked for). Spaces are
/// collapsed.
pub(super) fn fill_text(template: &str, m: &Match) -> String {
    let chars: Vec<char> = template.chars().collect();
    let ((text, _), _) = render(&chars, 0, m);
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    collapsed
        .replace(" ?", "?")
        .replace(" ,", ",")
        .replace(" .", ".")
}

/// Renders from `i` to the end or to the `]` closing the current part.
/// Returns the text and whether every slot it used had a value.
fn render(chars: &[char], mut i: usize, m: &Match) -> ((String, bool), usize) {
    let mut out = String::new();
    let mut complete = true;
    while i < chars.len() {
        match chars[i] {
            '[' => {
                let ((inner, inner_complete), next) = render(chars, i + 1, m);
                if inner_complete {
                    out.push_str(&inner);
                }
                i = next;
            }
            ']' => return ((out, complete), i + 1),
            '{' => match chars[i + 1..].iter().position(|&c| c == '}') {
                Some(len) => {
                    let name: String = chars[i + 1..i + 1 + len].iter().collect();
                    let name = name.trim();
                    // `{slot}` is the value; `{slot.text}` the words as
                    // spoken; `{slot.clock}` a time value ("19:00") on a
                    // 12-hour clock ("7 PM").
                    let text = if let Some(slot) = name.strip_suffix(".text") {
                        m.slots
                            .iter()
                            .find(|s| s.name == slot)
                            .map(|s| s.text.clone())
                    } else if let Some(slot) = name.strip_suffix(".clock") {
                        m.slot(slot).map(clock_text)
                    } else {
                        m.slot(name).map(value_text)
                    };
                    match text.filter(|v| !v.is_empty()) {
                        Some(v) => out.push_str(&v),
                        None => complete = false,
                    }
                    i += len + 2;
                }
                None => {
                    out.extend(&chars[i..]);
                    i = chars.len();
                }
            },
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    ((out, complete), i)
}

/// The slot names a `confirm:` template shows (`{item}`, `{unit.text}`).
fn template_slots(template: &str) -> Vec<&str> {
    template
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}'))
        .map(|(name, _)| name.split('.').next().unwrap_or(name).trim())
        .collect()
}

/// `template` filled with `m`'s slots, and the slots it does not show, as
/// "name value" ("party size 4"), so that they can be said after it.
pub(super) fn fill_showing_all(template: &str, m: &Match) -> (String, Vec<String>) {
    let shown = template_slots(template);
    let rest = m
        .slots
        .iter()
        .filter(|s| !shown.contains(&s.name.as_str()))
        .map(|s| format!("{} {}", s.name.replace('_', " "), value_text(&s.value)))
        .collect();
    (fill_text(template, m), rest)
}

/// The read-back: the intent's `confirm:` template with the slot values, or
/// a plain description when the intent has none.
pub(super) fn readback(confirm: Option<&str>, m: &Match, amount: Option<&Money>) -> String {
    let base = match confirm {
        Some(template) => {
            // Every slot the action will get is heard before "yes": those
            // the template does not show are listed after it.
            let (text, rest) = fill_showing_all(template, m);
            if rest.is_empty() {
                text
            } else {
                format!("{text} Also: {}.", rest.join(", "))
            }
        }
        None => {
            let slots: Vec<String> = m
                .slots
                .iter()
                .map(|s| format!("{} {}", s.name, value_text(&s.value)))
                .collect();
            if slots.is_empty() {
                format!("Run {}?", m.intent)
            } else {
                format!("Run {} with {}?", m.intent, slots.join(", "))
            }
        }
    };
    match amount {
        Some(a) => format!("{base} That's {}.", a.spoken()),
        None => base,
    }
}
