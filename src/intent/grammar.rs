//! The loaded intents as a grammar over transcripts, for constraining
//! whisper's decoder.
//!
//! Every sentence template of every intent (with its expansion rules and
//! list values inlined) becomes one automaton. whisper writes capitalised
//! text with punctuation ("Can I get a large latte?"), so the automaton
//! reads text through [`symbol`]: letters are lower-cased, digits and
//! apostrophes kept, and any run of spaces and punctuation is one word
//! separator. Number words and digits are interchangeable ("eight" ↔ "8")
//! where a template writes one of them. Lists that take free text
//! (wildcards, ranges, times, dates) accept any words.
//!
//! [`Grammar`] is the automaton (a Thompson NFA, plain data, built once);
//! [`Dfa`] determinises it lazily as it is walked, so each step is a table
//! look-up; [`Cursor`] follows a transcript as it grows, token by token.
//! Nothing here knows about whisper: `stt.rs` asks, for each vocabulary
//! token, whether the text could continue with it.

use std::collections::{BTreeMap, HashMap};

use super::load::{Definitions, ListDef, NamedList, RuleDef};
use super::template::Expr;

/// A symbol of the grammar's alphabet.
pub type Sym = u8;

/// The word separator (any run of whitespace and punctuation).
pub const SEP: Sym = 37;
/// Number of symbols: a–z (0–25), 0–9 (26–35), apostrophe (36), separator.
const ALPHABET: usize = 38;

/// What a character of a transcript is to the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Char {
    /// A letter, digit or apostrophe.
    Sym(Sym),
    /// Whitespace or punctuation: a word boundary.
    Sep,
    /// Something no template can produce.
    Invalid,
}

/// At most this many separator characters in a row (", ").
const MAX_SEPS: u8 = 2;

/// Classifies one character.
pub fn symbol(c: char) -> Char {
    match c {
        'a'..='z' => Char::Sym(c as u8 - b'a'),
        'A'..='Z' => Char::Sym(c.to_ascii_lowercase() as u8 - b'a'),
        '0'..='9' => Char::Sym(26 + (c as u8 - b'0')),
        '\'' | '\u{2019}' => Char::Sym(36),
        // What whisper puts between and after words. Other punctuation
        // (quotes, brackets, "$", "_") is how a decoder pushed off its
        // course escapes, so it is not part of any sentence.
        ' ' | ',' | '.' | '?' | '!' | '-' | ':' | ';' => Char::Sep,
        _ => Char::Invalid,
    }
}

/// Which intents go into the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GrammarOptions {
    /// Leave out sentences that use a wildcard list (free text): with them
    /// in, anything after their carrier words is allowed (and a wildcard
    /// in the middle of a sentence, "set a {label} alarm", lets anything
    /// at all follow "set a"). Times and dates are any words too, but only
    /// after their carrier words; ranges are number words and digits.
    pub skip_wildcards: bool,
}

#[derive(Debug, Clone)]
enum NState {
    /// Consume `sym`, go to `next`.
    Sym(Sym, u32),
    /// Consume any letter, digit or apostrophe, go to `next`.
    AnyWordChar(u32),
    /// Go to every target without consuming anything.
    Split(Vec<u32>),
    /// Accept.
    Match,
}

/// A Thompson NFA over [`Sym`]s accepting the intents' sentences.
#[derive(Debug, Clone)]
pub struct Grammar {
    states: Vec<NState>,
    start: u32,
    /// Sentences compiled in.
    sentences: usize,
}

/// An NFA fragment: its entry state and the dangling exits to patch.
struct Frag {
    start: u32,
    /// States whose `next` (or a new split target) must be set to the
    /// fragment's continuation.
    outs: Vec<u32>,
}

/// Rules nest at most this deep (cycles are cut here).
const MAX_DEPTH: usize = 24;
/// Permutations of more items than this accept the items in any order
/// (each any number of times) rather than expanding every order.
const MAX_PERM: usize = 5;

const NUMBER_WORDS: [(&str, &str); 28] = [
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
    ("eleven", "11"),
    ("twelve", "12"),
    ("thirteen", "13"),
    ("fourteen", "14"),
    ("fifteen", "15"),
    ("sixteen", "16"),
    ("seventeen", "17"),
    ("eighteen", "18"),
    ("nineteen", "19"),
    ("twenty", "20"),
    ("thirty", "30"),
    ("forty", "40"),
    ("fifty", "50"),
    ("sixty", "60"),
    ("seventy", "70"),
    ("eighty", "80"),
    ("ninety", "90"),
];

