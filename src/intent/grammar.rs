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
//! Nothing here knows about whisper: `stt/grammar_decode.rs` asks, for each
//! vocabulary token, whether the text could continue with it (and checks
//! whisper's spelling itself, with `stt::shape`).

use std::collections::{BTreeMap, HashMap};

use super::load::{Definitions, ListDef, NamedList, RuleDef};
use super::template::Expr;

/// A symbol of the grammar's alphabet.
pub type Sym = u8;

/// The word separator (any run of whitespace and punctuation).
pub const SEP: Sym = 37;
/// Number of symbols: a–z (0–25), 0–9 (26–35), apostrophe (36), separator
/// (37), percent sign (38).
const ALPHABET: usize = 39;

/// What a character of a transcript is to the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Char {
    /// A letter, digit, apostrophe or percent sign.
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
        // "40%": part of the word, as the matcher reads it.
        '%' => Char::Sym(38),
        // What whisper puts between and after words. Other punctuation
        // (quotes, brackets, "$", "_") is how a decoder pushed off its
        // course escapes, so it is not part of any sentence.
        ' ' | ',' | '.' | '?' | '!' | '-' | ':' | ';' => Char::Sep,
        _ => Char::Invalid,
    }
}

/// Which intents go into the grammar.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GrammarOptions {
    /// Leave out sentences that use a wildcard list (free text): with them
    /// in, up to [`MAX_FREE_WORDS`] words are allowed where the wildcard
    /// stands (and a wildcard in the middle of a sentence, "set a {label}
    /// alarm", lets that many words of anything follow "set a"). Times and
    /// dates are the shapes the matcher's parsers read; ranges are number
    /// words and digits.
    pub skip_wildcards: bool,
    /// Phrases a sentence may start with, then a separator: the wake words
    /// ("Jarvis, set a timer ..."), which the daemon cuts off afterwards.
    pub lead_in: Vec<String>,
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

