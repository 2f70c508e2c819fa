//! The matcher: normalised input × compiled graph → every complete match.
//!
//! It is a backtracking matcher written in continuation-passing style: each
//! node is matched at a byte position of the normalised input, and calls a
//! continuation for every way it can match there. A sentence matches when a
//! continuation is reached at the end of the input. Matching is character
//! level, like hassil's, so `light[s]` and `{name}['s]` work; a space in a
//! template is a word boundary (one input space, or none where the input is
//! already at a boundary).
//!
//! Pure: no I/O, no clock, no allocation beyond the match state. A step
//! budget bounds the work any input can cause (templates can describe
//! exponentially many sentences).

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::builtins;
use super::compile::{CData, CList, CValue, Graph, Node};
use super::load::{RangeDef, WildcardDef};
use super::normalize::Token;

/// The most steps one recognition may take before it gives up.
pub(crate) const STEP_BUDGET: u64 = 2_000_000;

/// Normalised input: the tokens' canonical forms joined by single spaces.
#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub text: String,
    pub starts: Vec<usize>,
    pub ends: Vec<usize>,
    pub raw: Vec<String>,
}

impl Input {
    /// Builds the input, dropping skip words (whole-word sequences).
    pub fn new(tokens: Vec<Token>, skip_words: &[Vec<String>]) -> Input {
        let mut kept: Vec<Token> = Vec::with_capacity(tokens.len());
        let mut i = 0;
        'outer: while i < tokens.len() {
            for skip in skip_words {
                let n = skip.len();
                if i + n <= tokens.len()
                    && tokens[i..i + n].iter().zip(skip).all(|(t, s)| t.norm == *s)
                {
                    i += n;
                    continue 'outer;
                }
            }
            kept.push(tokens[i].clone());
            i += 1;
        }
        let mut text = String::new();
        let mut starts = Vec::with_capacity(kept.len());
        let mut ends = Vec::with_capacity(kept.len());
        let mut raw = Vec::with_capacity(kept.len());
        for token in kept {
            if !text.is_empty() {
                text.push(' ');
            }
            starts.push(text.len());
            text.push_str(&token.norm);
            ends.push(text.len());
            raw.push(token.raw);
        }
        Input {
            text,
            starts,
            ends,
            raw,
        }
    }

    /// The index of the token starting exactly at `pos`.
    fn token_starting_at(&self, pos: usize) -> Option<usize> {
        self.starts.binary_search(&pos).ok()
    }

    /// The words spoken between two byte positions, in their surface form.
    /// Whole tokens give their raw text; a token cut in the middle gives the
    /// normalised piece.
    pub fn spoken(&self, start: usize, end: usize) -> String {
        let mut parts: Vec<&str> = Vec::new();
        for (i, (&s, &e)) in self.starts.iter().zip(&self.ends).enumerate() {
            if e <= start || s >= end {
                continue;
            }
            if s >= start && e <= end {
                parts.push(&self.raw[i]);
            } else {
                parts.push(&self.text[s.max(start)..e.min(end)]);
            }
        }
        parts.join(" ")
    }
}

/// A slot value found in the input (or added from data or context).
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// Slot name.
    pub name: Arc<str>,
    /// The value.
    pub value: Value,
    /// The words that produced it, as spoken ("" for fixed slots).
    pub text: String,
    /// True if a wildcard produced it.
    pub wildcard: bool,
    /// True for `@` captures (response only, not a slot).
    pub capture: bool,
}

/// One complete match of one sentence template.
#[derive(Debug, Clone)]
pub(crate) struct Hit {
    pub sentence: u32,
    pub entities: Vec<Entity>,
    pub context: Map<String, Value>,
    pub wildcards: u32,
    pub literal: u32,
    /// Characters of the input matched by values of closed lists.
    pub listed: u32,
}

/// How far literal matching got, for explaining failures. Progress made
/// after a wildcard swallowed words says nothing about the template, so it
/// is not counted.
struct Furthest {
    pos: usize,
    counting: bool,
}

impl Furthest {
    fn reach(&mut self, pos: usize) {
        if self.counting {
            self.pos = self.pos.max(pos);
        }
    }
}

