//! Step 1 of training, the speech: the phrase (in a few spellings) and many
//! other words and phrases ([`NEGATIVE_TEXTS`]), spoken by espeak-ng with
//! random voice settings and, beside it, by piper when installed. Every
//! tenth utterance of each source is held out for the test figures.

use std::collections::HashMap;

use super::Amounts;
use super::log;
use crate::wakeword::WakewordError;
use crate::wakeword::augment::Rng;
use crate::wakeword::synth::{Espeak, EspeakVoice, Piper, PiperRequest};

/// Source utterances.
pub(super) struct Utterance {
    pub audio: Vec<f32>,
    pub test: bool,
    pub kind: &'static str,
}

/// The synthesised utterances.
pub(super) struct Speech {
    /// Utterances of the phrase.
    pub positives: Vec<Utterance>,
    /// Utterances of other texts.
    pub negatives: Vec<Utterance>,
    /// Distinct negative texts.
    pub negative_texts: usize,
}

impl Speech {
    /// Utterances by source (`espeak`, `piper`): of the phrase, of other texts.
    pub fn counts(&self) -> (HashMap<String, usize>, HashMap<String, usize>) {
        let count = |utts: &[Utterance]| {
            let mut by_kind = HashMap::new();
            for u in utts {
                *by_kind.entry(u.kind.to_string()).or_insert(0) += 1;
            }
            by_kind
        };
        (count(&self.positives), count(&self.negatives))
    }
}

/// What to synthesise, drawn from `rng` in a fixed order: espeak-ng's
/// positives then negatives, then (only when piper is there) piper's.
struct Jobs {
    espeak: Vec<(String, EspeakVoice)>,
    piper: Vec<PiperRequest>,
    negative_texts: usize,
}

fn plan(phrase: &str, amounts: &Amounts, with_piper: bool, rng: &mut Rng) -> Jobs {
    let texts = negative_texts(phrase);
    let phrase_texts = phrase_variants(phrase);
    let mut espeak_jobs: Vec<(String, EspeakVoice)> = Vec::new();
    for _ in 0..amounts.espeak_positives {
        espeak_jobs.push((rng.pick(&phrase_texts).clone(), EspeakVoice::random(rng)));
    }
    for _ in 0..amounts.espeak_negatives {
        espeak_jobs.push((rng.pick(&texts).clone(), EspeakVoice::random(rng)));
    }
    let mut piper_jobs: Vec<PiperRequest> = Vec::new();
    if with_piper {
        for _ in 0..amounts.piper_positives {
            let t = rng.pick(&phrase_texts).clone();
            piper_jobs.push(PiperRequest::random(&t, rng));
        }
        for _ in 0..amounts.piper_negatives {
            let t = rng.pick(&texts).clone();
            piper_jobs.push(PiperRequest::random(&t, rng));
        }
    }
    Jobs {
        espeak: espeak_jobs,
        piper: piper_jobs,
        negative_texts: texts.len(),
    }
}

/// Synthesises the phrase and the negative texts (settings drawn from `rng`,
/// the synthesisers seeded from `seed`).
pub(super) fn synthesize(
    phrase: &str,
    amounts: &Amounts,
    seed: u64,
    espeak: &Espeak,
    piper: Option<&Piper>,
    threads: usize,
    rng: &mut Rng,
) -> Result<Speech, WakewordError> {
    let jobs = plan(phrase, amounts, piper.is_some(), rng);
    log(&format!(
        "synthesising {} espeak-ng and {} piper utterances",
        jobs.espeak.len(),
        jobs.piper.len()
    ));
    let (espeak_audio, piper_audio) = run(&jobs, seed, espeak, piper, threads);
    let espeak_audio = espeak_audio?;
    let piper_audio = piper_audio.transpose()?.unwrap_or_default();
    let mut speech = Speech {
        positives: Vec::new(),
        negatives: Vec::new(),
        negative_texts: jobs.negative_texts,
    };
    sort(
        &mut speech,
        espeak_audio,
        amounts.espeak_positives,
        "espeak",
    );
    sort(&mut speech, piper_audio, amounts.piper_positives, "piper");
    Ok(speech)
}

type Audio = Result<Vec<Vec<f32>>, WakewordError>;