/// Free text (a wildcard list, a too-long permutation) is at most this many
/// words: an alarm label, an artist, a place.
pub const MAX_FREE_WORDS: usize = 6;

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

    /// One word of free text: `w` reads a character, `m` loops or ends
    /// the word.
    fn any_word(&mut self) -> Frag {
        let w = self.push(NState::AnyWordChar(u32::MAX));
        let m = self.push(NState::Split(vec![w]));
        self.patch(&[w], m);
        Frag {
            start: w,
            outs: vec![m],
        }
    }

    /// Free text: one to [`MAX_FREE_WORDS`] words. Bounded, so that a
    /// decoder cannot loop inside it ("with cream, with cream, with ...").
    fn any_words(&mut self) -> Frag {
        // A word, then up to MAX_FREE_WORDS - 1 optional (separator, word):
        // the optional parts are all alike, so skipping one and taking the
        // next is the same text.
        let mut parts = vec![self.any_word()];
        for _ in 1..MAX_FREE_WORDS {
            let sep = self.sym(SEP);
            let word = self.any_word();
            let more = self.seq(vec![sep, word]);
            parts.push(self.optional(more));
        }
        self.seq(parts)
    }

    /// A number: one or more words of digits or number words ("25",
    /// "twenty five", "2.5", "a hundred").
    fn number(&mut self) -> Frag {
        // The first word, then any number of further words. Only the first
        // may be "a" ("a hundred", "a half"): a loop through "a" and "and"
        // is where a decoder pushed into a number runs around.
        let first = self.number_word(true);
        let next = self.number_word(false);
        let sep = self.push(NState::Sym(SEP, next.start));
        let exit = self.push(NState::Split(vec![sep]));
        self.patch(&first.outs, exit);
        self.patch(&next.outs, exit);
        Frag {
            start: first.start,
            outs: vec![exit],
        }
    }

    /// One of several literal phrases.
    fn phrases(&mut self, phrases: &[&str]) -> Frag {
        let frags = phrases.iter().map(|p| self.text(p)).collect();
        self.alt(frags)
    }

    /// `frag`, or nothing.
    fn optional(&mut self, frag: Frag) -> Frag {
        let none = self.empty();
        self.alt(vec![frag, none])
    }

    /// A separator, then `frag`.
    fn after_sep(&mut self, frag: Frag) -> Frag {
        let sep = self.sym(SEP);
        self.seq(vec![sep, frag])
    }

    /// A clock time, in the shapes `builtins::parse_time` reads: "noon",
    /// "7", "7:30" (the colon is a separator), "seven thirty", "seven oh
    /// five", "half past 7", "20 minutes to 8", each with an optional
    /// "am", "p.m.", "o'clock", "in the evening", "tonight"...
    fn time(&mut self) -> Frag {
        let named = self.phrases(&["noon", "midday", "midnight"]);
        let lead = {
            let fraction = self.phrases(&["half", "quarter"]);
            let minutes = {
                let n = self.number();
                let unit = self.phrases(&["minute", "minutes"]);
                let unit = self.after_sep(unit);
                let unit = self.optional(unit);
                self.seq(vec![n, unit])
            };
            let amount = self.alt(vec![fraction, minutes]);
            let dir = self.phrases(&["past", "after", "to", "till", "before"]);
            let dir = self.after_sep(dir);
            let sep = self.sym(SEP);
            let lead = self.seq(vec![amount, dir, sep]);
            self.optional(lead)
        };
        // `number` already reads "7 30", "seven thirty" and "7:30".
        let hour = self.number();
        let oh = {
            let oh = self.phrases(&["oh", "o"]);
            let oh = self.after_sep(oh);
            let n = self.number();
            let n = self.after_sep(n);
            let oh = self.seq(vec![oh, n]);
            self.optional(oh)
        };
        let meridiem = {
            let m = self.phrases(&[
                "am",
                "pm",
                "a m",
                "p m",
                "o'clock",
                "oclock",
                "in the morning",
                "in the afternoon",
                "in the evening",
                "at night",
                "tonight",
            ]);
            let m = self.after_sep(m);
            // "7pm", "7am": written without a space.
            let glued = self.phrases(&["am", "pm"]);
            let m = self.alt(vec![m, glued]);
            self.optional(m)
        };
        let clock = self.seq(vec![lead, hour, oh, meridiem]);
        self.alt(vec![named, clock])
    }

    /// A day, in the shapes `builtins::parse_date` reads: "today",
    /// "tomorrow", a weekday, "december 3rd", "the third of december".
    fn date(&mut self) -> Frag {
        use super::builtins::{MONTHS, ORDINAL_WORDS, WEEKDAYS};
        let mut ordinals: Vec<&str> = ORDINAL_WORDS.iter().map(|(w, _)| *w).collect();
        let units = ordinals[..9].to_vec();
        ordinals.extend(["twentieth", "thirtieth"]);
        let mut days = vec!["today", "tonight", "tomorrow"];
        days.extend(WEEKDAYS);
        let named = self.phrases(&days);
        // "3", "3rd", "third", "twenty first" (tens, then an ordinal).
        let day_of_month = |b: &mut Self| {
            let ordinals = b.phrases(&ordinals);
            let tens = b.phrases(&["twenty", "thirty", "20", "30"]);
            let unit = b.phrases(&units);
            let unit = b.after_sep(unit);
            let compound = b.seq(vec![tens, unit]);
            let n = b.number();
            let suffix = b.phrases(&["st", "nd", "rd", "th"]);
            let suffix = b.optional(suffix);
            let numeric = b.seq(vec![n, suffix]);
            b.alt(vec![ordinals, compound, numeric])
        };
        let month_first = {
            let month = self.phrases(&MONTHS);
            let the = self.text("the");
            let the = self.after_sep(the);
            let the = self.optional(the);
            let day = day_of_month(self);
            let day = self.after_sep(day);
            self.seq(vec![month, the, day])
        };
        let day_first = {
            let the = self.text("the");
            let sep = self.sym(SEP);
            let the = self.seq(vec![the, sep]);
            let the = self.optional(the);
            let day = day_of_month(self);
            let of = self.text("of");
            let of = self.after_sep(of);
            let of = self.optional(of);
            let month = self.phrases(&MONTHS);
            let month = self.after_sep(month);
            self.seq(vec![the, day, of, month])
        };
        self.alt(vec![named, month_first, day_first])
    }

    /// One word of a number: a number word, or one to four digits.
    fn number_word(&mut self, first: bool) -> Frag {
        let mut words: Vec<Frag> = Vec::new();
        for (w, _) in NUMBER_WORDS {
            words.push(self.text(w));
        }
        for w in ["hundred", "thousand", "and", "half", "point"] {
            words.push(self.text(w));
        }
        if first {
            words.push(self.text("a"));
        }
        let mut digits = Vec::new();
        for k in 0..4 {
            let digit: Vec<Frag> = (0..10u8).map(|d| self.sym(26 + d)).collect();
            let digit = self.alt(digit);
            digits.push(if k == 0 { digit } else { self.optional(digit) });
        }
        words.push(self.seq(digits));
        self.alt(words)
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
                    Some(ListDef::Time { .. }) => self.time(),
                    Some(ListDef::Date) => self.date(),
                    // Wildcards and lists supplied at run time: any words.
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
            matches!(list.map(|l| &l.def), None | Some(ListDef::Wildcard(_)))
        }
    }
}

