//! Times the sentence embedder: embeds 200 short sentences one at a time
//! (as the fallback recogniser will, one utterance per call) and prints the
//! milliseconds per sentence (p50, p90, max), then the same sentences as
//! one batch.
//!
//! ```sh
//! voicegate models install all-minilm-l6-v2
//! cargo run --release --example embed_bench
//! ```

use std::time::Instant;

use voicegate::nlu::embed::Embedder;

const VERBS: [&str; 10] = [
    "set",
    "start",
    "cancel",
    "play",
    "stop",
    "turn up",
    "order",
    "book",
    "remind me to",
    "what is",
];
const OBJECTS: [&str; 20] = [
    "a timer for ten minutes",
    "some jazz in the kitchen",
    "the alarm for seven tomorrow",
    "a table for two at eight",
    "the volume a little",
    "more paper towels",
    "the weather in Paris",
    "a 10 minute countdown",
    "water the plants tonight",
    "the next song please",
    "my coffee order",
    "the lights in the living room",
    "a reminder at noon",
    "the news",
    "two pizzas for delivery",
    "the heating to twenty degrees",
    "my last message",
    "the time in Tokyo",
    "a taxi to the station",
    "the shopping list",
];

fn main() {
    let embedder = match Embedder::locate() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let sentences: Vec<String> = (0..200)
        .map(|i| {
            format!(
                "{} {}",
                VERBS[i % VERBS.len()],
                OBJECTS[(i * 7) % OBJECTS.len()]
            )
        })
        .collect();
    // Warm up (first-call allocations, thread pool start).
    for s in sentences.iter().take(10) {
        let _ = embedder.embed(&[s]);
    }
    let mut ms: Vec<f64> = Vec::with_capacity(sentences.len());
    for s in &sentences {
        let t = Instant::now();
        if let Err(e) = embedder.embed(&[s]) {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    let tokens: usize = sentences
        .iter()
        .map(|s| embedder.tokenizer().encode(s).len())
        .sum();
    println!(
        "{} sentences, {:.1} tokens each on average",
        sentences.len(),
        tokens as f64 / sentences.len() as f64
    );
    println!(
        "one at a time: p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms per sentence",
        at(0.5),
        at(0.9),
        at(1.0)
    );
    let refs: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let t = Instant::now();
    if let Err(e) = embedder.embed(&refs) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
    println!(
        "one batch of {}: {:.2} ms per sentence",
        refs.len(),
        t.elapsed().as_secs_f64() * 1e3 / refs.len() as f64
    );
}
