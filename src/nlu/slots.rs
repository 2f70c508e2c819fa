//! Slot values for a fallback reading, from the intent's own templates.
//!
//! When no template matches a whole sentence, the parts of the templates
//! that carry slots still say how a value is spoken: `{minutes}`,
//! `<timer_duration>`, `(at|in) {place}`. [`SlotFinder`] compiles those
//! parts of each intent ("probes") into a small intent set of their own and
//! matches them against every span of the input ("give me a **10 minute**
//! countdown"). Spans without a wildcard are chosen first: the set that
//! fills the most slots, in the most spans, over the most words; then a
//! probe with a wildcard may take a span only where it ends at the
//! end of the sentence or right before a value already found, so a wildcard
//! is bounded by the words around it. A probe that is a bare wildcard
//! would match anything and is never made.
//!
//! Pure: no I/O; the matcher does the work.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Map;

use crate::intent::load::{
    DataDef, Definitions, IntentDef, ListDef, NamedList, RuleDef, SentenceDef,
};
use crate::intent::template::Expr;
use crate::intent::{IntentSet, Slot, normalize};

/// The longest span (in words) a probe is tried on.
const MAX_SPAN: usize = 8;

/// Finds slot values for an intent in a sentence no template matched.
#[derive(Debug, Clone)]
pub struct SlotFinder {
    probes: IntentSet,
}

/// A probe's match on a span.
#[derive(Debug, Clone)]
struct Found {
    start: usize,
    end: usize,
    wildcard: bool,
    literal: u32,
    slots: Vec<Slot>,
}

impl SlotFinder {
    /// Compiles the slot-bearing parts of every intent's templates.
    pub fn new(defs: &Definitions) -> SlotFinder {
        let mut probe_defs = Definitions {
            files: defs.files.clone(),
            intents: Vec::new(),
            lists: defs.lists.clone(),
            rules: defs.rules.clone(),
            skip_words: defs.skip_words.clone(),
            not_understood: Vec::new(),
            out_of_scope: Vec::new(),
        };
        for intent in &defs.intents {
            if let Some(probe) = probe_intent(defs, intent) {
                probe_defs.intents.push(probe);
            }
        }
        SlotFinder {
            probes: IntentSet::from_definitions(probe_defs),
        }
    }

    /// The slot values of `intent` found in `text` (none if it has no
    /// slot-bearing templates).
    pub fn find(&self, intent: &str, text: &str) -> Vec<Slot> {
        let tokens = normalize::tokenize(text);
        let words: Vec<&str> = tokens.iter().map(|t| t.raw.as_str()).collect();
        let mut found = Vec::new();
        let none = Map::new();
        let best = |span: &str| {
            self.probes
                .matches(span, &none)
                .into_iter()
                .filter(|m| m.intent == intent && !m.slots.is_empty())
                .min_by_key(|m| (m.wildcards, std::cmp::Reverse(m.literal_chars)))
        };
        for start in 0..words.len() {
            for end in start + 1..=(start + MAX_SPAN).min(words.len()) {
                let span = words[start..end].join(" ");
                // "two lattes": a list value said in the plural, where no
                // template has the plural; only an exact value counts.
                let best = best(&span).or_else(|| {
                    let singular = singular(words[end - 1])?;
                    let span = words[start..end - 1]
                        .iter()
                        .copied()
                        .chain([singular])
                        .collect::<Vec<_>>()
                        .join(" ");
                    best(&span).filter(|m| m.wildcards == 0)
                });
                if let Some(m) = best {
                    found.push(Found {
                        start,
                        end,
                        wildcard: m.wildcards > 0,
                        literal: m.literal_chars,
                        slots: m.slots,
                    });
                }
            }
        }
        choose(found, &words)
    }
}

/// A word's singular, if it looks like an English plural ("lattes",
/// "cappuccinos"; not "glass", "bus", "this").
fn singular(word: &str) -> Option<&str> {
    let stem = word.strip_suffix('s')?;
    let plural = stem.chars().count() >= 3
        && !["s", "u", "i"].iter().any(|end| stem.ends_with(end))
        && stem.chars().all(char::is_alphabetic);
    plural.then_some(stem)
}