impl Grammar {
    /// The grammar of every sentence of every intent in `defs`.
    pub fn build(defs: &Definitions, options: &GrammarOptions) -> Grammar {
        let mut b = Builder {
            defs,
            states: Vec::new(),
        };
        let mut sentences = Vec::new();
        for intent in &defs.intents {
            // Answers to a follow-up question ("ten minutes", "Wednesday")
            // are no commands: in the grammar, such short sentences are
            // what noise gets read as. They are decoded freely instead,
            // while a question waits (the daemon's `Expect::Answer`).
            let commands = intent
                .data
                .iter()
                .filter(|d| !d.requires_context.contains_key(super::ASKING_KEY));
            for data in commands {
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
        let mut all = b.alt(sentences);
        if !options.lead_in.is_empty() {
            let phrases: Vec<&str> = options.lead_in.iter().map(String::as_str).collect();
            let lead = b.phrases(&phrases);
            let sep = b.sym(SEP);
            let lead = b.seq(vec![lead, sep]);
            let lead = b.optional(lead);
            all = b.seq(vec![lead, all]);
        }
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
        // A bitmap of the states seen, sized for the whole NFA (hundreds of
        // thousands of states with times and numbers inlined), kept per
        // thread and cleared by walking `set` afterwards rather than
        // allocated and zeroed for each of the many closures taken.
        thread_local! {
            static SEEN: std::cell::RefCell<Vec<bool>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        SEEN.with(|seen| {
            let mut seen = seen.borrow_mut();
            if seen.len() < self.states.len() {
                seen.resize(self.states.len(), false);
            }
            let mut stack: Vec<u32> = set.clone();
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
            for &s in set.iter() {
                seen[s as usize] = false;
            }
        });
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
        Grammar::build(&defs, &options)
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
    fn answers_to_follow_up_questions_are_left_out() {
        let yaml = COFFEE.replace(
            "      - sentences: [\"set a timer for {n} minutes\"]\n",
            "      - sentences: [\"set a timer for {n} minutes\", \"set a timer\"]\n    ask:\n      n: {question: \"For how long?\", answers: [\"{n} minutes\"]}\n",
        );
        assert_ne!(yaml, COFFEE);
        let g = grammar(&yaml, GrammarOptions::default());
        // latte, note, and the timer's two; not the answer.
        assert_eq!(g.sentences(), 4);
    }

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
        // Free text is bounded.
        let words = |n: usize| format!("Note {}", vec!["word"; n].join(" "));
        assert!(g.accepts(&words(MAX_FREE_WORDS)));
        assert!(!g.is_prefix(&words(MAX_FREE_WORDS + 1)));
    }

    #[test]
    fn times_and_dates_are_the_shapes_the_parsers_read() {
        let yaml = r#"
language: en
intents:
  Alarm:
    data:
      - sentences: ["set an alarm for {t} [{d}]", "set a {t} alarm"]
lists:
  t:
    time: {}
  d:
    date: {}
"#;
        let g = grammar(yaml, GrammarOptions::default());
        for (text, ok) in [
            ("Set an alarm for 7:30 a.m.", true),
            ("Set an alarm for 7pm tomorrow", true),
            ("Set an alarm for half past seven on", false),
            ("Set an alarm for half past seven", true),
            ("Set an alarm for 20 minutes to 8 in the evening", true),
            ("Set an alarm for seven oh five Friday", true),
            ("Set an alarm for noon the 3rd of December", true),
            ("Set an alarm for 6 December twenty first", true),
            ("Set a 6 o'clock alarm", true),
            ("Set a double shot alarm", false),
            ("Set an alarm for lunch", false),
        ] {
            assert_eq!(g.accepts(text), ok, "{text}");
        }
    }

    #[test]
    fn a_wake_word_may_lead_in() {
        let options = GrammarOptions {
            lead_in: vec!["jarvis".into(), "hey computer".into()],
            ..GrammarOptions::default()
        };
        let g = grammar(COFFEE, options);
        for (text, ok) in [
            ("Jarvis, can I get a latte?", true),
            ("Hey computer, a latte", true),
            ("a latte", true),
            ("Jarvis", false),
            ("Jarvis jarvis a latte", false),
        ] {
            assert_eq!(g.accepts(text), ok, "{text}");
        }
        assert!(!grammar(COFFEE, GrammarOptions::default()).is_prefix("Jarvis"));
    }

    #[test]
    fn wildcard_sentences_can_be_left_out() {
        let g = grammar(
            COFFEE,
            GrammarOptions {
                skip_wildcards: true,
                ..GrammarOptions::default()
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
        let g = Grammar::build(&defs, &GrammarOptions::default());
        let mut dfa = Dfa::new(g);
        let mut outside = Vec::new();
        for intent in &defs.intents {
            // Answers to follow-up questions are decoded freely, not by
            // the grammar (see `Grammar::build`).
            let commands = intent
                .tests
                .iter()
                .filter(|t| !t.context.contains_key(crate::intent::ASKING_KEY));
            for case in commands {
                for (s, _) in &case.sentences {
                    let c = dfa.start();
                    let c = dfa.feed_str(c, s);
                    if !dfa.is_accepting(c) {
                        outside.push(format!("{}: {s}", intent.name));
                    }
                }
            }
        }
        assert!(
            outside.is_empty(),
            "not in the grammar:\n{}",
            outside.join("\n")
        );
    }
}
