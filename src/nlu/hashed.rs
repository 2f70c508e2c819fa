//! A sentence embedder without a model: hashed word and word-pair features
//! weighted by their rarity in the training sentences (IDF), as a unit
//! vector. It needs nothing installed and runs in microseconds, which makes
//! it the baseline the neural embedder is measured against
//! (`voicegate eval nlu --fallback hashed`), and what tests use.

use std::collections::HashMap;

use super::{Embedder, NluError};
use crate::intent::normalize;

/// Feature space size (a power of two).
const DIMS: usize = 1 << 14;

/// The embedder: IDF weights learned from the training sentences.
#[derive(Debug, Clone)]
pub struct HashedEmbedder {
    idf: HashMap<u32, f32>,
    /// The weight of a feature never seen in training.
    unseen: f32,
}

impl HashedEmbedder {
    /// Learns the feature weights from `texts` (the training sentences).
    pub fn fit(texts: &[&str]) -> HashedEmbedder {
        let mut df: HashMap<u32, usize> = HashMap::new();
        for text in texts {
            let mut feats = features(text);
            feats.sort_unstable();
            feats.dedup();
            for f in feats {
                *df.entry(f).or_default() += 1;
            }
        }
        let n = texts.len().max(1) as f32;
        let idf = df
            .into_iter()
            .map(|(f, d)| (f, (n / d as f32).ln() + 1.0))
            .collect();
        HashedEmbedder {
            idf,
            unseen: n.ln() + 1.0,
        }
    }
}

impl Embedder for HashedEmbedder {
    fn name(&self) -> &str {
        "hashed"
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, NluError> {
        Ok(texts
            .iter()
            .map(|text| {
                let mut v = vec![0.0f32; DIMS];
                for f in features(text) {
                    v[f as usize % DIMS] += self.idf.get(&f).copied().unwrap_or(self.unseen);
                }
                let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                if norm > 0.0 {
                    v.iter_mut().for_each(|x| *x /= norm);
                }
                v
            })
            .collect())
    }
}

/// Hashed features: each normalised word, and each pair of neighbours.
fn features(text: &str) -> Vec<u32> {
    let words: Vec<String> = normalize::tokenize(text)
        .into_iter()
        .map(|t| t.norm)
        .filter(|w| !w.is_empty())
        .collect();
    let mut out: Vec<u32> = words.iter().map(|w| hash(&[w])).collect();
    out.extend(words.windows(2).map(|p| hash(&[&p[0], &p[1]])));
    out
}

/// FNV-1a over the words, separated.
fn hash(words: &[&String]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for w in words {
        for b in w.bytes().chain([0x1f]) {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rare_shared_words_count_more_than_common_ones() {
        let e = HashedEmbedder::fit(&["set a timer", "play a song", "buy a lamp"]);
        let v = e
            .embed(&["a timer please", "set a timer", "play a song"])
            .expect("embed");
        let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        assert!(cos(&v[0], &v[1]) > cos(&v[0], &v[2]));
        let norm: f32 = v[1].iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }
}