/// Runs espeak-ng on `threads` threads and piper beside it (one process per
/// half of its requests).
fn run(
    jobs: &Jobs,
    seed: u64,
    espeak: &Espeak,
    piper: Option<&Piper>,
    threads: usize,
) -> (Audio, Option<Audio>) {
    let total = jobs.espeak.len();
    let progress = move |n: usize| {
        if n.is_multiple_of(500) || n == total {
            log(&format!("espeak-ng {n}/{total}"));
        }
    };
    std::thread::scope(|s| {
        let piper_handle = piper.map(|p| {
            let jobs = &jobs.piper;
            s.spawn(move || -> Audio {
                let half = jobs.len() / 2;
                let (a, b) = jobs.split_at(half);
                let pt = jobs.len();
                let prog = move |n: usize| {
                    if n.is_multiple_of(100) {
                        log(&format!("piper {n}/{}", pt / 2));
                    }
                };
                let (ra, rb) = std::thread::scope(|s2| {
                    let ha = s2.spawn(|| p.speak_batch(a, seed, &prog));
                    let rb = p.speak_batch(b, seed.wrapping_add(1), &|_| {});
                    (ha.join(), rb)
                });
                let mut out = ra.map_err(|_| WakewordError::Synth("piper worker".into()))??;
                out.extend(rb?);
                Ok(out)
            })
        });
        let e = espeak.speak_all(&jobs.espeak, threads, &progress);
        let p = piper_handle.map(|h| {
            h.join()
                .unwrap_or_else(|_| Err(WakewordError::Synth("piper worker".into())))
        });
        (e, p)
    })
}

/// Files one source's audio (its first `positives` are the phrase) as
/// utterances, every tenth held out; drops any shorter than 0.1 s.
fn sort(speech: &mut Speech, audio: Vec<Vec<f32>>, positives: usize, kind: &'static str) {
    for (i, a) in audio.into_iter().enumerate() {
        let test = i % 10 == 9;
        if a.len() < 1600 {
            continue;
        }
        let u = Utterance {
            audio: a,
            test,
            kind,
        };
        if i < positives {
            speech.positives.push(u);
        } else {
            speech.negatives.push(u);
        }
    }
}

/// Other words and phrases spoken as negatives: common words, home
/// assistant commands, names, and words that share sounds with typical wake
/// words. One per line.
pub const NEGATIVE_TEXTS: &str = "\
the|a|and|yes|no|okay|hello|hi|hey|thanks|thank you|please|sorry|what|why|how|when|where|who
one|two|three|four|five|six|seven|eight|nine|ten|twenty|fifty|hundred|thousand
today|tomorrow|tonight|morning|evening|weekend|monday|friday|sunday|minute|hour|second
water|coffee|tea|milk|sugar|latte|espresso|cappuccino|mocha|small|medium|large|cup|mug
light|lights|lamp|kitchen|bedroom|living room|bathroom|garage|garden|door|window|music
play|pause|stop|start|next|previous|louder|quieter|volume|mute|skip|repeat|shuffle
timer|alarm|reminder|weather|news|calendar|shopping list|temperature|thermostat
turn on the lights|turn off the lights|set a timer for ten minutes|what time is it
what's the weather like|play some music|stop the music|turn up the volume|turn it down
open the garage door|lock the front door|close the blinds|dim the bedroom lights
set an alarm for seven|remind me to call mom|add milk to the shopping list
how is the traffic|tell me a joke|what's on my calendar|call my sister
good morning|good night|see you later|i'm home|never mind|cancel that|that's all
jars|jar|jazz|jarring|jargon|jersey|jealous|journey|jogging|july|june|jury|justice
service|nervous|harvest|carvings|marvin|martin|marvel|garvey|travis|davis|paris|harris
artist|service desk|starve|carve|larva|jarred|charlie|charles|chavez|jarrod|java|jacuzzi
purpose|surface|office|nervous system|travel|gravel|marvelous|jarful|jasper|jervis
alex|alexis|election|commuter|hey google|okay google|siri|cortana|mycroft
hey there|hey you|hey buddy|hello there|listen|wake up|attention|excuse me|come here
garbage|garage|baggage|cabbage|carnival|marbles|parsley|varsity|arbiter|service area
dog|cat|house|car|tree|book|phone|table|chair|window|picture|paper|money|people|family
beautiful|wonderful|interesting|important|different|possible|together|because|however
this is a test|i don't know|maybe later|sounds good|let me think|right now|all right
the quick brown fox jumps over the lazy dog|she sells sea shells by the sea shore
how much wood would a woodchuck chuck|peter piper picked a peck of pickled peppers
";

/// The negative texts for `phrase`: [`NEGATIVE_TEXTS`] without any text
/// that contains the phrase (or that the phrase contains, for one word).
pub fn negative_texts(phrase: &str) -> Vec<String> {
    let p = phrase.trim().to_lowercase();
    let mut out: Vec<String> = NEGATIVE_TEXTS
        .split(['|', '\n'])
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .filter(|t| {
            let l = t.to_lowercase();
            !l.contains(&p)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Ways of saying the phrase (punctuation changes the synthesisers' prosody).
fn phrase_variants(phrase: &str) -> Vec<String> {
    let p = phrase.trim();
    let mut cap = p.to_string();
    if let Some(first) = cap.get(0..1) {
        cap = first.to_uppercase() + &cap[1..];
    }
    vec![
        p.to_string(),
        cap.clone(),
        format!("{cap}."),
        format!("{cap}!"),
        format!("{cap}?"),
        format!("{cap},"),
    ]
}