struct Builder<'d> {
    defs: &'d Definitions,
    states: Vec<NState>,
}

/// Where names are looked up: a data block's own rules and lists first.
#[derive(Clone, Copy)]
struct Scope<'d> {
    rules: Option<&'d BTreeMap<String, RuleDef>>,
    lists: Option<&'d BTreeMap<String, NamedList>>,
}

impl<'d> Builder<'d> {
    fn push(&mut self, s: NState) -> u32 {
        self.states.push(s);
        (self.states.len() - 1) as u32
    }

    fn patch(&mut self, outs: &[u32], to: u32) {
        for &o in outs {
            match &mut self.states[o as usize] {
                NState::Sym(_, next) | NState::AnyWordChar(next) => *next = to,
                NState::Split(targets) => targets.push(to),
                NState::Match => {}
            }
        }
    }

    /// The empty string.
    fn empty(&mut self) -> Frag {
        let s = self.push(NState::Split(Vec::new()));
        Frag {
            start: s,
            outs: vec![s],
        }
    }

    fn seq(&mut self, frags: Vec<Frag>) -> Frag {
        let mut iter = frags.into_iter();
        let Some(first) = iter.next() else {
            return self.empty();
        };
        let start = first.start;
        let mut outs = first.outs;
        for f in iter {
            self.patch(&outs, f.start);
            outs = f.outs;
        }
        Frag { start, outs }
    }

    fn alt(&mut self, frags: Vec<Frag>) -> Frag {
        if frags.is_empty() {
            return self.empty();
        }
        let targets = frags.iter().map(|f| f.start).collect();
        let start = self.push(NState::Split(targets));
        let outs = frags.into_iter().flat_map(|f| f.outs).collect();
        Frag { start, outs }
    }

    fn sym(&mut self, s: Sym) -> Frag {
        let st = self.push(NState::Sym(s, u32::MAX));
        Frag {
            start: st,
            outs: vec![st],
        }
    }

    /// One or more words: `w` reads a character, `m` loops or ends the
    /// word, `x` (the exit) may also take a separator and start again.
    fn any_words(&mut self) -> Frag {
        let w = self.push(NState::AnyWordChar(u32::MAX));
        let sep = self.push(NState::Sym(SEP, w));
        let x = self.push(NState::Split(vec![sep]));
        let m = self.push(NState::Split(vec![w, x]));
        self.patch(&[w], m);
        Frag {
            start: w,
            outs: vec![x],
        }
    }

    /// A number: one or more words of digits or number words ("25",
    /// "twenty five", "2.5", "a hundred").
    fn number(&mut self) -> Frag {
        let mut words: Vec<Frag> = Vec::new();
        for (w, _) in NUMBER_WORDS {
            words.push(self.text(w));
        }
        for w in ["hundred", "thousand", "and", "a", "half", "point"] {
            words.push(self.text(w));
        }
        // Digits: one or more.
        let digits: Vec<Frag> = (0..10u8).map(|d| self.sym(26 + d)).collect();
        let digit = self.alt(digits);
        let more = self.push(NState::Split(vec![digit.start]));
        self.patch(&digit.outs, more);
        words.push(Frag {
            start: digit.start,
            outs: vec![more],
        });
        let word = self.alt(words);
        let sep = self.push(NState::Sym(SEP, word.start));
        let exit = self.push(NState::Split(vec![sep]));
        self.patch(&word.outs, exit);
        Frag {
            start: word.start,
            outs: vec![exit],
        }
    }

    /// Nothing, or one skip word (with its separator) on either side.
    fn skip_words(&mut self) -> Frag {
        let mut frags = vec![self.empty()];
        for w in &self.defs.skip_words {
            let lead = self.sym(SEP);
            let word = self.text(w);
            let trail = self.sym(SEP);
            frags.push(self.seq(vec![lead, word, trail]));
        }
        self.alt(frags)
    }

    /// Literal template text: words (with number words ↔ digits) and
    /// separators.
    fn text(&mut self, text: &str) -> Frag {
        let mut frags = Vec::new();
        let mut word = String::new();
        let mut last_sep = false;
        let flush = |b: &mut Self, word: &mut String, frags: &mut Vec<Frag>| {
            if !word.is_empty() {
                frags.push(b.word(word));
                word.clear();
            }
        };
        for c in text.chars() {
            match symbol(c) {
                Char::Sym(_) => {
                    word.push(c.to_ascii_lowercase());
                    last_sep = false;
                }
                Char::Sep => {
                    flush(self, &mut word, &mut frags);
                    if !last_sep {
                        frags.push(self.sym(SEP));
                    }
                    last_sep = true;
                }
                Char::Invalid => {
                    // Unknown characters: leave the word as it is (the
                    // symbol table maps the usual accents).
                }
            }
        }
        flush(self, &mut word, &mut frags);
        self.seq(frags)
    }

