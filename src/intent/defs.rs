//! What the loader makes of intent files: plain data types, from one
//! file's text ([`SourceFile`]) to all of them together ([`Definitions`]).
//! The compiler, the grammar builder and the fallback's training read
//! these; nothing here does I/O.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::template::Expr;
use super::yaml::{Pos, Quote};
use crate::request::ActionKind;

/// One intent file's path and text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Where the text came from (shown in diagnostics).
    pub path: PathBuf,
    /// The file's contents.
    pub text: String,
}

/// How much harm an intent can do when it runs by mistake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Runs at once (alarms, timers, music).
    Low,
    /// Runs only after an explicit spoken confirmation (purchases, bookings,
    /// and anything not declared low).
    High,
}

/// Which executor runs an intent, and with what parameters.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ActionSpec {
    /// The executor, e.g. `alarm.set` or `purchase.order`; a name outside
    /// [`ActionKind`]'s list is a load error.
    pub kind: ActionKind,
    /// Free-form parameters; string values may contain `{slot}` placeholders.
    pub params: Value,
}

/// Where something was defined: file index into [`Definitions::files`] and position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    /// Index of the file in [`Definitions::files`].
    pub file: usize,
    /// Position in that file.
    pub pos: Pos,
    /// How the scalar there was quoted (to find characters inside it).
    pub quote: Quote,
}

impl Default for Origin {
    fn default() -> Self {
        Origin {
            file: 0,
            pos: Pos::default(),
            quote: Quote::Plain,
        }
    }
}

/// One sentence template.
#[derive(Debug, Clone)]
pub struct SentenceDef {
    /// The template as written.
    pub text: String,
    /// The parsed template.
    pub expr: Expr,
    /// Where it was written.
    pub origin: Origin,
}

/// An expansion rule (`<name>`).
#[derive(Debug, Clone)]
pub struct RuleDef {
    /// The rule body as written.
    pub text: String,
    /// The parsed body.
    pub expr: Expr,
    /// Where it was written.
    pub origin: Origin,
}

/// One value of a text list.
#[derive(Debug, Clone)]
pub struct ListValue {
    /// What is spoken: a template (often plain words).
    pub spoken: Expr,
    /// The spoken form as written.
    pub spoken_text: String,
    /// The value produced; `None` means the spoken words themselves.
    pub out: Option<Value>,
    /// Context this value carries into the match (e.g. `domain: light`).
    pub context: Map<String, Value>,
    /// Where it was written.
    pub origin: Origin,
}

/// A numeric range list.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeDef {
    /// Smallest value.
    pub from: f64,
    /// Largest value.
    pub to: f64,
    /// Step between accepted values.
    pub step: f64,
    /// Factor applied to the spoken number to get the value.
    pub multiplier: f64,
    /// Accepted fractions: 1 (whole numbers only), 2 (halves) or 10 (tenths).
    pub fractions: u32,
}

/// What a wildcard may not capture (ours: `wildcard: {excluding: [...],
/// not_starting: [...]}`; `wildcard: true` has no limits). Both hold
/// normalised words, as the matcher compares them.
///
/// Exists because the matcher prefers the reading with the fewest
/// wildcards: "play X by Y" is one wildcard ("X by Y") before it is two
/// (a title and an artist) unless the one wildcard may not hold "by"; and
/// "play the game X" is music unless a music wildcard may not start with
/// "the game".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WildcardDef {
    /// Words the value may not contain anywhere.
    pub excluding: Vec<String>,
    /// Word sequences the value may not start with.
    pub not_starting: Vec<Vec<String>>,
    /// The value may hold no possessive word ([`is_possessive`]): "play
    /// Brenda Kahn's Rushall Station" is an owner and a title, which a
    /// template with two wildcards reads only if the one-wildcard search
    /// may not take the whole.
    pub not_possessive: bool,
}

