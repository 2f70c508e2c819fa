//! Walks sentences through the intents' grammar character by character and
//! prints where each one leaves it:
//! `cargo run --release --example grammar_check -- INTENTS_DIR "sentence" ...`.
use std::path::PathBuf;

use voicegate::intent::grammar::{Dfa, Grammar, GrammarOptions, symbol};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((dir, sentences)) = args.split_first() else {
        return Err("usage: grammar_check INTENTS_DIR SENTENCE...".into());
    };
    // The shipped intents take their products from the purchase catalogue.
    let lists = voicegate::catalogue::Catalogue::example()?.lists();
    let (set, _) = voicegate::intent::IntentSet::load_path(&PathBuf::from(dir), &lists)?;
    let grammar = Grammar::build(
        set.definitions(),
        &GrammarOptions {
            skip_wildcards: std::env::var_os("SKIP_WILDCARDS").is_some(),
            ..GrammarOptions::default()
        },
    );
    eprintln!(
        "{} sentences, {} NFA states",
        grammar.sentences(),
        grammar.size()
    );
    let mut dfa = Dfa::new(grammar);
    for s in sentences {
        let mut cursor = dfa.start();
        let mut left_at = None;
        for (i, c) in s.char_indices() {
            cursor = dfa.feed(cursor, symbol(c));
            if cursor.is_dead() {
                left_at = Some(i);
                break;
            }
        }
        match left_at {
            Some(i) => println!("leaves at {i}: {:?} | {:?}", &s[..i], &s[i..]),
            None => println!("in grammar (complete: {}): {s:?}", dfa.is_accepting(cursor)),
        }
    }
    eprintln!("{} DFA states built", dfa.states());
    Ok(())
}