    /// One word, with its number-word or digit twin.
    fn word(&mut self, word: &str) -> Frag {
        let twin = NUMBER_WORDS.iter().find_map(|(w, d)| {
            if *w == word {
                Some(*d)
            } else if *d == word {
                Some(*w)
            } else {
                None
            }
        });
        let mut forms = vec![word.to_string()];
        if let Some(t) = twin {
            forms.push(t.to_string());
        }
        let frags = forms
            .iter()
            .map(|f| {
                let syms: Vec<Frag> = f
                    .chars()
                    .filter_map(|c| match symbol(c) {
                        Char::Sym(s) => Some(self.sym(s)),
                        _ => None,
                    })
                    .collect();
                self.seq(syms)
            })
            .collect();
        self.alt(frags)
    }

    fn expr(&mut self, expr: &Expr, scope: Scope<'d>, depth: usize) -> Frag {
        if depth > MAX_DEPTH {
            return self.any_words();
        }
        match expr {
            Expr::Text(t) => self.text(t),
            Expr::Seq(items) => {
                let frags = items
                    .iter()
                    .map(|e| self.expr(e, scope, depth + 1))
                    .collect();
                self.seq(frags)
            }
            Expr::Alt(items) => {
                let frags = items
                    .iter()
                    .map(|e| self.expr(e, scope, depth + 1))
                    .collect();
                self.alt(frags)
            }
            Expr::Perm(items) if items.len() <= MAX_PERM => {
                let mut orders = Vec::new();
                permutations(items.len(), &mut Vec::new(), &mut orders);
                let frags = orders
                    .iter()
                    .map(|order| {
                        let mut parts = Vec::new();
                        for (k, &i) in order.iter().enumerate() {
                            if k > 0 {
                                parts.push(self.sym(SEP));
                            }
                            parts.push(self.expr(&items[i], scope, depth + 1));
                        }
                        self.seq(parts)
                    })
                    .collect();
                self.alt(frags)
            }
            Expr::Perm(_) => self.any_words(),
            Expr::Rule { name, .. } => {
                let rule = scope
                    .rules
                    .and_then(|r| r.get(name))
                    .or_else(|| self.defs.rules.get(name));
                match rule {
                    Some(r) => self.expr(&r.expr, scope, depth + 1),
                    None => self.any_words(),
                }
            }
            Expr::List(l) => {
                let list = scope
                    .lists
                    .and_then(|m| m.get(&l.list))
                    .or_else(|| self.defs.lists.get(&l.list));
                match list.map(|l| &l.def) {
                    Some(ListDef::Values(values)) => {
                        let frags = values
                            .iter()
                            .map(|v| self.expr(&v.spoken, scope, depth + 1))
                            .collect();
                        self.alt(frags)
                    }
                    Some(ListDef::Range(_)) => self.number(),
                    // Times, dates, wildcards and lists supplied at run
                    // time: any words.
                    _ => self.any_words(),
                }
            }
        }
    }
}

fn permutations(n: usize, prefix: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
    if prefix.len() == n {
        out.push(prefix.clone());
        return;
    }
    for i in 0..n {
        if !prefix.contains(&i) {
            prefix.push(i);
            permutations(n, prefix, out);
            prefix.pop();
        }
    }
}

/// True if `expr` (with its rules) uses a wildcard list.
fn uses_wildcard(defs: &Definitions, expr: &Expr, scope: Scope<'_>, depth: usize) -> bool {
    if depth > MAX_DEPTH {
        return true;
    }
    match expr {
        Expr::Text(_) => false,
        Expr::Seq(items) | Expr::Alt(items) | Expr::Perm(items) => items
            .iter()
            .any(|e| uses_wildcard(defs, e, scope, depth + 1)),
        Expr::Rule { name, .. } => scope
            .rules
            .and_then(|r| r.get(name))
            .or_else(|| defs.rules.get(name))
            .is_none_or(|r| uses_wildcard(defs, &r.expr, scope, depth + 1)),
        Expr::List(l) => {
            let list = scope
                .lists
                .and_then(|m| m.get(&l.list))
                .or_else(|| defs.lists.get(&l.list));
            matches!(list.map(|l| &l.def), None | Some(ListDef::Wildcard))
        }
    }
}

