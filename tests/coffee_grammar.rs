//! The shipped coffee intent covers every phrase and slot value of the
//! speech-to-intent benchmark's grammar (`rhino_coffee_maker.yaml`): sentences
//! are generated from every expression, with every carrier phrase and every
//! slot value appearing, and each must give OrderDrink with exactly the
//! benchmark's slot values (as the label spells them). Skipped with a reason
//! when ../shared/data is absent.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value};
use voicegate::intent::{IntentSet, Recognition};
use yaml_rust2::YamlLoader;

/// The benchmark's slot names → ours: the same table `voicegate eval` uses.
use voicegate::eval::SLOT_MAP as SLOTS;

/// A tiny deterministic generator (no external crates, same run every time).
struct Lcg(u64);

impl Lcg {
    fn pick(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) as usize) % n.max(1)
    }
}

enum Piece {
    Text(String),
    Choice(Vec<String>),
    Slot { kind: String, name: String },
}

fn parse_expression(expr: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut rest = expr;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').expect("closing ]");
            pieces.push(Piece::Choice(
                after[..end]
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect(),
            ));
            rest = &after[end + 1..];
        } else if let Some(after) = rest.strip_prefix('$') {
            let end = after.find(' ').unwrap_or(after.len());
            let (kind, name) = after[..end].split_once(':').expect("$type:slot");
            pieces.push(Piece::Slot {
                kind: kind.to_string(),
                name: name.to_string(),
            });
            rest = &after[end..];
        } else {
            let end = rest.find(['[', '$']).unwrap_or(rest.len());
            pieces.push(Piece::Text(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    pieces
}

#[test]
fn every_phrase_and_value_of_the_benchmark_grammar() {
    let grammar = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/speech-to-intent/rhino_coffee_maker.yaml");
    let Ok(text) = std::fs::read_to_string(&grammar) else {
        eprintln!("skipping: {} not found", grammar.display());
        return;
    };
    let doc = &YamlLoader::load_from_str(&text).expect("grammar parses")[0];
    let expressions: Vec<String> = doc["context"]["expressions"]["orderDrink"]
        .as_vec()
        .expect("expressions")
        .iter()
        .filter_map(|e| e.as_str().map(str::to_string))
        .collect();
    let mut values: HashMap<String, Vec<String>> = HashMap::new();
    for (kind, list) in doc["context"]["slots"].as_hash().expect("slots") {
        values.insert(
            kind.as_str().unwrap_or_default().to_string(),
            list.as_vec()
                .map(|v| {
                    v.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        );
    }
    let ours: HashMap<&str, &str> = SLOTS.into_iter().collect();
    let catalogue = voicegate::catalogue::Catalogue::example().expect("the example catalogue");
    let set = IntentSet::load_path(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("intents"),
        &catalogue.lists(),
    )
    .expect("intents load")
    .0;

    let mut rng = Lcg(20261126);
    let mut failures = Vec::new();
    let mut total = 0;
    for expr in &expressions {
        let pieces = parse_expression(expr);
        // Enough samples that every choice and value of this expression turns up.
        let widest = pieces
            .iter()
            .map(|p| match p {
                Piece::Choice(c) => c.len(),
                Piece::Slot { kind, .. } => values.get(kind).map_or(1, Vec::len),
                Piece::Text(_) => 1,
            })
            .max()
            .unwrap_or(1);
        for round in 0..widest {
            let mut sentence = String::new();
            let mut expected = Map::new();
            for piece in &pieces {
                match piece {
                    Piece::Text(t) => sentence.push_str(t),
                    // Round-robin first, so every choice appears; random after.
                    Piece::Choice(c) => sentence.push_str(
                        &c[if round < c.len() {
                            round
                        } else {
                            rng.pick(c.len())
                        }],
                    ),
                    Piece::Slot { kind, name } => {
                        let options = &values[kind];
                        let value = &options[if round < options.len() {
                            round
                        } else {
                            rng.pick(options.len())
                        }];
                        sentence.push_str(value);
                        expected.insert(
                            ours[name.as_str()].to_string(),
                            Value::String(value.trim().to_string()),
                        );
                    }
                }
            }
            total += 1;
            match set.recognize(&sentence, &Map::new()) {
                Recognition::Match(m) if m.intent == "OrderDrink" && m.slot_map() == expected => {}
                Recognition::Match(m) => failures.push(format!(
                    "{sentence:?}: {} {:?} (expected {expected:?})",
                    m.intent,
                    m.slot_map()
                )),
                Recognition::NotUnderstood(why) => {
                    failures.push(format!("{sentence:?}: not understood ({why:?})"))
                }
            }
        }
    }
    eprintln!(
        "coffee grammar: {} of {total} generated sentences matched exactly",
        total - failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {total} failed:\n{}",
        failures.len(),
        failures
            .iter()
            .take(30)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}
