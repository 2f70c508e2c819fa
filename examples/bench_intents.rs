//! Times voicegate's matcher on every sentence of a Home Assistant–style
//! suite, for `scripts/bench-intents.sh` (which times hassil on the same
//! sentences in the same run and prints the ratio).
//!
//! Measures, like the hassil half: load (read the sentence files and the
//! fixtures, parse, compile), then for every sentence `--repeat` timed
//! recognitions with Home Assistant's choice rule; the per-sentence median,
//! and the median and mean of those over all sentences.
//!
//! Usage: bench_intents --sentences DIR --tests DIR [--repeat N] [--json]

use std::path::PathBuf;
use std::time::Instant;

use voicegate::intent::{Policy, Recognition, suite};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut sentences: Option<PathBuf> = None;
    let mut tests: Option<PathBuf> = None;
    let mut repeat: usize = 10;
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sentences" => sentences = args.next().map(PathBuf::from),
            "--tests" => tests = args.next().map(PathBuf::from),
            "--repeat" => {
                repeat = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .ok_or("--repeat needs a number")?
            }
            "--json" => json = true,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let sentences = sentences.ok_or("--sentences DIR is required")?;
    let tests = tests.ok_or("--tests DIR is required")?;
    let repeat = repeat.max(1);

    let started = Instant::now();
    let set = suite::suite_set(&sentences, &tests)?;
    let load_ms = started.elapsed().as_secs_f64() * 1e3;

    let cases = suite::read_cases(&tests)?;
    let mut medians = Vec::with_capacity(cases.len());
    let mut recognized = 0;
    let mut times = Vec::with_capacity(repeat);
    for case in &cases {
        // One untimed pass, as the hassil half does.
        if matches!(
            set.recognize_with(&case.sentence, &case.context, Policy::HassilBest),
            Recognition::Match(_)
        ) {
            recognized += 1;
        }
        times.clear();
        for _ in 0..repeat {
            let t = Instant::now();
            let result = set.recognize_with(&case.sentence, &case.context, Policy::HassilBest);
            times.push(t.elapsed().as_secs_f64() * 1e6);
            std::hint::black_box(result);
        }
        times.sort_by(f64::total_cmp);
        medians.push(times[times.len() / 2]);
    }
    let mean = medians.iter().sum::<f64>() / medians.len().max(1) as f64;
    medians.sort_by(f64::total_cmp);
    let median = medians.get(medians.len() / 2).copied().unwrap_or(0.0);
    let report = serde_json::json!({
        "engine": "voicegate",
        "sentences": cases.len(),
        "repeat": repeat,
        "load_ms": load_ms,
        "median_us_per_sentence": median,
        "mean_us_per_sentence": mean,
        "max_us_per_sentence": medians.last().copied().unwrap_or(0.0),
        "recognized": recognized,
    });
    if json {
        println!("{report}");
    } else {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    Ok(())
}
