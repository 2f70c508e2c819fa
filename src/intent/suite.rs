//! Test runners: our intent files' own `tests:` samples, and Home
//! Assistant–style suites (`tests/<lang>/*.yaml` beside `sentences/<lang>/`).
//!
//! For Home Assistant's suite we follow its own runner's semantics (the
//! intents repository's `tests/test_language_sentences.py` and
//! `shared/__init__.py`): entity names, areas and floors from
//! `_fixtures.yaml` become the `name`, `area` and `floor` lists; each entity
//! name carries the context `{domain: <entity id prefix>, ...attributes}`;
//! names that are templates are expanded; the test's `context` is the intent
//! context; a result passes when its intent matches, every matched slot is
//! expected with that value (a list of expected values means "one of"),
//! every expected slot was matched, and — when the test gives a context —
//! the match's context equals it. Response texts (Jinja templates) are not
//! rendered here.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

use super::load::{self, ListDef, ListValue, Origin};
use super::template::{self, Expr};
use super::yaml::{self, Node};
use super::{IntentSet, Policy, Recognition};

/// Passed and total counts.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    /// Cases that passed.
    pub passed: usize,
    /// Cases run.
    pub total: usize,
}

/// One failed case.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// Which intent the case expected (None: expected no match).
    pub expected_intent: Option<String>,
    /// The sentence.
    pub sentence: String,
    /// A short cause, for grouping: no_match, ambiguous, wrong_intent,
    /// slot_value, missing_slot, extra_slot, context, matched (for a
    /// sentence that should not match).
    pub cause: String,
    /// Details in words.
    pub detail: String,
    /// Where the case is written.
    pub location: String,
}

/// The result of running a suite.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Cases that passed.
    pub passed: usize,
    /// Cases run.
    pub total: usize,
    /// Per expected intent.
    pub by_intent: BTreeMap<String, Tally>,
    /// What failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Failure>,
}

impl Report {
    fn record(&mut self, intent: &str, failure: Option<Failure>) {
        self.total += 1;
        let tally = self.by_intent.entry(intent.to_string()).or_default();
        tally.total += 1;
        match failure {
            None => {
                self.passed += 1;
                tally.passed += 1;
            }
            Some(f) => self.failures.push(f),
        }
    }

    /// Failures counted by cause.
    pub fn causes(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for f in &self.failures {
            *out.entry(f.cause.clone()).or_default() += 1;
        }
        out
    }
}

fn location(set: &IntentSet, origin: Origin) -> String {
    let file = &set.definitions().files[origin.file];
    format!(
        "{}:{}:{}",
        file.path.display(),
        origin.pos.line,
        origin.pos.col
    )
}

/// Runs every `tests:` sample and `not_understood:` sentence of the set with
/// the strict policy: exactly the expected intent with all and only the
/// expected slots. A sample tested as the answer to a question (context
/// `asking: "Intent.name"`) is read as the gate reads answers: a tie with
/// another intent goes to the one asking.
pub fn run_own_tests(set: &IntentSet) -> Report {
    let mut report = Report::default();
    for intent in &set.definitions().intents {
        for test in &intent.tests {
            let asking = test
                .context
                .get(super::ASKING_KEY)
                .and_then(serde_json::Value::as_str)
                .and_then(|a| a.split_once('.'))
                .map(|(intent, _)| intent);
            for (sentence, origin) in &test.sentences {
                let recognition = match asking {
                    Some(asker) => set.recognize_preferring(sentence, &test.context, asker),
                    None => set.recognize(sentence, &test.context),
                };
                let failure = match recognition {
                    Recognition::NotUnderstood(why) => {
                        Some(("no_match", format!("not understood: {why:?}")))
                    }
                    Recognition::Match(m) if m.intent != intent.name => {
                        Some(("wrong_intent", format!("got intent {}", m.intent)))
                    }
                    Recognition::Match(m) => {
                        let got = m.slot_map();
                        if got == test.slots {
                            None
                        } else {
                            Some((
                                "slot_value",
                                format!(
                                    "slots {} (expected {})",
                                    Value::Object(got),
                                    Value::Object(test.slots.clone())
                                ),
                            ))
                        }
                    }
                };
                report.record(
                    &intent.name,
                    failure.map(|(cause, detail)| Failure {
                        expected_intent: Some(intent.name.clone()),
                        sentence: sentence.clone(),
                        cause: cause.into(),
                        detail,
                        location: location(set, *origin),
                    }),
                );
            }
        }
    }
    for (sentence, origin) in &set.definitions().not_understood {
        let failure = match set.recognize(sentence, &Map::new()) {
            Recognition::NotUnderstood(_) => None,
            Recognition::Match(m) => Some(Failure {
                expected_intent: None,
                sentence: sentence.clone(),
                cause: "matched".into(),
                detail: format!(
                    "should not be understood, but matched {} {}",
                    m.intent,
                    Value::Object(m.slot_map())
                ),
                location: location(set, *origin),
            }),
        };
        report.record("(not understood)", failure);
    }
    report
}

