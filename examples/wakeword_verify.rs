//! The second stage alone, on whole clips: whisper's forced score of a
//! phrase (mean log-probability of its tokens) for every WAV in some
//! directories, one line per file: path, mean, min, seconds. This is the
//! measurement that chose the cascade (docs/design/wakeword.md).
//!
//! Usage: wakeword_verify GGML_MODEL " Jarvis" DIR... (THREADS=n to choose
//! whisper's threads)
use std::path::PathBuf;
use voicegate::stt::{SttOptions, WhisperTranscriber};

fn main() {
    let mut args = std::env::args().skip(1);
    let model = PathBuf::from(args.next().unwrap());
    let phrase = args.next().unwrap();
    let prompt = std::env::var("PROMPT").ok();
    let mut opts = SttOptions::default();
    if let Ok(t) = std::env::var("THREADS") {
        opts.threads = t.parse().unwrap();
    }
    let mut w = WhisperTranscriber::load(&model, opts).unwrap();
    let tokens = w.phrase_tokens(&phrase).unwrap();
    eprintln!("tokens {tokens:?}");
    for dir in args {
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "wav"))
            .collect();
        files.sort();
        for f in files {
            let samples =
                voicegate::audio::read_wav_mono_16k(&f, voicegate::audio::WavAccept::Exact16kMono)
                    .unwrap();
            let s = w
                .score_phrase(&samples, &tokens, prompt.as_deref())
                .unwrap();
            println!(
                "{}\t{:.3}\t{:.3}\t{:.3}",
                f.display(),
                s.mean_logprob,
                s.min_logprob,
                s.secs
            );
        }
    }
}
