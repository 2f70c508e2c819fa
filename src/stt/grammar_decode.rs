//! The intents' grammar as a mask on whisper's next-token logits.
//!
//! Why it exists: grammar-bound decoding needs, at every step of every
//! hypothesis, the vocabulary tokens that keep the transcript inside the
//! loaded intents' sentences ([`crate::intent::grammar`], which knows
//! nothing of whisper) and spelt the way whisper writes a sentence
//! ([`Shape`]). [`GrammarDecode`] holds whisper's vocabulary as the
//! grammar's characters, follows each hypothesis's grammar position and
//! shape, and caches the tokens each position allows.

use std::collections::HashMap;

use whisper_rs::WhisperContext;

use super::SttGrammar;
use super::shape::Shape;
use crate::intent::grammar::{Char, Cursor, Dfa, symbol};

/// What grammar-bound decoding needs: the automaton, each vocabulary
/// token's text, and what it has learnt about the hypotheses seen so far.
///
/// The beam search asks for one step of one hypothesis at a time, in no
/// fixed order: so nothing here assumes one growing sequence. Each call
/// names its hypothesis (the tokens chosen so far), whose grammar cursor and
/// text shape are looked up from its parent's (computed one step earlier).
pub(super) struct GrammarDecode {
    /// Characters of each text token (ids below end-of-text), classified
    /// for the grammar and as written, for [`Shape`].
    tokens: Vec<(Box<[Char]>, Box<str>)>,
    eot: i32,
    penalty: f32,
    dfa: Dfa,
    /// The DFA's start, taken once per decode (taking it may rebuild the DFA).
    start: Cursor,
    /// Where each hypothesis seen has got to; `None` once it left the
    /// grammar (decoding is then ended).
    at: HashMap<Vec<i32>, Option<(Cursor, Shape)>>,
    /// For each grammar position met, the tokens the grammar allows there
    /// (before the spelling rules): most positions allow a few dozen of
    /// the 51 864, so each step after the first visit is cheap.
    /// With each, whether the sentence is complete after it (a full stop
    /// may only come there).
    allowed: HashMap<Cursor, std::sync::Arc<[(u32, bool)]>>,
}

impl GrammarDecode {
    pub(super) fn new(ctx: &WhisperContext, g: &SttGrammar) -> GrammarDecode {
        let eot = ctx.token_eot();
        let tokens = (0..eot)
            .map(|id| match ctx.token_to_bytes(id) {
                Ok(bytes) => match std::str::from_utf8(bytes) {
                    Ok(text) => (text.chars().map(symbol).collect(), text.into()),
                    // Part of a multi-byte character: not in the alphabet.
                    Err(_) => (vec![Char::Invalid].into_boxed_slice(), "".into()),
                },
                Err(_) => (vec![Char::Invalid].into_boxed_slice(), "".into()),
            })
            .collect();
        let mut dfa = Dfa::new(g.grammar.clone());
        GrammarDecode {
            tokens,
            eot,
            penalty: g.penalty,
            start: dfa.start(),
            dfa,
            at: HashMap::new(),
            allowed: HashMap::new(),
        }
    }

    pub(super) fn reset(&mut self) {
        self.at.clear();
        // The DFA starts afresh when it has grown too big; positions
        // cached for the old one mean nothing then.
        let before = self.dfa.states();
        self.start = self.dfa.start();
        if self.dfa.states() < before {
            self.allowed.clear();
        }
    }

    /// Where `sequence` has got to, from its parent's position.
    fn position(&mut self, sequence: &[i32]) -> Option<(Cursor, Shape)> {
        if let Some(&at) = self.at.get(sequence) {
            return at;
        }
        let at = match sequence.split_last() {
            None => Some((self.start, Shape::default())),
            Some((&last, parent)) => self.position(parent).and_then(|(cursor, shape)| {
                match usize::try_from(last).ok().and_then(|i| self.tokens.get(i)) {
                    Some((chars, text)) => {
                        let cursor = self.dfa.feed_chars(cursor, chars);
                        let shape = shape.feed_str(text)?;
                        (!cursor.is_dead()).then_some((cursor, shape))
                    }
                    // Special tokens (timestamps) are not text.
                    None => Some((cursor, shape)),
                }
            }),
        };
        self.at.insert(sequence.to_vec(), at);
        at
    }

    /// One decoding step of one hypothesis: `sequence` is its tokens so
    /// far, `logits` the next token's up to and including end-of-text.
    pub(super) fn step(&mut self, sequence: &[i32], logits: &mut [f32]) {
        let eot = self.eot as usize;
        let Some((cursor, shape)) = self.position(sequence) else {
            // Left the grammar (cannot happen while the penalty is
            // infinite): end here; the matcher will not understand it.
            end_now(logits, eot);
            return;
        };
        let in_grammar = match self.allowed.get(&cursor) {
            Some(ids) => ids.clone(),
            None => {
                let dfa = &mut self.dfa;
                let ids: std::sync::Arc<[(u32, bool)]> = self
                    .tokens
                    .iter()
                    .enumerate()
                    .filter(|(_, (chars, _))| !chars.is_empty())
                    .filter_map(|(id, (chars, _))| {
                        let next = dfa.feed_chars(cursor, chars);
                        (!next.is_dead()).then(|| (id as u32, dfa.is_accepting(next)))
                    })
                    .collect();
                self.allowed.insert(cursor, ids.clone());
                ids
            }
        };
        // Penalise everything, then give the tokens that fit their logits back.
        let text_tokens = self.tokens.len().min(logits.len());
        let original: Vec<(usize, f32)> = in_grammar
            .iter()
            .map(|&(id, complete)| (id as usize, complete))
            .filter(|&(id, _)| id < text_tokens && logits[id].is_finite())
            .filter(|&(id, complete)| {
                // Spelt the way whisper writes, and a full stop only where
                // the sentence is complete (else it is a dead end).
                shape
                    .feed_str(&self.tokens[id].1)
                    .is_some_and(|s| complete || !s.ends_sentence())
            })
            .map(|(id, _)| (id, logits[id]))
            .collect();
        for l in &mut logits[..text_tokens] {
            if self.penalty.is_infinite() {
                *l = f32::NEG_INFINITY;
            } else {
                *l -= self.penalty;
            }
        }
        for (id, l) in original {
            logits[id] = l;
        }
        if eot < logits.len() && !self.dfa.is_accepting(cursor) {
            if self.penalty.is_infinite() {
                logits[eot] = f32::NEG_INFINITY;
            } else {
                logits[eot] -= self.penalty;
            }
        }
        // With nothing allowed (and an infinite penalty) every logit is now
        // −∞, and the search drops the hypothesis: a dead end.
    }
}

/// Leaves end-of-text as the only choice.
fn end_now(logits: &mut [f32], eot: usize) {
    for l in logits.iter_mut() {
        *l = f32::NEG_INFINITY;
    }
    if let Some(l) = logits.get_mut(eot) {
        *l = 0.0;
    }
}