impl Grammar {
    /// The grammar of every sentence of every intent in `defs`.
    pub fn build(defs: &Definitions, options: GrammarOptions) -> Grammar {
        let mut b = Builder {
            defs,
            states: Vec::new(),
        };
        let mut sentences = Vec::new();
        for intent in &defs.intents {
            for data in &intent.data {
                let scope = Scope {
                    rules: Some(&data.rules),
                    lists: Some(&data.lists),
                };
                for s in &data.sentences {
                    if options.skip_wildcards && uses_wildcard(defs, &s.expr, scope, 0) {
                        continue;
                    }
                    // Skip words ("please", "could you") may come before
                    // and after: the matcher drops them.
                    let before = b.skip_words();
                    let body = b.expr(&s.expr, scope, 0);
                    let after = b.skip_words();
                    // Trailing punctuation ("latte?") is a separator.
                    let sep = b.sym(SEP);
                    let none = b.empty();
                    let tail = b.alt(vec![sep, none]);
                    sentences.push(b.seq(vec![before, body, after, tail]));
                }
            }
        }
        let count = sentences.len();
        let all = b.alt(sentences);
        let accept = b.push(NState::Match);
        b.patch(&all.outs, accept);
        Grammar {
            states: b.states,
            start: all.start,
            sentences: count,
        }
    }

    /// Sentences compiled in.
    pub fn sentences(&self) -> usize {
        self.sentences
    }

    /// NFA states (a size measure).
    pub fn size(&self) -> usize {
        self.states.len()
    }

    /// True if the whole of `text` is a sentence of the grammar.
    pub fn accepts(&self, text: &str) -> bool {
        let mut dfa = Dfa::new(self.clone());
        let mut cursor = dfa.start();
        cursor = dfa.feed_str(cursor, text);
        dfa.is_accepting(cursor)
    }

    /// True if `text` is the start of some sentence of the grammar.
    pub fn is_prefix(&self, text: &str) -> bool {
        let mut dfa = Dfa::new(self.clone());
        let cursor = dfa.start();
        !dfa.feed_str(cursor, text).is_dead()
    }

    fn closure(&self, set: &mut Vec<u32>) {
        let mut stack: Vec<u32> = set.clone();
        let mut seen: Vec<bool> = vec![false; self.states.len()];
        for &s in set.iter() {
            seen[s as usize] = true;
        }
        while let Some(s) = stack.pop() {
            if let NState::Split(targets) = &self.states[s as usize] {
                for &t in targets {
                    if t != u32::MAX && !seen[t as usize] {
                        seen[t as usize] = true;
                        set.push(t);
                        stack.push(t);
                    }
                }
            }
        }
        set.retain(|&s| !matches!(self.states[s as usize], NState::Split(_)));
        set.sort_unstable();
        set.dedup();
    }

    fn step_raw(&self, set: &[u32], sym: Sym) -> Vec<u32> {
        let mut out = Vec::new();
        for &s in set {
            match self.states[s as usize] {
                NState::Sym(x, next) if x == sym && next != u32::MAX => out.push(next),
                NState::AnyWordChar(next) if sym != SEP && next != u32::MAX => out.push(next),
                _ => {}
            }
        }
        self.closure(&mut out);
        out
    }

    /// One input symbol. A separator may cross several separators of the
    /// template in a row (optional parts leave "a  latte").
    fn step(&self, set: &[u32], sym: Sym) -> Vec<u32> {
        let mut out = self.step_raw(set, sym);
        if sym == SEP {
            let mut frontier = out.clone();
            loop {
                let more = self.step_raw(&frontier, SEP);
                let new: Vec<u32> = more.into_iter().filter(|s| !out.contains(s)).collect();
                if new.is_empty() {
                    break;
                }
                out.extend(&new);
                frontier = new;
            }
            out.sort_unstable();
            out.dedup();
        }
        out
    }
}

/// Where a transcript has got to in the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    state: u32,
    started: bool,
    /// Separator characters just read.
    seps: u8,
}

impl Cursor {
    /// True if no sentence starts with the text read so far.
    pub fn is_dead(&self) -> bool {
        self.state == DEAD
    }
}

const DEAD: u32 = 0;
const UNKNOWN: u32 = u32::MAX;
/// The lazily built DFA is dropped and rebuilt past this many states.
const MAX_DFA_STATES: usize = 200_000;