/// Mutable state of one match attempt; pushed and popped as it backtracks.
struct St {
    entities: Vec<Entity>,
    context: Vec<(String, Value)>,
    literal: u32,
    /// Characters matched by closed-list values (see [`Hit::listed`]).
    listed: u32,
    wildcards: u32,
    steps: u64,
    furthest: Furthest,
}

/// What stays fixed during one sentence's match.
struct Cx<'a> {
    graph: &'a Graph,
    input: &'a Input,
    bytes: &'a [u8],
    data: &'a CData,
}

type K<'k> = &'k mut dyn FnMut(&mut St, usize, bool);

/// Outcome of running every sentence over one input.
pub(crate) struct Run {
    pub hits: Vec<Hit>,
    /// For each sentence tried: how far into the input it got.
    pub furthest: Vec<(u32, usize)>,
    /// True if the step budget ran out (the result is then incomplete).
    pub exhausted: bool,
}

/// Matches `input` against every sentence, with the caller's context.
pub(crate) fn run(graph: &Graph, input: &Input, context: &Map<String, Value>, track: bool) -> Run {
    let mut out = Run {
        hits: Vec::new(),
        furthest: Vec::new(),
        exhausted: false,
    };
    let mut st = St {
        entities: Vec::new(),
        context: context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        literal: 0,
        listed: 0,
        wildcards: 0,
        steps: 0,
        furthest: Furthest {
            pos: 0,
            counting: true,
        },
    };
    for (index, sentence) in graph.sentences.iter().enumerate() {
        let data = &graph.data[sentence.data as usize];
        if !track && sentence.required.iter().any(|w| !input.text.contains(&**w)) {
            continue;
        }
        if !context.is_empty()
            && (!requires_ok(&data.requires_context, context, true)
                || !excludes_ok(&data.excludes_context, context))
        {
            continue;
        }
        let cx = Cx {
            graph,
            input,
            bytes: input.text.as_bytes(),
            data,
        };
        st.furthest = Furthest {
            pos: 0,
            counting: true,
        };
        let hits = &mut out.hits;
        let end = input.text.len();
        m(
            &cx,
            &sentence.node,
            &mut st,
            0,
            true,
            &mut |st, pos, _ws| {
                if pos == end
                    && let Some(hit) = finish(&cx, st, index as u32)
                {
                    hits.push(hit);
                }
            },
        );
        if track {
            out.furthest.push((index as u32, st.furthest.pos));
        }
        if st.steps > STEP_BUDGET {
            out.exhausted = true;
            break;
        }
    }
    out
}

fn lookup<'s>(st: &'s St, key: &str) -> Option<&'s Value> {
    st.context
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// Unpacks `{value: ..}` mappings used in contexts.
fn unpack(v: &Value) -> &Value {
    match v {
        Value::Object(map) => map.get("value").unwrap_or(&Value::Null),
        other => other,
    }
}

/// Does `actual` satisfy the required `wanted` value (a value, a list of
/// values, or null for "any")?
fn value_ok(wanted: &Value, actual: &Value) -> bool {
    match unpack(wanted) {
        Value::Null => !actual.is_null(),
        Value::Array(options) => options.contains(actual),
        w => w == actual,
    }
}

/// `requires_context` against a plain map. With `allow_missing`, only keys
/// present are checked (used before matching, and on list values).
pub(crate) fn requires_ok(
    required: &Map<String, Value>,
    ctx: &Map<String, Value>,
    allow_missing: bool,
) -> bool {
    required.iter().all(|(key, wanted)| match ctx.get(key) {
        None => allow_missing,
        Some(actual) => value_ok(wanted, unpack(actual)),
    })
}

/// `excludes_context` against a plain map.
pub(crate) fn excludes_ok(excluded: &Map<String, Value>, ctx: &Map<String, Value>) -> bool {
    excluded.iter().all(|(key, banned)| match ctx.get(key) {
        None => true,
        Some(actual) => {
            let actual = unpack(actual);
            match unpack(banned) {
                Value::Array(options) => !options.contains(actual),
                b => b != actual,
            }
        }
    })
}

