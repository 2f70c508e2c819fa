//! Training sentences for the fallback recogniser, taken from the intent
//! files themselves: random expansions of each intent's templates (rules
//! expanded, list references replaced by one of their values), its
//! `tests:` sentences and its `examples:` paraphrases. Nothing comes from
//! anywhere else, so a developer who adds an intent file also trains the
//! fallback for it.
//!
//! Pure and deterministic: the same files and seed give the same sentences.

use std::collections::{BTreeMap, BTreeSet};

use crate::intent::load::{DataDef, Definitions, IntentDef, ListDef, NamedList, RuleDef};
use crate::intent::template::Expr;
use crate::request::ActionKind;
use crate::wakeword::augment::Rng;

/// Where a training sentence came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A random expansion of one of the intent's templates.
    Template,
    /// One of the intent's `tests:` sentences.
    Test,
    /// One of the intent's `examples:`.
    Example,
    /// A request voicegate cannot do (a file's `out_of_scope:`): its
    /// intent is [`OUT_OF_SCOPE`].
    OutOfScope,
}

/// The intent of the `out_of_scope:` training sentences: no intent's name
/// (those are words without spaces), so no reading ever runs it.
pub const OUT_OF_SCOPE: &str = "(out of scope)";

/// One training sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The intent it says.
    pub intent: String,
    /// The sentence.
    pub text: String,
    /// Where it came from.
    pub source: Source,
}

/// How deep rules may nest before an expansion gives up (a rule that
/// refers to itself is a load error; this is only a guard).
const MAX_DEPTH: usize = 24;