impl WildcardDef {
    /// Whether `words` (normalised) may be the wildcard's value. An
    /// article alone never is: "the" names nothing, and as a value it let
    /// "play a fifties album" read the artist "a".
    pub fn accepts(&self, words: &[&str]) -> bool {
        if let [only] = words
            && ARTICLES.contains(only)
        {
            return false;
        }
        let excluded = words.iter().any(|w| self.excluding.iter().any(|e| e == w));
        let bad_start = self.not_starting.iter().any(|start| {
            start.len() <= words.len() && start.iter().zip(words).all(|(a, b)| a == b)
        });
        let possessive = self.not_possessive && words.iter().any(|w| is_possessive(w));
        !excluded && !bad_start && !possessive
    }
}

/// Whether a normalised word is a possessive ("kahn's", "lewis's"): it
/// ends in "'s" after something that is no pronoun or question word, whose
/// "'s" is a verb ("let's", "it's", "that's", "what's").
pub fn is_possessive(word: &str) -> bool {
    word.strip_suffix("'s")
        .is_some_and(|stem| !stem.is_empty() && !CONTRACTED.contains(&stem))
}

/// Words whose "'s" is "is", "has" or "us".
const CONTRACTED: [&str; 16] = [
    "let",
    "it",
    "that",
    "what",
    "he",
    "she",
    "there",
    "here",
    "who",
    "where",
    "how",
    "when",
    "why",
    "this",
    "everybody",
    "everyone",
];

/// Words a limited wildcard's value is never made of alone.
const ARTICLES: [&str; 5] = ["a", "an", "the", "some", "any"];

/// The kinds of slot list.
#[derive(Debug, Clone)]
pub enum ListDef {
    /// A closed set of values.
    Values(Vec<ListValue>),
    /// Numbers, spoken as digits or words.
    Range(RangeDef),
    /// Any words (at least one), within the limits it names.
    Wildcard(WildcardDef),
    /// Built-in: a clock time, value `HH:MM`; with `pm_hours`, those hours
    /// said bare are in the afternoon or evening.
    Time {
        /// `pm_hours: {from, to}`.
        pm_hours: Option<super::builtins::PmHours>,
    },
    /// Built-in: a day, value `today`, `tomorrow`, a weekday, `MM-DD` or
    /// (a year said after it) `YYYY-MM-DD`.
    Date,
}

/// A named list with its origin.
#[derive(Debug, Clone)]
pub struct NamedList {
    /// The list.
    pub def: ListDef,
    /// Where it was defined.
    pub origin: Origin,
}

/// A group of sentences of one intent, sharing slots, context and response.
#[derive(Debug, Clone, Default)]
pub struct DataDef {
    /// Sentence templates.
    pub sentences: Vec<SentenceDef>,
    /// Fixed slots added to every match.
    pub slots: Map<String, Value>,
    /// Context the caller (or matched list values) must supply.
    pub requires_context: Map<String, Value>,
    /// Context that must not be present with these values.
    pub excludes_context: Map<String, Value>,
    /// Rules visible only to these sentences.
    pub rules: BTreeMap<String, RuleDef>,
    /// Lists visible only to these sentences.
    pub lists: BTreeMap<String, NamedList>,
    /// Response key.
    pub response: Option<String>,
}

/// A sample sentence and what it must produce.
#[derive(Debug, Clone)]
pub struct TestCase {
    /// Sentences that must all produce `slots`.
    pub sentences: Vec<(String, Origin)>,
    /// Expected slots: all and only these.
    pub slots: Map<String, Value>,
    /// Context to match with.
    pub context: Map<String, Value>,
}