/// A complete match: check context, add fixed and context slots.
fn finish(cx: &Cx, st: &St, sentence: u32) -> Option<Hit> {
    let data = cx.data;
    for (key, banned) in &data.excludes_context {
        if let Some(actual) = lookup(st, key) {
            let actual = unpack(actual);
            let hit = match unpack(banned) {
                Value::Array(options) => options.contains(actual),
                b => b == actual,
            };
            if hit {
                return None;
            }
        }
    }
    let mut from_context: Vec<Entity> = Vec::new();
    for (key, wanted) in &data.requires_context {
        let copy_to: Option<String> = match wanted {
            Value::Object(spec) => match spec.get("slot") {
                Some(Value::String(name)) => Some(name.clone()),
                Some(Value::Bool(true)) => Some(key.clone()),
                _ => None,
            },
            _ => None,
        };
        let actual_full = lookup(st, key)?;
        let (actual, text) = match actual_full {
            Value::Object(map) => (
                map.get("value").unwrap_or(&Value::Null),
                map.get("text").and_then(Value::as_str).unwrap_or(""),
            ),
            v => (v, ""),
        };
        if !value_ok(wanted, actual) {
            return None;
        }
        if let Some(name) = copy_to {
            from_context.push(Entity {
                name: Arc::from(name.as_str()),
                value: actual.clone(),
                text: text.to_string(),
                wildcard: false,
                capture: false,
            });
        }
    }
    let mut entities = st.entities.clone();
    for (name, value) in &data.slots {
        if !entities.iter().any(|e| &*e.name == name) {
            entities.push(Entity {
                name: Arc::from(name.as_str()),
                value: value.clone(),
                text: String::new(),
                wildcard: false,
                capture: false,
            });
        }
    }
    for entity in from_context {
        if !entities.iter().any(|e| e.name == entity.name) {
            entities.push(entity);
        }
    }
    let mut context = Map::new();
    for (k, v) in &st.context {
        context.insert(k.clone(), v.clone());
    }
    Some(Hit {
        sentence,
        entities,
        context,
        wildcards: st.wildcards,
        literal: st.literal,
        listed: st.listed,
    })
}

/// Matches literal template text at `pos`. Returns the new position, the
/// word-start flag and how many literal characters matched.
fn text(
    bytes: &[u8],
    t: &[u8],
    mut pos: usize,
    mut ws: bool,
    furthest: &mut Furthest,
) -> Option<(usize, bool, u32)> {
    let n = bytes.len();
    // Like hassil, a matched chunk counts its length without edge spaces.
    let literal = t.trim_ascii().len() as u32;
    for &c in t {
        if c == b' ' {
            if pos < n && bytes[pos] == b' ' {
                pos += 1;
            } else if !(pos == 0 || pos == n || bytes[pos - 1] == b' ') {
                furthest.reach(pos);
                return None;
            }
            ws = true;
        } else {
            if ws && pos < n && bytes[pos] == b' ' {
                pos += 1;
            }
            if pos < n && bytes[pos] == c {
                pos += 1;
                ws = false;
            } else {
                furthest.reach(pos);
                return None;
            }
        }
    }
    furthest.reach(pos);
    Some((pos, ws, literal))
}

fn m(cx: &Cx, node: &Node, st: &mut St, pos: usize, ws: bool, k: K) {
    st.steps += 1;
    if st.steps > STEP_BUDGET {
        return;
    }
    match node {
        Node::Text(t) => {
            if let Some((p, w, lit)) = text(cx.bytes, t.as_bytes(), pos, ws, &mut st.furthest) {
                st.literal += lit;
                k(st, p, w);
                st.literal -= lit;
            }
        }
        Node::Seq(items) => seq(cx, items, st, pos, ws, k),
        Node::Alt(items) => {
            for item in items.iter() {
                m(cx, item, st, pos, ws, k);
            }
        }
        Node::Perm(items) => perm(cx, items, 0, st, pos, ws, k),
        Node::Rule(id) => m(cx, &cx.graph.rules[*id as usize], st, pos, ws, k),
        Node::Slot {
            list,
            slot,
            capture,
        } => slot_match(cx, *list, slot, *capture, st, pos, ws, k),
    }
}