/// The grammar, determinised as it is walked.
#[derive(Debug, Clone)]
pub struct Dfa {
    grammar: Grammar,
    sets: Vec<Vec<u32>>,
    ids: HashMap<Vec<u32>, u32>,
    table: Vec<[u32; ALPHABET]>,
    accepting: Vec<bool>,
    start: u32,
}

impl Dfa {
    /// Wraps a grammar.
    pub fn new(grammar: Grammar) -> Dfa {
        let mut dfa = Dfa {
            grammar,
            sets: Vec::new(),
            ids: HashMap::new(),
            table: Vec::new(),
            accepting: Vec::new(),
            start: DEAD,
        };
        dfa.reset();
        dfa
    }

    fn reset(&mut self) {
        self.sets.clear();
        self.ids.clear();
        self.table.clear();
        self.accepting.clear();
        let dead = self.intern(Vec::new());
        debug_assert_eq!(dead, DEAD);
        // The start: the template may begin with separators (an omitted
        // optional part), which need no input.
        let mut start = vec![self.grammar.start];
        self.grammar.closure(&mut start);
        let skipped = self.grammar.step(&start, SEP);
        start.extend(skipped);
        start.sort_unstable();
        start.dedup();
        self.start = self.intern(start);
    }

    fn intern(&mut self, set: Vec<u32>) -> u32 {
        if let Some(&id) = self.ids.get(&set) {
            return id;
        }
        let id = self.sets.len() as u32;
        let accepting = {
            let g = &self.grammar;
            let direct = set
                .iter()
                .any(|&s| matches!(g.states[s as usize], NState::Match));
            direct
                || g.step(&set, SEP)
                    .iter()
                    .any(|&s| matches!(g.states[s as usize], NState::Match))
        };
        self.ids.insert(set.clone(), id);
        self.sets.push(set);
        self.table.push([UNKNOWN; ALPHABET]);
        self.accepting.push(accepting);
        id
    }

    fn next(&mut self, state: u32, sym: Sym) -> u32 {
        if state == DEAD {
            return DEAD;
        }
        let cached = self.table[state as usize][sym as usize];
        if cached != UNKNOWN {
            return cached;
        }
        let set = self.grammar.step(&self.sets[state as usize], sym);
        let id = self.intern(set);
        self.table[state as usize][sym as usize] = id;
        id
    }

    /// The cursor before any text.
    pub fn start(&mut self) -> Cursor {
        if self.sets.len() > MAX_DFA_STATES {
            self.reset();
        }
        Cursor {
            state: self.start,
            started: false,
            seps: 0,
        }
    }

    /// Reads one classified character.
    pub fn feed(&mut self, cursor: Cursor, c: Char) -> Cursor {
        if cursor.is_dead() {
            return cursor;
        }
        match c {
            Char::Invalid => Cursor {
                state: DEAD,
                ..cursor
            },
            Char::Sep if cursor.seps >= MAX_SEPS => Cursor {
                state: DEAD,
                ..cursor
            },
            Char::Sep if !cursor.started || cursor.seps > 0 => Cursor {
                seps: cursor.seps + 1,
                ..cursor
            },
            Char::Sep => Cursor {
                state: self.next(cursor.state, SEP),
                started: true,
                seps: 1,
            },
            Char::Sym(s) => Cursor {
                state: self.next(cursor.state, s),
                started: true,
                seps: 0,
            },
        }
    }

    /// Reads pre-classified characters (a vocabulary token).
    pub fn feed_chars(&mut self, mut cursor: Cursor, chars: &[Char]) -> Cursor {
        for &c in chars {
            cursor = self.feed(cursor, c);
            if cursor.is_dead() {
                break;
            }
        }
        cursor
    }

    /// Reads text.
    pub fn feed_str(&mut self, mut cursor: Cursor, text: &str) -> Cursor {
        for c in text.chars() {
            cursor = self.feed(cursor, symbol(c));
        }
        cursor
    }

    /// A cursor that accepts nothing more.
    pub fn dead(&self) -> Cursor {
        Cursor {
            state: DEAD,
            started: true,
            seps: 0,
        }
    }

    /// True if the text read so far is a whole sentence.
    pub fn is_accepting(&self, cursor: Cursor) -> bool {
        cursor.started && !cursor.is_dead() && self.accepting[cursor.state as usize]
    }