/// Errors running a Home Assistant–style suite.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// A directory or file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A test file is not what a suite file should be.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The sentence files have errors.
    #[error("the sentence files have {0} error(s); run `voicegate intents check` on them")]
    Sentences(usize),
}

/// The lists a Home Assistant fixture file defines: `name`, `area`, `floor`.
pub fn fixture_lists(fixtures: &Node, path: &Path) -> Result<HashMap<String, ListDef>, SuiteError> {
    let names_of = |node: &Node| -> Vec<String> {
        let Some(name) = node.get("name").and_then(Node::scalar_text) else {
            return Vec::new();
        };
        if template::is_template(&name) {
            match template::parse(&name) {
                Ok(expr) => template::sample(&expr, 64),
                Err(_) => vec![name.trim().to_string()],
            }
        } else {
            vec![name.trim().to_string()]
        }
    };
    let plain = |text: &str, context: Map<String, Value>| ListValue {
        spoken: Expr::Text(text.to_string()),
        spoken_text: text.to_string(),
        out: Some(Value::String(text.to_string())),
        context,
        origin: Origin::default(),
    };
    let mut lists = HashMap::new();
    for (key, list) in [("areas", "area"), ("floors", "floor")] {
        let mut values = Vec::new();
        for item in fixtures.get(key).and_then(Node::as_seq).unwrap_or(&[]) {
            for name in names_of(item) {
                values.push(plain(&name, Map::new()));
            }
        }
        lists.insert(list.to_string(), ListDef::Values(values));
    }
    let mut names = Vec::new();
    let Some(entities) = fixtures.get("entities").and_then(Node::as_seq) else {
        return Err(SuiteError::Format {
            path: path.to_path_buf(),
            message: "fixtures have no 'entities' list".into(),
        });
    };
    for entity in entities {
        let id = entity
            .get("id")
            .and_then(Node::scalar_text)
            .unwrap_or_default();
        let domain = id.split('.').next().unwrap_or("").to_string();
        let mut context = Map::new();
        context.insert("domain".into(), Value::String(domain));
        if let Some(Value::Object(attributes)) = entity.get("attributes").map(Node::to_json) {
            context.extend(attributes);
        }
        for name in names_of(entity) {
            names.push(plain(&name, context.clone()));
        }
    }
    lists.insert("name".into(), ListDef::Values(names));
    Ok(lists)
}