fn seq(cx: &Cx, items: &[Node], st: &mut St, pos: usize, ws: bool, k: K) {
    match items.split_first() {
        None => k(st, pos, ws),
        Some((first, rest)) => m(cx, first, st, pos, ws, &mut |st, p, w| {
            seq(cx, rest, st, p, w, k)
        }),
    }
}

fn perm(cx: &Cx, items: &[Node], used: u64, st: &mut St, pos: usize, ws: bool, k: K) {
    let all = if items.len() >= 64 {
        u64::MAX
    } else {
        (1u64 << items.len()) - 1
    };
    if used == all {
        return k(st, pos, ws);
    }
    for (i, item) in items.iter().enumerate().take(64) {
        if used & (1 << i) != 0 {
            continue;
        }
        // Each item is its own group of words: " item ".
        let Some((p, w, _)) = text(cx.bytes, b" ", pos, ws, &mut st.furthest) else {
            continue;
        };
        m(cx, item, st, p, w, &mut |st, p2, w2| {
            if let Some((p3, w3, _)) = text(cx.bytes, b" ", p2, w2, &mut st.furthest) {
                perm(cx, items, used | (1 << i), st, p3, w3, k);
            }
        });
    }
}

fn push_entity(
    st: &mut St,
    name: &Arc<str>,
    value: Value,
    text: String,
    wildcard: bool,
    capture: bool,
) {
    st.entities.push(Entity {
        name: name.clone(),
        value,
        text,
        wildcard,
        capture,
    });
}

/// Where a slot's value is being read, and what it is read as: the slot's
/// name, whether it is an `@` capture, and the byte where the value starts
/// (after the word boundary before it).
struct SlotAt<'s> {
    slot: &'s Arc<str>,
    capture: bool,
    start: usize,
}

impl SlotAt<'_> {
    /// Records a value read for this slot; the caller pops it when it
    /// backtracks.
    fn push(&self, st: &mut St, value: Value, text: String, wildcard: bool) {
        push_entity(st, self.slot, value, text, wildcard, self.capture);
    }
}

/// Matches a `{list}` reference at `pos`: every value of the list that can
/// start there, by the list's kind, each pushed as an entity for the
/// continuation.
#[allow(clippy::too_many_arguments)]
fn slot_match(
    cx: &Cx,
    list: u32,
    slot: &Arc<str>,
    capture: bool,
    st: &mut St,
    pos: usize,
    ws: bool,
    k: K,
) {
    let bytes = cx.bytes;
    let n = bytes.len();
    let start = if ws && pos < n && bytes[pos] == b' ' {
        pos + 1
    } else {
        pos
    };
    if start >= n {
        return;
    }
    let at = SlotAt {
        slot,
        capture,
        start,
    };
    match &cx.graph.lists[list as usize] {
        CList::Values {
            values,
            by_first_word,
            other,
        } => {
            let candidates = value_candidates(cx, by_first_word, other, start);
            values_match(cx, values, &candidates, &at, st, k);
        }
        CList::Range(range) => range_match(cx, range, &at, st, k),
        CList::Wildcard(limits) => wildcard_match(cx, limits, &at, st, k),
        CList::Time { pm_hours } => builtin_match(
            cx,
            &|words| builtins::parse_time_in(words, *pm_hours),
            &at,
            st,
            k,
        ),
        CList::Date => builtin_match(cx, &builtins::parse_date, &at, st, k),
    }
}

/// The values of a list worth trying at `start`, in the list's order: those
/// whose plain-text spoken form begins with a prefix of the word there
/// (character-level matching lets `{name}['s]` read "kitchen's"), and every
/// value whose spoken form is a template.
fn value_candidates(
    cx: &Cx,
    by_first_word: &HashMap<Box<str>, Vec<u32>>,
    other: &[u32],
    start: usize,
) -> Vec<u32> {
    let token_end = cx.input.text[start..]
        .find(' ')
        .map(|i| start + i)
        .unwrap_or(cx.bytes.len());
    let word = &cx.input.text[start..token_end];
    let mut candidates: Vec<u32> = Vec::new();
    for (i, _) in word
        .char_indices()
        .skip(1)
        .chain(std::iter::once((word.len(), ' ')))
    {
        if let Some(found) = by_first_word.get(&word[..i]) {
            candidates.extend_from_slice(found);
        }
    }
    candidates.extend_from_slice(other);
    candidates.sort_unstable();
    candidates
}

