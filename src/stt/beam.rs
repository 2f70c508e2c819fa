//! A deterministic beam search over next-token logits, for grammar-bound
//! decoding.
//!
//! Why it exists: whisper.cpp's own "beam search" does not keep the k best
//! continuations of each hypothesis. It *draws* k tokens from the
//! hypothesis's softmax (`whisper_sample_token_topk` samples with a
//! `std::discrete_distribution`). When one token is likely, all k draws
//! are that token and the beam collapses to one hypothesis; when the audio
//! is noisy, a poor token can be drawn ahead of a good one. Measured at
//! 6 dB kitchen noise on the speech benchmark, its beam of 3 and of 8 give
//! the same 103 of 124, so a wider beam bought nothing.
//!
//! This is the search OpenAI's whisper does (`decoding.py`'s
//! `BeamSearchDecoder`): every step, each live hypothesis offers its
//! `beam + 1` most likely next tokens under the constraint; of all those
//! candidates, the `beam` best (by summed log-probability) that do not end
//! live on, and the ones that end before them are finished. It stops when
//! `beam` hypotheses have finished or at the token limit, and returns the
//! finished hypothesis with the best log-probability per token.
//!
//! It is pure: the model is a [`NextToken`] (whisper's decoder in
//! `stt/whisper.rs`, a table in the tests), and the grammar a closure that masks
//! logits. No I/O, no randomness: the same logits give the same result.

/// Gives the logits of the token after a sequence.
pub trait NextToken {
    /// The error a model step can fail with.
    type Error;

    /// The logits (one per vocabulary entry) of the token that follows
    /// `tokens` (the decoded tokens so far; the model adds its own prompt).
    fn next_logits(&mut self, tokens: &[i32]) -> Result<Vec<f32>, Self::Error>;
}

/// What the search needs besides the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BeamConfig {
    /// Hypotheses kept per step (1: greedy).
    pub beam: usize,
    /// The longest hypothesis, in tokens (end-of-text not counted).
    pub max_tokens: usize,
    /// The end-of-text token.
    pub eot: i32,
}

/// One decoded hypothesis.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// Its tokens, without end-of-text.
    pub tokens: Vec<i32>,
    /// The sum of its tokens' log-probabilities under the constraint
    /// (end-of-text included when it ended).
    pub logprob: f64,
    /// Each token's log-probability *before* the constraint, as the model
    /// alone gives it (for a confidence the constraint cannot inflate).
    pub raw_logprobs: Vec<f32>,
    /// Whether it ended with end-of-text (rather than at the token limit).
    pub finished: bool,
}

impl Hypothesis {
    /// The ranking of finished hypotheses: log-probability per token (the
    /// end-of-text counted), so that short readings do not win merely by
    /// being short.
    fn score(&self) -> f64 {
        self.logprob / (self.tokens.len() + usize::from(self.finished)).max(1) as f64
    }
}

/// log Σ exp over the finite entries; `None` if there are none.
fn log_sum_exp(logits: &[f32]) -> Option<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return None;
    }
    let sum: f64 = logits
        .iter()
        .filter(|l| l.is_finite())
        .map(|&l| f64::from(l - max).exp())
        .sum();
    Some(f64::from(max) + sum.ln())
}

/// The `n` largest finite entries, largest first (ties: lower index first).
fn top_n(logits: &[f32], n: usize) -> Vec<(usize, f32)> {
    let mut best: Vec<(usize, f32)> = Vec::with_capacity(n + 1);
    for (i, &l) in logits.iter().enumerate() {
        if !l.is_finite() || (best.len() == n && l <= best[n - 1].1) {
            continue;
        }
        let at = best.partition_point(|&(_, b)| b >= l);
        best.insert(at, (i, l));
        best.truncate(n);
    }
    best
}