fn read(path: &Path) -> Result<String, SuiteError> {
    std::fs::read_to_string(path).map_err(|source| SuiteError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_yaml(path: &Path, text: &str) -> Result<Node, SuiteError> {
    yaml::parse(text).map_err(|e| SuiteError::Format {
        path: path.to_path_buf(),
        message: format!(
            "malformed YAML at {}:{}: {}",
            e.pos.line, e.pos.col, e.message
        ),
    })
}

/// Reads a fixture file and returns its `name`, `area` and `floor` lists.
pub fn read_fixture_lists(path: &Path) -> Result<HashMap<String, ListDef>, SuiteError> {
    let fixtures = parse_yaml(path, &read(path)?)?;
    fixture_lists(&fixtures, path)
}

/// Builds the intent set for a suite: `sentences` plus the fixture lists in
/// `tests/_fixtures.yaml`.
pub fn suite_set(sentences: &Path, tests: &Path) -> Result<IntentSet, SuiteError> {
    let lists = read_fixture_lists(&tests.join("_fixtures.yaml"))?;
    let files = load::read_dir(sentences).map_err(|source| SuiteError::Io {
        path: sentences.to_path_buf(),
        source,
    })?;
    let (set, diags) = IntentSet::build(files, &lists);
    let errors = diags.iter().filter(|d| d.is_error()).count();
    if errors > 0 {
        return Err(SuiteError::Sentences(errors));
    }
    Ok(set)
}

/// One sentence of a Home Assistant–style suite and what it expects.
#[derive(Debug, Clone)]
pub struct Case {
    /// The sentence.
    pub sentence: String,
    /// The expected intent.
    pub intent: String,
    /// The expected slots.
    pub slots: Map<String, Value>,
    /// The intent context to match with.
    pub context: Map<String, Value>,
    /// `file:line:col` of the sentence.
    pub location: String,
}

/// Reads every case of the suite's test files (`DIR/*.yaml` except
/// `_fixtures.yaml`), in file order.
pub fn read_cases(tests: &Path) -> Result<Vec<Case>, SuiteError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(tests)
        .map_err(|source| SuiteError::Io {
            path: tests.to_path_buf(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && p.file_name().is_some_and(|n| n != "_fixtures.yaml")
        })
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let text = read(&path)?;
        let root = parse_yaml(&path, &text)?;
        for test in root.get("tests").and_then(Node::as_seq).unwrap_or(&[]) {
            let Some(intent) = test.get("intent") else {
                continue;
            };
            let expected = intent
                .get("name")
                .and_then(Node::scalar_text)
                .unwrap_or_default();
            let slots = match intent.get("slots").map(Node::to_json) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            let context = match intent.get("context").map(Node::to_json) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            for sentence in test.get("sentences").and_then(Node::as_seq).unwrap_or(&[]) {
                let Some(text) = sentence.scalar_text() else {
                    continue;
                };
                cases.push(Case {
                    sentence: text,
                    intent: expected.clone(),
                    slots: slots.clone(),
                    context: context.clone(),
                    location: format!(
                        "{}:{}:{}",
                        path.display(),
                        sentence.pos.line,
                        sentence.pos.col
                    ),
                });
            }
        }
    }
    Ok(cases)
}

/// Runs a Home Assistant–style suite with a compiled set.
pub fn run_suite(set: &IntentSet, tests: &Path, policy: Policy) -> Result<Report, SuiteError> {
    let mut report = Report::default();
    for case in read_cases(tests)? {
        let failure = check_case(
            set,
            &case.sentence,
            &case.intent,
            &case.slots,
            &case.context,
            policy,
        );
        report.record(
            &case.intent,
            failure.map(|(cause, detail)| Failure {
                expected_intent: Some(case.intent.clone()),
                sentence: case.sentence.clone(),
                cause: cause.into(),
                detail,
                location: case.location.clone(),
            }),
        );
    }
    Ok(report)
}

/// Compares one result with Home Assistant's rules. `None` is a pass.
fn check_case(
    set: &IntentSet,
    text: &str,
    expected: &str,
    slots: &Map<String, Value>,
    context: &Map<String, Value>,
    policy: Policy,
) -> Option<(&'static str, String)> {
    let m = match set.recognize_with(text, context, policy) {
        Recognition::NotUnderstood(super::NotUnderstood::Ambiguous { candidates }) => {
            return Some((
                "ambiguous",
                format!("tie between {}", candidates.join(", ")),
            ));
        }
        Recognition::NotUnderstood(why) => return Some(("no_match", format!("{why:?}"))),
        Recognition::Match(m) => m,
    };
    if m.intent != expected {
        return Some((
            "wrong_intent",
            format!("got {} via \"{}\"", m.intent, m.template.text),
        ));
    }
    let got = m.slot_map();
    for (name, value) in &got {
        let Some(want) = slots.get(name) else {
            return Some(("extra_slot", format!("unexpected slot {name}={value}")));
        };
        let ok = match (want, value) {
            (Value::Array(options), Value::Array(values)) => {
                options.iter().all(|o| values.contains(o))
            }
            (Value::Array(options), v) => options.contains(v),
            (w, Value::Array(values)) => values.contains(w),
            (w, v) => json_eq(w, v),
        };
        if !ok {
            return Some((
                "slot_value",
                format!("slot {name}: got {value}, expected {want}"),
            ));
        }
    }
    for name in slots.keys() {
        if !got.contains_key(name) {
            return Some(("missing_slot", format!("slot {name} not matched")));
        }
    }
    if !context.is_empty() && &m.context != context {
        return Some((
            "context",
            format!(
                "context {} (expected {})",
                Value::Object(m.context.clone()),
                Value::Object(context.clone())
            ),
        ));
    }
    None
}

/// JSON equality where 10 and 10.0 are the same number.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}