/// Matches each candidate value of a list at the slot's start. A value
/// with a context applies only where the sentence's requires/excludes
/// context allows it, and while it is matched its context is in force for
/// the rest of the sentence. The value's literal text does not count as
/// the template's literal text; the input it covers is counted apart
/// ([`Hit::listed`]), so that of two readings of the same words the one
/// with the longer value wins ("classic rock" is a genre, not the sort
/// "classic" and the genre "rock").
fn values_match(cx: &Cx, values: &[CValue], candidates: &[u32], at: &SlotAt, st: &mut St, k: K) {
    let start = at.start;
    for &index in candidates {
        let value = &values[index as usize];
        if !value.context.is_empty()
            && (!requires_ok(&cx.data.requires_context, &value.context, true)
                || !excludes_ok(&cx.data.excludes_context, &value.context))
        {
            continue;
        }
        let saved_literal = st.literal;
        m(cx, &value.spoken, st, start, true, &mut |st, p, _w| {
            if p == start {
                return; // a value must consume words
            }
            let inner_literal = st.literal;
            st.literal = saved_literal;
            let spoken = cx.input.spoken(start, p);
            let v = value
                .out
                .clone()
                .unwrap_or_else(|| Value::String(spoken.clone()));
            at.push(st, v, spoken, false);
            let listed = cx.bytes[start..p].trim_ascii().len() as u32;
            st.listed += listed;
            let context_len = st.context.len();
            for (key, val) in &value.context {
                st.context.push((key.clone(), val.clone()));
            }
            k(st, p, true);
            st.context.truncate(context_len);
            st.listed -= listed;
            st.entities.pop();
            st.literal = inner_literal;
        });
    }
}

/// Matches a number of a `range` list at the slot's start: digits, an
/// optional minus, and (for lists with fractions) a decimal part, tried
/// first. The value is the number times the list's multiplier.
fn range_match(cx: &Cx, range: &RangeDef, at: &SlotAt, st: &mut St, k: K) {
    let start = at.start;
    let rest = &cx.bytes[start..];
    for end in number_readings(rest, range) {
        let number_text = std::str::from_utf8(&rest[..end])
            .unwrap_or("")
            .replace(',', ".");
        let Ok(number) = number_text.parse::<f64>() else {
            continue;
        };
        if !range_accepts(range, number) {
            continue;
        }
        let value = range_value(number * range.multiplier);
        let spoken = cx.input.spoken(start, start + end);
        at.push(st, value, spoken, false);
        k(st, start + end, false);
        st.entities.pop();
    }
}

/// Where the number at the start of `rest` may end: after its decimal part
/// (when the range takes fractions and there is one), then after its whole
/// part. Empty if `rest` does not start with a number.
fn number_readings(rest: &[u8], range: &RangeDef) -> Vec<usize> {
    let mut end = 0;
    if rest.first() == Some(&b'-') {
        end = 1;
    }
    let digits_start = end;
    while end < rest.len() && rest[end].is_ascii_digit() {
        end += 1;
    }
    if end == digits_start {
        return Vec::new();
    }
    let mut readings = vec![end];
    if range.fractions > 1
        && end + 1 < rest.len()
        && matches!(rest[end], b'.' | b',')
        && rest[end + 1].is_ascii_digit()
    {
        let mut frac_end = end + 1;
        while frac_end < rest.len() && rest[frac_end].is_ascii_digit() {
            frac_end += 1;
        }
        readings.insert(0, frac_end);
    }
    readings
}

/// A range slot's value as JSON: an integer when it is a whole number that
/// fits one exactly, else a float (`null` for a number JSON cannot hold).
fn range_value(scaled: f64) -> Value {
    if scaled.fract() == 0.0 && scaled.abs() < 9.0e15 {
        Value::from(scaled as i64)
    } else {
        serde_json::Number::from_f64(scaled)
            .map(Value::Number)
            .unwrap_or(Value::Null)
    }
}