/// Words that join a wildcard's value to the next value ("at city tavern
/// **on** friday"): a wildcard may end before one of them.
const CONNECTORS: &[&str] = &[
    "on", "at", "for", "in", "by", "from", "to", "with", "and", "this", "next",
];

/// The spans kept: first the exact ones, as the set of non-overlapping
/// spans that fills the most slots ([`exact_spans`]); then bounded
/// wildcards, shortest first (the value stops at the first boundary).
fn choose(found: Vec<Found>, words: &[&str]) -> Vec<Slot> {
    let len = words.len();
    let (exact, mut wild): (Vec<Found>, Vec<Found>) = found.into_iter().partition(|f| !f.wildcard);
    wild.sort_by_key(|f| (f.end - f.start, std::cmp::Reverse(f.literal), f.start));
    let mut taken: Vec<(usize, usize)> = Vec::new();
    let mut names: BTreeSet<String> = BTreeSet::new();
    let mut out: Vec<(usize, Slot)> = Vec::new();
    for f in exact_spans(exact, len) {
        taken.push((f.start, f.end));
        for slot in f.slots {
            names.insert(slot.name.clone());
            out.push((f.start, slot));
        }
    }
    for f in wild {
        let overlaps = taken.iter().any(|&(s, e)| f.start < e && s < f.end);
        let clash = f.slots.iter().any(|s| names.contains(&s.name));
        let starts_at = |i: usize| i == len || taken.iter().any(|&(s, _)| s == i);
        let connector = |i: usize| {
            i < len && CONNECTORS.contains(&words[i].to_lowercase().as_str()) && starts_at(i + 1)
        };
        if overlaps || clash || !(starts_at(f.end) || connector(f.end)) {
            continue;
        }
        taken.push((f.start, f.end));
        for slot in f.slots {
            names.insert(slot.name.clone());
            out.push((f.start, slot));
        }
    }
    out.sort_by_key(|(start, _)| *start);
    out.into_iter().map(|(_, s)| s).collect()
}

/// Of the exact spans, the non-overlapping set, each slot at most once,
/// that fills the most slots; of those, the one in the most spans; of
/// those, the one over the most words ("for 4 people" before "for 4").
///
/// The spans rule decides "a table for ten on april the eighteenth": read
/// whole, "for ten on april the eighteenth" is a time and a day; read as
/// "for ten" and "on april the eighteenth" it is a party and a day. Two
/// slots either way; the reading whose values each stand on words of their
/// own wins, and the time is asked for. (Longest first, the old rule, took
/// the time and asked for the party.) Where the parts and the whole say
/// the same ("at 7 pm" and "tomorrow", or "at 7 pm tomorrow"), the values
/// are the same either way.
fn exact_spans(mut exact: Vec<Found>, len: usize) -> Vec<Found> {
    // Longest first, so that among equal readings the longer span is
    // tried, and kept, first.
    exact.sort_by_key(|f| {
        (
            f.start,
            std::cmp::Reverse(f.end - f.start),
            std::cmp::Reverse(f.literal),
        )
    });
    let mut names: Vec<&str> = Vec::new();
    let masks: Vec<u64> = exact
        .iter()
        .map(|f| {
            f.slots.iter().fold(0u64, |m, s| {
                let i = names.iter().position(|n| *n == s.name).unwrap_or_else(|| {
                    names.push(&s.name);
                    names.len() - 1
                });
                m | (1u64 << i.min(63))
            })
        })
        .collect();
    let mut memo: HashMap<(usize, u64), (Score, Option<usize>)> = HashMap::new();
    best(&exact, &masks, 0, 0, len, &mut memo);
    let mut chosen = Vec::new();
    let (mut at, mut used) = (0, 0u64);
    while at < len {
        match memo.get(&(at, used)).and_then(|(_, pick)| *pick) {
            Some(k) => {
                chosen.push(k);
                used |= masks[k];
                at = exact[k].end;
            }
            None => at += 1,
        }
    }
    let mut exact: Vec<Option<Found>> = exact.into_iter().map(Some).collect();
    chosen.into_iter().filter_map(|k| exact[k].take()).collect()
}