/// One intent, merged from every file that mentions it.
#[derive(Debug, Clone)]
pub struct IntentDef {
    /// The intent's name.
    pub name: String,
    /// Declared risk; `None` means undeclared, which is treated as high.
    pub risk: Option<Risk>,
    /// Read-back template for confirmation.
    pub confirm: Option<String>,
    /// What it does, for people (`description:`; "what can you do" says
    /// the first part of it).
    pub description: Option<String>,
    /// The request in a few words (`summary:`, ours: "book a table"). A
    /// question about a reading no template made starts with it ("To book
    /// a table: for how many people?"), so a wrong guess is heard at once.
    pub summary: Option<String>,
    /// The executor.
    pub action: Option<ActionSpec>,
    /// Sentence groups.
    pub data: Vec<DataDef>,
    /// Samples for `intents test`.
    pub tests: Vec<TestCase>,
    /// What to ask for when a match lacks it (`ask:`), in the order asked.
    pub ask: Vec<AskDef>,
    /// Paraphrases no template needs to cover (`examples:`): training
    /// sentences for the fallback recogniser (`crate::nlu`).
    pub examples: Vec<(String, Origin)>,
    /// How far below the fallback's out-of-scope threshold a fallback
    /// reading of this intent is still taken (`fallback_leeway:`, 0 to
    /// 0.5). Honoured only for high-risk intents: their readings are read
    /// back, or their missing details asked, and nothing runs without a
    /// "yes", so a generous cut costs a question, never an action.
    pub fallback_leeway: Option<f32>,
    /// Where the intent was first defined.
    pub origin: Origin,
}

/// The context key set while voicegate waits for the answer to a follow-up
/// question; its value is `"Intent.name"` (see [`AskDef::context_value`]).
/// An `ask:` entry's `answers:` templates match only under it.
pub const ASKING_KEY: &str = "asking";

/// A follow-up question for a detail a request lacks (`ask:` in an intent
/// file): "set a timer" has no duration, so voicegate asks "For how long?".
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AskDef {
    /// What is missing, as the `ask` event names it (`duration`).
    pub name: String,
    /// The question, spoken as written.
    pub question: String,
    /// Slots any one of which supplies it (default: `[name]`). An answer
    /// replaces all of them.
    pub slots: Vec<String>,
    /// Asked only when the action asks it (`after_action: true`): the
    /// request is complete as said, but the action found more than one
    /// thing it could mean ("cancel the timer" with two running) and says
    /// which there are. The gate never asks it before running.
    pub after_action: bool,
}

impl AskDef {
    /// The value of [`ASKING_KEY`] while this question waits for an answer.
    pub fn context_value(&self, intent: &str) -> String {
        format!("{intent}.{}", self.name)
    }
}

impl IntentDef {
    /// The effective risk: undeclared intents are high-stakes (fail-safe).
    pub fn risk(&self) -> Risk {
        self.risk.unwrap_or(Risk::High)
    }
}

/// Everything loaded from a set of files.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    /// The source files, for diagnostics and `explain`.
    pub files: Vec<SourceFile>,
    /// Intents in definition order.
    pub intents: Vec<IntentDef>,
    /// File-level lists, shared by all intents.
    pub lists: BTreeMap<String, NamedList>,
    /// File-level expansion rules.
    pub rules: BTreeMap<String, RuleDef>,
    /// Words removed from input before matching.
    pub skip_words: Vec<String>,
    /// Sentences that must match no intent.
    pub not_understood: Vec<(String, Origin)>,
    /// Requests voicegate cannot do (`out_of_scope:`): they must match no
    /// intent (they are in `not_understood` too), and they train the
    /// fallback recogniser's out-of-scope class.
    pub out_of_scope: Vec<(String, Origin)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn possessives_are_owners_not_verbs() {
        for (word, possessive) in [
            ("kahn's", true),
            ("lewis's", true),
            ("let's", false),
            ("it's", false),
            ("what's", false),
            ("'s", false),
            ("kahns", false),
            ("o'clock", false),
        ] {
            assert_eq!(is_possessive(word), possessive, "{word}");
        }
        let def = WildcardDef {
            not_possessive: true,
            ..WildcardDef::default()
        };
        assert!(!def.accepts(&["brenda", "kahn's", "rushall"]));
        assert!(def.accepts(&["let's", "dance"]));
        assert!(WildcardDef::default().accepts(&["brenda", "kahn's", "rushall"]));
    }
}