/// Up to `per_intent` distinct template expansions of every intent the
/// fallback may choose, plus all its `tests:` and `examples:` sentences;
/// then the files' `out_of_scope:` sentences, as the intent
/// [`OUT_OF_SCOPE`].
///
/// Left out: intents that only answer the gate (`gate.confirm`,
/// `gate.decline`), and sentence groups that need a context (answers to a
/// follow-up question, "stop" while an alarm rings): those are no commands
/// on their own.
pub fn examples(defs: &Definitions, per_intent: usize, seed: u64) -> Vec<Example> {
    let mut out = Vec::new();
    for (index, intent) in defs.intents.iter().enumerate() {
        if !trainable(intent) {
            continue;
        }
        let groups: Vec<&DataDef> = intent
            .data
            .iter()
            .filter(|d| d.requires_context.is_empty() && !d.sentences.is_empty())
            .collect();
        let mut seen = BTreeSet::new();
        if !groups.is_empty() {
            let mut expander = Expander {
                defs,
                rng: Rng::derive(seed, index as u64),
                local_rules: &BTreeMap::new(),
                local_lists: &BTreeMap::new(),
            };
            // Enough draws to find `per_intent` distinct ones when the
            // templates allow that many.
            for _ in 0..per_intent * 4 {
                if seen.len() >= per_intent {
                    break;
                }
                let group = groups[expander.rng.below(groups.len())];
                let sentence = &group.sentences[expander.rng.below(group.sentences.len())];
                expander.local_rules = &group.rules;
                expander.local_lists = &group.lists;
                let mut text = String::new();
                expander.expand(&sentence.expr, &mut text, 0);
                let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                if !text.is_empty() && seen.insert(text.clone()) {
                    out.push(Example {
                        intent: intent.name.clone(),
                        text,
                        source: Source::Template,
                    });
                }
            }
        }
        for test in intent.tests.iter().filter(|t| t.context.is_empty()) {
            for (text, _) in &test.sentences {
                if seen.insert(text.clone()) {
                    out.push(Example {
                        intent: intent.name.clone(),
                        text: text.clone(),
                        source: Source::Test,
                    });
                }
            }
        }
        for (text, _) in &intent.examples {
            if seen.insert(text.clone()) {
                out.push(Example {
                    intent: intent.name.clone(),
                    text: text.clone(),
                    source: Source::Example,
                });
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (text, _) in &defs.out_of_scope {
        if seen.insert(text.clone()) {
            out.push(Example {
                intent: OUT_OF_SCOPE.into(),
                text: text.clone(),
                source: Source::OutOfScope,
            });
        }
    }
    out
}

/// Whether the fallback may ever answer with this intent.
pub fn trainable(intent: &IntentDef) -> bool {
    !matches!(
        intent.action.as_ref().map(|a| a.kind),
        Some(ActionKind::GateConfirm | ActionKind::GateDecline)
    )
}

/// Stand-ins for what a wildcard takes: short, ordinary words, so that a
/// template's own words carry its meaning.
const WILDCARD_WORDS: &[&str] = &[
    "the kitchen",
    "pasta",
    "luigi's",
    "the station",
    "mom",
    "the blue one",
    "tea",
    "work",
];

const TIMES: &[&str] = &["7 pm", "8:30", "noon", "6 am", "9 o'clock", "half past 7"];
const DAYS: &[&str] = &["tomorrow", "today", "friday", "monday", "the 24th"];

struct Expander<'d> {
    defs: &'d Definitions,
    rng: Rng,
    local_rules: &'d BTreeMap<String, RuleDef>,
    local_lists: &'d BTreeMap<String, NamedList>,
}

impl Expander<'_> {
    fn expand(&mut self, expr: &Expr, out: &mut String, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        match expr {
            Expr::Text(t) => out.push_str(t),
            Expr::Seq(items) => {
                for item in items {
                    self.expand(item, out, depth + 1);
                }
            }
            Expr::Alt(items) if !items.is_empty() => {
                let pick = self.rng.below(items.len());
                self.expand(&items[pick], out, depth + 1);
            }
            Expr::Alt(_) => {}
            Expr::Perm(items) => {
                let mut order: Vec<usize> = (0..items.len()).collect();
                for i in (1..order.len()).rev() {
                    let j = self.rng.below(i + 1);
                    order.swap(i, j);
                }
                for i in order {
                    out.push(' ');
                    self.expand(&items[i], out, depth + 1);
                    out.push(' ');
                }
            }
            Expr::Rule { name, .. } => {
                let rule = self
                    .local_rules
                    .get(name)
                    .or_else(|| self.defs.rules.get(name));
                if let Some(rule) = rule {
                    let body = rule.expr.clone();
                    self.expand(&body, out, depth + 1);
                }
            }
            Expr::List(list) => {
                let def = self
                    .local_lists
                    .get(&list.list)
                    .or_else(|| self.defs.lists.get(&list.list))
                    .map(|l| l.def.clone());
                out.push(' ');
                match def {
                    Some(def) => self.value(&def, out, depth),
                    None => out.push_str(self.pick(WILDCARD_WORDS)),
                }
                out.push(' ');
            }
        }
    }

    /// One value of a list, as spoken.
    fn value(&mut self, def: &ListDef, out: &mut String, depth: usize) {
        match def {
            ListDef::Values(values) if !values.is_empty() => {
                let pick = self.rng.below(values.len());
                self.expand(&values[pick].spoken, out, depth + 1);
            }
            ListDef::Values(_) => {}
            ListDef::Range(r) => {
                let steps = ((r.to - r.from) / r.step.max(1e-9)).floor().max(0.0) as usize;
                // Small numbers are what people mostly say.
                let k = self.rng.below(steps.min(20) + 1);
                let n = r.from + r.step * k as f64;
                out.push_str(&format!("{}", n.round() as i64));
            }
            ListDef::Wildcard(_) => out.push_str(self.pick(WILDCARD_WORDS)),
            ListDef::Time { .. } => out.push_str(self.pick(TIMES)),
            ListDef::Date => out.push_str(self.pick(DAYS)),
        }
    }

    fn pick(&mut self, from: &[&'static str]) -> &'static str {
        from[self.rng.below(from.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intent::IntentSet;
    use crate::intent::load::SourceFile;

    fn defs(yaml: &str) -> Definitions {
        let file = SourceFile {
            path: "test.yaml".into(),
            text: yaml.into(),
        };
        IntentSet::build(vec![file], &Default::default())
            .0
            .definitions()
            .clone()
    }

    const FILE: &str = r#"
language: en
intents:
  StartTimer:
    risk: low
    action: {kind: timer.start}
    data:
      - sentences: ["<set> a timer for {minutes} minutes", "timer {minutes} minutes"]
    ask:
      minutes: {question: "For how long?", answers: ["{minutes} minutes"]}
    tests:
      - sentences: ["set a timer for 5 minutes"]
        slots: {minutes: 5}
    examples: ["give me a countdown of five minutes"]
  Confirm:
    risk: low
    action: {kind: gate.confirm}
    data:
      - sentences: ["yes"]
        requires_context: {pending_confirmation: true}
lists:
  minutes: {range: {from: 1, to: 90}}
expansion_rules:
  set: "(set|start)"
"#;

    #[test]
    fn expansions_follow_the_templates_and_skip_answers_and_gate_replies() {
        let got = examples(&defs(FILE), 10, 7);
        assert!(got.iter().all(|e| e.intent == "StartTimer"), "{got:?}");
        let sources = |s: Source| got.iter().filter(|e| e.source == s).count();
        assert!(sources(Source::Template) >= 4, "{got:?}");
        assert_eq!(sources(Source::Test), 1);
        assert_eq!(sources(Source::Example), 1);
        for e in got.iter().filter(|e| e.source == Source::Template) {
            let ok = e.text.starts_with("set a timer for ")
                || e.text.starts_with("start a timer for ")
                || e.text.starts_with("timer ");
            assert!(ok && e.text.ends_with(" minutes"), "{e:?}");
            // An answer alone ("5 minutes") is never a training sentence.
            assert!(e.text.contains("timer"), "{e:?}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_sentences() {
        let d = defs(FILE);
        assert_eq!(examples(&d, 10, 1), examples(&d, 10, 1));
    }
}
