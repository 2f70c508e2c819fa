//! The training sentences' embeddings, kept on disk between starts.
//!
//! Training the fallback embeds every training sentence (a few thousand);
//! with MiniLM that is seconds of work at each start and each reload, for
//! the same sentences every time. The cache maps a sentence to its vector
//! for one model (the file name carries the model's name and hash), so a
//! changed model never reuses old vectors and an edited intent file embeds
//! only its new sentences. A damaged or unreadable file is ignored (the
//! vectors are computed again); writes go to a temporary file renamed
//! into place, so a killed process leaves the old file or the new one.
//!
//! Format: repeated records of `u32` text length (little-endian), the
//! UTF-8 text, `u32` dimension count, that many `f32`s.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::{Embedder, NluError};

/// Vectors by sentence, for one model.
#[derive(Debug, Default)]
pub struct EmbeddingCache {
    path: Option<PathBuf>,
    vectors: HashMap<String, Vec<f32>>,
    /// New vectors since the file was read.
    dirty: bool,
}

impl EmbeddingCache {
    /// The cache in `path` (empty if the file is missing or damaged).
    pub fn open(path: &Path) -> EmbeddingCache {
        let vectors = std::fs::read(path)
            .ok()
            .and_then(|bytes| parse(&bytes))
            .unwrap_or_default();
        EmbeddingCache {
            path: Some(path.to_path_buf()),
            vectors,
            dirty: false,
        }
    }

    /// How many vectors it holds.
    pub fn len(&self) -> usize {
        self.vectors.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.vectors.is_empty()
    }

    /// The vectors of `texts`: cached ones as they are, the rest from
    /// `embedder` (in batches), then kept.
    pub fn embed(
        &mut self,
        embedder: &dyn Embedder,
        texts: &[&str],
    ) -> Result<Vec<Vec<f32>>, NluError> {
        let missing: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| !self.vectors.contains_key(*t))
            .collect();
        for chunk in missing.chunks(64) {
            for (text, v) in chunk.iter().zip(embedder.embed(chunk)?) {
                self.vectors.insert(text.to_string(), v);
                self.dirty = true;
            }
        }
        Ok(texts
            .iter()
            .map(|t| self.vectors.get(*t).cloned().unwrap_or_default())
            .collect())
    }

    /// Writes the file if anything was added (an error leaves the old file
    /// and is the caller's to report).
    pub fn save(&mut self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for (text, v) in &self.vectors {
            file.write_all(&(text.len() as u32).to_le_bytes())?;
            file.write_all(text.as_bytes())?;
            file.write_all(&(v.len() as u32).to_le_bytes())?;
            for x in v {
                file.write_all(&x.to_le_bytes())?;
            }
        }
        file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)?;
        self.dirty = false;
        Ok(())
    }
}

fn parse(bytes: &[u8]) -> Option<HashMap<String, Vec<f32>>> {
    let mut out = HashMap::new();
    let mut at = 0usize;
    let mut take = |n: usize| -> Option<&[u8]> {
        let slice = bytes.get(at..at.checked_add(n)?)?;
        at += n;
        Some(slice)
    };
    loop {
        let Some(len) = take(4) else {
            return Some(out);
        };
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let text = std::str::from_utf8(take(len)?).ok()?.to_string();
        let dims = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
        if dims > 1 << 16 {
            return None;
        }
        let raw = take(dims.checked_mul(4)?)?;
        let v: Vec<f32> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if v.iter().any(|x| !x.is_finite()) {
            return None;
        }
        out.insert(text, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the sentences it embeds.
    struct Counting(AtomicUsize);

    impl Embedder for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, NluError> {
            self.0.fetch_add(texts.len(), Ordering::SeqCst);
            Ok(texts.iter().map(|t| vec![t.len() as f32, 1.0]).collect())
        }
    }

    #[test]
    fn a_second_start_embeds_only_new_sentences() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.cache");
        let e = Counting(AtomicUsize::new(0));
        let mut cache = EmbeddingCache::open(&path);
        let first = cache.embed(&e, &["a", "bb"]).expect("embed");
        cache.save().expect("save");
        assert_eq!(e.0.load(Ordering::SeqCst), 2);
        let mut again = EmbeddingCache::open(&path);
        let second = again.embed(&e, &["bb", "a", "ccc"]).expect("embed");
        assert_eq!(e.0.load(Ordering::SeqCst), 3, "only ccc is new");
        assert_eq!(second[0], first[1]);
        assert_eq!(second[1], first[0]);
    }

    #[test]
    fn a_damaged_file_is_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.cache");
        std::fs::write(&path, [7u8, 0, 0, 0, b'a']).expect("write");
        assert!(EmbeddingCache::open(&path).is_empty());
        std::fs::write(&path, [200u8, 255, 255, 255]).expect("write");
        assert!(EmbeddingCache::open(&path).is_empty());
    }
}