    /// DFA states built so far.
    pub fn states(&self) -> usize {
        self.sets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intent::load::{SourceFile, load};

    fn grammar(yaml: &str, options: GrammarOptions) -> Grammar {
        let (defs, diags) = load(vec![SourceFile {
            path: "test.yaml".into(),
            text: yaml.to_string(),
        }]);
        assert!(
            diags
                .iter()
                .all(|d| d.severity != crate::intent::Severity::Error),
            "{diags:?}"
        );
        Grammar::build(&defs, options)
    }

    const COFFEE: &str = r#"
language: en
intents:
  Order:
    data:
      - sentences:
          - "[<ask>] [a|an|1] [({size};{shots})|{size}] {drink} [with milk]"
  Note:
    data:
      - sentences: ["note {text}"]
  Timer:
    data:
      - sentences: ["set a timer for {n} minutes"]
lists:
  drink:
    values:
      - {in: "(latte|cafe latte)", out: "latte"}
      - "iced mocha"
  size:
    values: ["small", {in: "8[ ](ounce|oz)", out: "eight ounce"}]
  shots:
    values: ["double shot"]
  text:
    wildcard: true
  n:
    range: {from: 1, to: 100}
expansion_rules:
  ask: "(can i get|i'd like)"
"#;

    #[test]
    fn whisper_spellings_of_template_sentences_are_accepted() {
        let g = grammar(COFFEE, GrammarOptions::default());
        assert_eq!(g.sentences(), 3);
        for text in [
            "latte",
            " Can I get a latte?",
            "Can I get a large latte?",
            "I'd like an iced mocha with milk.",
            "Can I get a small, double shot latte?",
            "Can I get a double-shot small latte",
            "Can I get an 8 oz cafe latte",
            "Can I get an 8oz latte",
            "Can I get an eight ounce latte",
            "Can I get one latte",
            "Note: buy more milk, and bread!",
        ] {
            let want = !text.contains("large");
            assert_eq!(g.accepts(text), want, "{text}");
        }
    }

    #[test]
    fn prefixes_are_viable_and_strays_are_not() {
        let g = grammar(COFFEE, GrammarOptions::default());
        for (text, prefix) in [
            ("", true),
            (" Can I", true),
            ("Can I get a dou", true),
            ("Can I get a lat", true),
            ("Can I get a pizza", false),
            ("Can you get", false),
            ("Note", true),
            ("Note anything at all", true),
            ("Set", true),
            ("Set 25", false),
            ("Set a timer for twenty five minutes", true),
            ("Set a timer for 2.5 minutes", true),
            ("Set a timer for lunch", false),
            ("latte€", false),
            ("latte\"\"", false),
            ("latte...", false),
            ("Can I get a l\u{e0}tte", false),
        ] {
            assert_eq!(g.is_prefix(text), prefix, "{text}");
        }
        assert!(!g.accepts("Can I get a"));
    }

    #[test]
    fn wildcard_sentences_can_be_left_out() {
        let g = grammar(
            COFFEE,
            GrammarOptions {
                skip_wildcards: true,
            },
        );
        assert_eq!(g.sentences(), 2);
        assert!(!g.is_prefix("Note"));
        assert!(g.accepts("a latte"));
    }

    #[test]
    fn the_dfa_follows_token_by_token() {
        let g = grammar(COFFEE, GrammarOptions::default());
        let mut dfa = Dfa::new(g);
        let mut c = dfa.start();
        for token in [" Can", " I", " get", " a", " lat", "te", "?"] {
            let chars: Vec<Char> = token.chars().map(symbol).collect();
            c = dfa.feed_chars(c, &chars);
            assert!(!c.is_dead(), "{token}");
        }
        assert!(dfa.is_accepting(c));
        let chars: Vec<Char> = " please".chars().map(symbol).collect();
        assert!(dfa.feed_chars(c, &chars).is_dead());
    }

    #[test]
    fn the_shipped_intents_accept_their_own_tests() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("intents/en");
        let files = crate::intent::load::read_dir(&dir).expect("intents");
        let (defs, _) = load(files);
        let g = Grammar::build(&defs, GrammarOptions::default());
        let mut dfa = Dfa::new(g);
        let coffee = defs
            .intents
            .iter()
            .find(|i| i.name == "OrderDrink")
            .expect("coffee");
        for case in &coffee.tests {
            for (s, _) in &case.sentences {
                let c = dfa.start();
                let c = dfa.feed_str(c, s);
                assert!(dfa.is_accepting(c), "{s}");
            }
        }
    }
}