/// Slots filled, spans, words covered.
type Score = (usize, usize, usize);

/// The best score from word `at` on with the slots in `used` taken, and
/// the span to take at `at` for it (`None`: skip the word).
fn best(
    exact: &[Found],
    masks: &[u64],
    at: usize,
    used: u64,
    len: usize,
    memo: &mut HashMap<(usize, u64), (Score, Option<usize>)>,
) -> Score {
    if at >= len {
        return (0, 0, 0);
    }
    if let Some((score, _)) = memo.get(&(at, used)) {
        return *score;
    }
    let mut top = (best(exact, masks, at + 1, used, len, memo), None);
    for (k, f) in exact.iter().enumerate() {
        if f.start != at || masks[k] & used != 0 {
            continue;
        }
        let rest = best(exact, masks, f.end, used | masks[k], len, memo);
        let score = (
            rest.0 + f.slots.len(),
            rest.1 + 1,
            rest.2 + (f.end - f.start),
        );
        // Ties keep the earlier pick: a span (longest first) before a skip.
        if score > top.0 || (score == top.0 && top.1.is_none()) {
            top = (score, Some(k));
        }
    }
    memo.insert((at, used), top);
    top.0
}

/// The probe intent of `intent`: one sentence per slot-bearing part of its
/// templates, in data blocks that keep each block's own rules and lists.
fn probe_intent(defs: &Definitions, intent: &IntentDef) -> Option<IntentDef> {
    let mut data = Vec::new();
    for block in &intent.data {
        let mut seen = BTreeSet::new();
        let mut sentences = Vec::new();
        for sentence in &block.sentences {
            let mut parts = Vec::new();
            slot_parts(&sentence.expr, &mut parts);
            for part in parts {
                let key = format!("{part:?}");
                if seen.contains(&key) || !worth_probing(defs, block, &part) {
                    continue;
                }
                seen.insert(key);
                sentences.push(SentenceDef {
                    text: sentence.text.clone(),
                    expr: part,
                    origin: sentence.origin,
                });
            }
        }
        if !sentences.is_empty() {
            data.push(DataDef {
                sentences,
                rules: block.rules.clone(),
                lists: block.lists.clone(),
                ..DataDef::default()
            });
        }
    }
    (!data.is_empty()).then(|| IntentDef {
        name: intent.name.clone(),
        risk: intent.risk,
        confirm: None,
        action: None,
        data,
        tests: Vec::new(),
        ask: Vec::new(),
        examples: Vec::new(),
        fallback_leeway: None,
        description: None,
        summary: None,
        origin: intent.origin,
    })
}

/// The list and rule references of a sentence, outside any rule.
fn slot_parts(expr: &Expr, out: &mut Vec<Expr>) {
    match expr {
        Expr::Seq(items) | Expr::Alt(items) | Expr::Perm(items) => {
            for item in items {
                slot_parts(item, out);
            }
        }
        Expr::List(l) if !l.capture => out.push(expr.clone()),
        Expr::Rule { .. } => out.push(expr.clone()),
        _ => {}
    }
}

/// A part is probed if it carries a slot and is not a bare wildcard.
fn worth_probing(defs: &Definitions, block: &DataDef, part: &Expr) -> bool {
    let scope = Scope {
        defs,
        rules: &block.rules,
        lists: &block.lists,
    };
    match part {
        Expr::List(l) => !matches!(scope.list(&l.list), Some(ListDef::Wildcard(_)) | None),
        Expr::Rule { name, .. } => scope.rule_has_slot(name, &mut HashMap::new()),
        _ => false,
    }
}

struct Scope<'d> {
    defs: &'d Definitions,
    rules: &'d BTreeMap<String, RuleDef>,
    lists: &'d BTreeMap<String, NamedList>,
}