/// Matches a wildcard slot: one or more whole words from the slot's start,
/// shortest first. What the rest of the sentence reaches after it is not
/// counted as progress (see [`Furthest`]): the wildcard, not the template,
/// got it there.
fn wildcard_match(cx: &Cx, limits: &WildcardDef, at: &SlotAt, st: &mut St, k: K) {
    let Some(first) = cx.input.token_starting_at(at.start) else {
        return;
    };
    let limited = limits != &WildcardDef::default();
    let norm = |i: usize| &cx.input.text[cx.input.starts[i]..cx.input.ends[i]];
    for last in first..cx.input.ends.len() {
        // An unlimited wildcard takes any words: nothing to collect.
        let mut words: Vec<&str> = Vec::new();
        if limited {
            words.extend((first..=last).map(norm));
        }
        let whole = !limited || limits.accepts(&words);
        // A possessive glued to the value's last word ("Miles Davis's
        // songs"): the value may also end before it, for `{artist}'s`.
        let bare = possessive_stem(norm(last), &cx.input.raw[last]).filter(|_| {
            if !limited {
                return true;
            }
            let mut stemmed = words.clone();
            let n = norm(last);
            stemmed[last - first] = &n[..n.len() - 2];
            limits.accepts(&stemmed)
        });
        if !whole && bare.is_none() {
            // A longer value still contains the excluded word, but may
            // get past a forbidden start only if it is not one.
            if words
                .iter()
                .any(|w| limits.excluding.iter().any(|e| e == w))
            {
                return;
            }
            continue;
        }
        let end = cx.input.ends[last];
        let spoken = cx.input.raw[first..=last].join(" ");
        at.push(st, Value::String(spoken.clone()), spoken, true);
        st.wildcards += 1;
        let counting = std::mem::replace(&mut st.furthest.counting, false);
        if whole {
            k(st, end, true);
        }
        if let Some(bare) = bare {
            let spoken = cx.input.raw[first..last]
                .iter()
                .map(String::as_str)
                .chain([bare])
                .collect::<Vec<_>>()
                .join(" ");
            at.push(st, Value::String(spoken.clone()), spoken, true);
            k(st, end - 2, true);
            st.entities.pop();
        }
        st.furthest.counting = counting;
        st.wildcards -= 1;
        st.entities.pop();
        if st.steps > STEP_BUDGET {
            return;
        }
    }
}

/// The word before a possessive `'s` (`davis's` → `davis`), as spoken, if
/// the word (normalised `norm`, spoken `raw`) is one with a word before it.
fn possessive_stem<'r>(norm: &str, raw: &'r str) -> Option<&'r str> {
    if norm.len() <= 2 || !norm.ends_with("'s") {
        return None;
    }
    ["'s", "’s", "'S", "’S"]
        .iter()
        .find_map(|suffix| raw.strip_suffix(suffix))
        .filter(|bare| !bare.is_empty())
}

/// Matches a `time: {}` or `date: {}` slot: `parse` reads the next few
/// words (at most six) in every way it can, and each reading is tried.
fn builtin_match(
    cx: &Cx,
    parse: &dyn Fn(&[&str]) -> Vec<builtins::Reading>,
    at: &SlotAt,
    st: &mut St,
    k: K,
) {
    let Some(first) = cx.input.token_starting_at(at.start) else {
        return;
    };
    let words: Vec<&str> = (first..cx.input.starts.len().min(first + 6))
        .map(|i| &cx.input.text[cx.input.starts[i]..cx.input.ends[i]])
        .collect();
    for reading in parse(&words) {
        let end = cx.input.ends[first + reading.tokens - 1];
        let spoken = cx.input.raw[first..first + reading.tokens].join(" ");
        at.push(st, Value::String(reading.value), spoken, false);
        k(st, end, true);
        st.entities.pop();
    }
}

fn range_accepts(range: &RangeDef, number: f64) -> bool {
    if !(range.from..=range.to).contains(&number) {
        return false;
    }
    let fraction = number.fract().abs();
    if fraction != 0.0 {
        let ok = match range.fractions {
            2 => (fraction - 0.5).abs() < 1e-9,
            10 => ((fraction * 10.0).round() - fraction * 10.0).abs() < 1e-9,
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    let steps = (number - range.from) / range.step;
    range.step == 1.0 && fraction != 0.0 || (steps - steps.round()).abs() < 1e-9
}