/// Decodes with a beam of `config.beam`. `constrain(tokens, logits)` masks
/// the logits of the token after `tokens` (−∞ forbids a token); the
/// logits it sees are the model's, cut to the vocabulary up to and
/// including end-of-text. Returns `None` when no hypothesis could take a
/// single step (everything forbidden from the start).
pub fn search<M: NextToken>(
    model: &mut M,
    mut constrain: impl FnMut(&[i32], &mut [f32]),
    config: BeamConfig,
) -> Result<Option<Hypothesis>, M::Error> {
    let beam = config.beam.max(1);
    let eot = usize::try_from(config.eot).unwrap_or(0);
    let mut live = vec![Hypothesis {
        tokens: Vec::new(),
        logprob: 0.0,
        raw_logprobs: Vec::new(),
        finished: false,
    }];
    let mut finished: Vec<Hypothesis> = Vec::new();
    for step in 0..config.max_tokens {
        // (parent, token, its constrained and raw log-probabilities).
        let mut candidates: Vec<(usize, usize, f64, f32)> = Vec::new();
        // Visit the hypotheses in token order, and every other step in
        // reverse: neighbours share the longest prefixes, and the first
        // visited continues the one visited last. A model that caches one
        // sequence (whisper's decoder does) then decodes the least.
        let mut order: Vec<usize> = (0..live.len()).collect();
        order.sort_by(|&a, &b| live[a].tokens.cmp(&live[b].tokens));
        if step % 2 == 1 {
            order.reverse();
        }
        for parent in order {
            let hyp = &live[parent];
            let mut logits = model.next_logits(&hyp.tokens)?;
            logits.truncate(eot + 1);
            let raw = logits.clone();
            let Some(raw_lse) = log_sum_exp(&raw) else {
                continue;
            };
            constrain(&hyp.tokens, &mut logits);
            let Some(lse) = log_sum_exp(&logits) else {
                continue;
            };
            for (token, logit) in top_n(&logits, beam + 1) {
                let logprob = f64::from(logit) - lse;
                let raw_logprob = (f64::from(raw[token]) - raw_lse) as f32;
                candidates.push((parent, token, hyp.logprob + logprob, raw_logprob));
            }
        }
        // Best first; equal scores in the order they were offered.
        candidates.sort_by(|a, b| b.2.total_cmp(&a.2));
        let mut next = Vec::with_capacity(beam);
        for (parent, token, logprob, raw_logprob) in candidates {
            let mut hyp = live[parent].clone();
            hyp.logprob = logprob;
            if token == eot {
                hyp.finished = true;
                finished.push(hyp);
                continue;
            }
            hyp.tokens.push(token as i32);
            hyp.raw_logprobs.push(raw_logprob);
            next.push(hyp);
            if next.len() == beam {
                break;
            }
        }
        live = next;
        // Log-probabilities only fall as tokens are added: once a finished
        // hypothesis is likelier than every live one, no live one can
        // overtake it as a whole. (Per token it could, by running on with
        // predictable tokens: a loop is just that.)
        let best_finished = finished
            .iter()
            .map(|h| h.logprob)
            .fold(f64::NEG_INFINITY, f64::max);
        let settled = live.iter().all(|h| h.logprob <= best_finished);
        if finished.len() >= beam || settled {
            break;
        }
    }
    // Unfinished hypotheses only when nothing finished (the token limit).
    let pool = if finished.is_empty() { live } else { finished };
    Ok(pool
        .into_iter()
        .filter(|h| !h.tokens.is_empty() || h.finished)
        .max_by(|a, b| a.score().total_cmp(&b.score())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A model given as a table: the log-probabilities of the tokens after
    /// each prefix (anything else: −∞). Counts its calls.
    struct Table {
        vocab: usize,
        next: HashMap<Vec<i32>, Vec<(i32, f32)>>,
        calls: usize,
    }

    /// A prefix and the probabilities of the tokens after it.
    type Row<'a> = (&'a [i32], &'a [(i32, f32)]);

    impl Table {
        fn new(vocab: usize, rows: &[Row]) -> Table {
            Table {
                vocab,
                next: rows
                    .iter()
                    .map(|(prefix, next)| (prefix.to_vec(), next.to_vec()))
                    .collect(),
                calls: 0,
            }
        }
    }

    impl NextToken for Table {
        type Error = ();
        fn next_logits(&mut self, tokens: &[i32]) -> Result<Vec<f32>, ()> {
            self.calls += 1;
            let mut logits = vec![f32::NEG_INFINITY; self.vocab];
            for &(t, p) in self.next.get(tokens).into_iter().flatten() {
                logits[t as usize] = p.ln();
            }
            Ok(logits)
        }
    }

    const EOT: i32 = 9;

    fn config(beam: usize) -> BeamConfig {
        BeamConfig {
            beam,
            max_tokens: 10,
            eot: EOT,
        }
    }

    fn free(_: &[i32], _: &mut [f32]) {}

    /// The classic case greedy gets wrong: the likelier first token leads
    /// to a poor continuation.
    fn garden_path() -> Table {
        Table::new(
            10,
            &[
                (&[], &[(1, 0.6), (2, 0.4)]),
                (&[1], &[(3, 0.3), (4, 0.3), (5, 0.4)]),
                (&[2], &[(6, 0.95), (7, 0.05)]),
                (&[1, 3], &[(EOT, 1.0)]),
                (&[1, 4], &[(EOT, 1.0)]),
                (&[1, 5], &[(EOT, 1.0)]),
                (&[2, 6], &[(EOT, 1.0)]),
                (&[2, 7], &[(EOT, 1.0)]),
            ],
        )
    }

    #[test]
    fn greedy_follows_the_likeliest_token() {
        let best = search(&mut garden_path(), free, config(1))
            .unwrap()
            .unwrap();
        assert_eq!(best.tokens, [1, 5]);
        assert!(best.finished);
    }

    #[test]
    fn a_beam_finds_the_likelier_sentence() {
        // 0.4 · 0.95 = 0.38 beats 0.6 · 0.4 = 0.24.
        let best = search(&mut garden_path(), free, config(2))
            .unwrap()
            .unwrap();
        assert_eq!(best.tokens, [2, 6]);
        let want = (0.4f64 * 0.95).ln();
        assert!((best.logprob - want).abs() < 1e-5, "{}", best.logprob);
    }

    #[test]
    fn the_same_logits_give_the_same_result() {
        let a = search(&mut garden_path(), free, config(3)).unwrap();
        let b = search(&mut garden_path(), free, config(3)).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn the_constraint_steers_and_raw_probabilities_are_kept() {
        // Forbid token 2 first: the beam must take 1, and token 5's raw
        // probability is the model's 0.4, though 5 is then the only choice.
        let only_five_after_one = |tokens: &[i32], logits: &mut [f32]| {
            if tokens.is_empty() {
                logits[2] = f32::NEG_INFINITY;
            } else if tokens == [1] {
                logits[3] = f32::NEG_INFINITY;
                logits[4] = f32::NEG_INFINITY;
            }
        };
        let best = search(&mut garden_path(), only_five_after_one, config(3))
            .unwrap()
            .unwrap();
        assert_eq!(best.tokens, [1, 5]);
        // Constrained: 1 (all of the mass left) · 5 (all) · end (all).
        assert!(best.logprob.abs() < 1e-5, "{}", best.logprob);
        let raw: Vec<f32> = best.raw_logprobs.iter().map(|l| l.exp()).collect();
        assert!(
            (raw[0] - 0.6).abs() < 1e-5 && (raw[1] - 0.4).abs() < 1e-5,
            "{raw:?}"
        );
    }

    #[test]
    fn nothing_allowed_gives_nothing() {
        let forbid_all = |_: &[i32], logits: &mut [f32]| logits.fill(f32::NEG_INFINITY);
        assert_eq!(
            search(&mut garden_path(), forbid_all, config(3)).unwrap(),
            None
        );
    }

    #[test]
    fn the_token_limit_ends_a_loop() {
        // A model that never ends: the best unfinished hypothesis comes back.
        let mut looping = Table::new(10, &[]);
        looping.next.insert(vec![], vec![(1, 1.0)]);
        for n in 1..=4 {
            looping.next.insert(vec![1; n], vec![(1, 1.0)]);
        }
        let mut cfg = config(2);
        cfg.max_tokens = 4;
        let best = search(&mut looping, free, cfg).unwrap().unwrap();
        assert_eq!(best.tokens, [1, 1, 1, 1]);
        assert!(!best.finished);
        assert!(looping.calls <= 4, "{} calls", looping.calls);
    }

    #[test]
    fn per_token_scores_do_not_favour_short_readings() {
        // "1 EOT": 0.5 · 0.4 = 0.2, per token (with the end) ln 0.2 / 2 =
        // −0.80. "2 3 4 EOT": 0.5 · 0.9 · 0.5 · 0.5 = 0.1125, less in all,
        // but −0.55 per token: the longer reading wins. (While it runs,
        // it stays likelier than "1 EOT", so the search goes on.)
        let mut model = Table::new(
            10,
            &[
                (&[], &[(1, 0.5), (2, 0.5)]),
                (&[1], &[(EOT, 0.4), (5, 0.6)]),
                (&[1, 5], &[(6, 0.01)]),
                (&[2], &[(3, 0.9), (4, 0.1)]),
                (&[2, 3], &[(4, 0.5), (5, 0.5)]),
                (&[2, 4], &[(EOT, 1.0)]),
                (&[2, 3, 4], &[(EOT, 0.5), (6, 0.5)]),
                (&[2, 3, 5], &[(EOT, 0.1), (6, 0.9)]),
            ],
        );
        let best = search(&mut model, free, config(2)).unwrap().unwrap();
        assert_eq!(best.tokens, [2, 3, 4]);
    }

    #[test]
    fn a_likelier_finished_reading_ends_the_search() {
        // "1 EOT" (0.54) finishes at the second step; "2 2 2 ..." is stuck
        // at 0.4 and can only fall: it is not run to the token limit.
        let mut model = Table::new(10, &[(&[], &[(1, 0.6), (2, 0.4)]), (&[1], &[(EOT, 0.9)])]);
        for n in 1..=10 {
            model.next.insert(vec![2; n], vec![(2, 1.0)]);
        }
        let best = search(&mut model, free, config(2)).unwrap().unwrap();
        assert_eq!(best.tokens, [1]);
        assert_eq!(
            model.calls, 3,
            "one call at the start, one per hypothesis after"
        );
    }
}