impl Scope<'_> {
    fn list(&self, name: &str) -> Option<&ListDef> {
        self.lists
            .get(name)
            .or_else(|| self.defs.lists.get(name))
            .map(|l| &l.def)
    }

    fn rule_has_slot(&self, name: &str, memo: &mut HashMap<String, bool>) -> bool {
        if let Some(&known) = memo.get(name) {
            return known;
        }
        memo.insert(name.to_string(), false);
        let Some(rule) = self.rules.get(name).or_else(|| self.defs.rules.get(name)) else {
            return false;
        };
        let has = self.expr_has_slot(&rule.expr, memo);
        memo.insert(name.to_string(), has);
        has
    }

    fn expr_has_slot(&self, expr: &Expr, memo: &mut HashMap<String, bool>) -> bool {
        match expr {
            Expr::Seq(items) | Expr::Alt(items) | Expr::Perm(items) => {
                items.iter().any(|i| self.expr_has_slot(i, memo))
            }
            Expr::List(l) => !l.capture,
            Expr::Rule { name, .. } => self.rule_has_slot(name, memo),
            Expr::Text(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intent::load::SourceFile;
    use serde_json::json;

    const FILE: &str = r#"
language: en
intents:
  StartTimer:
    risk: low
    data:
      - sentences: ["<set> a timer for <duration>", "<set> a <duration> timer"]
  BookTable:
    risk: high
    data:
      - sentences: ["book a table for {party} <at_place> [on {day}]", "book a table <for_party> <when>"]
lists:
  minutes: {range: {from: 1, to: 90}}
  party: {range: {from: 1, to: 20}}
  day: {values: [friday, tomorrow]}
  time: {time: {}}
  place: {wildcard: true}
expansion_rules:
  set: "(set|start)"
  duration: "{minutes} minute[s]"
  at_place: "(at|in) {place}"
  for_party: "for {party} [people]"
  when: "(at|for) {time} [on {day}]"
"#;

    fn finder() -> SlotFinder {
        let file = SourceFile {
            path: "t.yaml".into(),
            text: FILE.into(),
        };
        let set = IntentSet::build(vec![file], &Default::default()).0;
        SlotFinder::new(set.definitions())
    }

    fn slots(intent: &str, text: &str) -> Vec<(String, serde_json::Value)> {
        finder()
            .find(intent, text)
            .into_iter()
            .map(|s| (s.name, s.value))
            .collect()
    }

    #[test]
    fn a_rule_with_a_slot_is_found_inside_words_no_template_has() {
        assert_eq!(
            slots("StartTimer", "could you give me a 10 minute countdown"),
            [("minutes".to_string(), json!(10))]
        );
    }

    #[test]
    fn a_wildcard_ends_at_the_sentence_end_or_before_a_value_found() {
        assert_eq!(
            slots("BookTable", "i want a spot for 2 at city tavern on friday"),
            [
                ("party".to_string(), json!(2)),
                ("place".to_string(), json!("city tavern")),
                ("day".to_string(), json!("friday")),
            ]
        );
        assert_eq!(
            slots("BookTable", "could i get seats for 4 at the golden dragon"),
            [
                ("party".to_string(), json!(4)),
                ("place".to_string(), json!("the golden dragon")),
            ]
        );
    }

    #[test]
    fn a_party_before_a_day_is_not_read_as_a_time() {
        // "for ten on friday" is also a time and a day ("for 10:00 on
        // friday"), one span longer than the party "for ten".
        assert_eq!(
            slots("BookTable", "i need a table for ten on friday"),
            [
                ("party".to_string(), json!(10)),
                ("day".to_string(), json!("friday")),
            ]
        );
        // A time said as one is still one.
        assert_eq!(
            slots("BookTable", "a table for 2 people at 7 pm on friday"),
            [
                ("party".to_string(), json!(2)),
                ("time".to_string(), json!("19:00")),
                ("day".to_string(), json!("friday")),
            ]
        );
    }

    #[test]
    fn nothing_is_invented() {
        assert!(slots("StartTimer", "i want a timer").is_empty());
        assert!(slots("Unknown", "10 minutes").is_empty());
    }
}
