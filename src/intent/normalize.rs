//! Text normalisation shared by transcripts and templates.
//!
//! # Why this module exists
//!
//! The intent matcher compares *tokens*, never raw text. Speech-to-text output
//! is noisy in ways that carry no meaning for intents: capitalisation,
//! sentence punctuation, typographic apostrophes, "twenty-five" versus
//! "twenty five" versus "25", "8pm" versus "8 P.M.". This module maps all of
//! those spellings onto one canonical token sequence.
//!
//! The **same** functions run on template literal text when templates are
//! compiled ([`normalize_fragment`]) and on every utterance ([`tokenize`]), so
//! a template fragment and an input containing the same words always
//! normalise identically. Because of that, a rule here never has to be
//! "right", only deterministic and consistent; the rules below were chosen to
//! keep information the slot parsers need (times, decimals, percentages) and
//! to drop what only gets in the way.
//!
//! # Rules, in the order they apply
//!
//! 1. **Unicode.** Typographic apostrophes (`’ ‘ ʼ ‛ ´` and the backtick)
//!    become `'`; the soft hyphen is dropped; the text is put in NFKC (so
//!    full-width letters, digits and punctuation become their plain forms,
//!    ligatures are split, `…` becomes `...`). Fraction characters become
//!    plain fractions: `½` → `1/2` (NFKC gives `1⁄2` with U+2044, which is
//!    mapped to `/`, as is U+2215). A fraction character glued to a number or
//!    a word is split off first, so `3½` → `3`, `1/2`. Dash variants
//!    (U+2010–U+2015) and the minus sign U+2212 become `-`.
//! 2. **Case.** [`Token::norm`] is lowercased (Unicode-aware);
//!    [`Token::raw`] keeps the case as written.
//! 3. **Punctuation** (in the spirit of Home Assistant's hassil). Whitespace
//!    of any kind (plus zero-width space, word joiner, BOM and control
//!    characters) separates words. The characters
//!    `. , ? ! ; : ¿ ¡ 。 、 ؟` and the quotes `" “ ” „ « »` separate tokens,
//!    so they disappear at word edges and as standalone "words"; exceptions:
//!    - `.`, `:` and `,` between two digits stay inside the token
//!      (`7:30`, `7.30`, `21.5`). Commas that group digits in threes are then
//!      removed from `norm` (`1,000` → `1000`, `-1,234.5` → `-1234.5`); any
//!      other digit comma splits (`1,5` → `1`, `5`).
//!    - a `.` at the very start of a word, followed by a digit, stays
//!      (`.5` is a number, not a sentence end).
//!    - initialisms — single letters separated by dots, at least two letters
//!      — stay one token and are canonicalised with a trailing dot:
//!      `A.C.`, `A.C` → `a.c.` (like hassil, which keeps `A.C.`). At a
//!      sentence end the final dot is read as the initialism's own dot. Any
//!      other dot after a letter splits (`etc.` → `etc`,
//!      `lights.Turn` → `lights`, `turn`).
//!
//!    Apostrophes inside a word stay (`what's`, `lamp's`, `o'clock`);
//!    apostrophes at the edges of a token are removed, since they are
//!    usually quotation marks (`'kitchen'` → `kitchen`; `lamps'` → `lamps`).
//!    `%`, `°`, `/` and every other symbol are ordinary word characters:
//!    `50%` is one token `50%`, `50 %` is two tokens. (Templates write
//!    `{brightness}[([ ]%)| percent]`; the matcher handles the character
//!    level.)
//! 4. **Hyphens and underscores** separate tokens: `12-ounce` → `12`,
//!    `ounce`; `wi-fi` → `wi`, `fi`; `5-10` → `5`, `10`. Exception: a `-`
//!    starting a word (or following an opening quote) and directly followed by
//!    a digit is a minus sign and stays (`-5`).
//! 5. **Times.** A number with an `am`/`pm` suffix glued on is split:
//!    `8pm` → `8`, `pm`; `7:30PM` → `7:30`, `pm`; `8p.m.` → `8`, `pm`. The
//!    initialisms `a.m.`/`p.m.` (with or without the final dot, any case) are
//!    always `am`/`pm`, so `8 P.M.` → `8`, `pm`. `7.30` and `730` are left
//!    alone: the matcher's time slot parser interprets them.
//! 6. **Number words** become digits, merging runs that English cardinal
//!    grammar joins: `twenty five` / `twenty-five` → `25`,
//!    `one hundred and five` → `105`, `two thousand and twenty` → `2020`,
//!    `three million two hundred thousand` → `3200000`. Words: `zero` …
//!    `nineteen`, the tens, `hundred`, `thousand`, `million`, `billion`,
//!    `trillion`. A run only extends where the grammar allows: a ten takes a
//!    unit 1–9 (`twenty five`); a number 1–99 takes `hundred`
//!    (`twenty five hundred` → `2500`); `hundred` takes a 1–99 tail,
//!    optionally after `and`; a group takes a scale word larger than the
//!    previous one; after a scale word, `and` is merged only when a number
//!    1–99 follows, and ends the run. Hence `five ten` → `5`, `10`;
//!    `seven thirty` → `7`, `30`; `nineteen eighty four` → `19`, `84`;
//!    `five and a half` → `5`, `and`, `a`, `half`;
//!    `two thousand and five hundred` → `2005`, `100`. `zero` → `0` but never
//!    joins anything. A bare `hundred`/`thousand`… means one of it
//!    (`hundred` → `100`); `a`/`an` are *not* numbers, so `a hundred` →
//!    `a`, `100`. Never converted: ordinals (`first`, `second` — also a time
//!    unit and a floor — `twenty first`), `half`, `quarter`, `dozen`,
//!    `couple`, `oh`/`o`. `one` is converted (`this one` → `this`, `1`).
//!    A run that an ordinal continues is a compound ordinal and stays words
//!    entirely: `twenty first`, `one hundred and first`, `five hundredth`.
//!    This makes `twenty second timer` stay words too (the date/floor reading
//!    wins); `ten second timer` → `10`, `second`, `timer` is unaffected, and
//!    plural `seconds` is never an ordinal.
//!    Digits never combine with number words (`5 hundred` stays). The merged
//!    token's `raw` is its surface words joined by single spaces.
//! 7. **Digits** stay as written (`5`, `05`, `007`).
//! 8. **Empty** input (or input with only punctuation) gives no tokens.
//!
//! Because rule 6 looks across words, a number must not be split between
//! template groups: `(twenty|thirty) five` normalises per fragment to `20`,
//! `30`, `5` and will not match the spoken `twenty five` (`25`). Write such
//! numbers as digits or as a slot.

use std::borrow::Cow;

use unicode_normalization::UnicodeNormalization;

/// One word of normalised text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Canonical form used for matching (lowercase, one word, no spaces).
    pub norm: String,
    /// Surface form as it was written (original case), edge punctuation
    /// removed. For merged tokens (e.g. "twenty five" -> "25") the raw surface
    /// words joined by one space ("twenty five").
    pub raw: String,
}

/// Splits text into normalised tokens (see the module documentation for the
/// rules). Never panics; linear in the input length.
pub fn tokenize(text: &str) -> Vec<Token> {
    let prepared = prepare(text);
    tokenize_prepared(&prepared)
}

/// Normalises a fragment of template text: tokens' norms joined by single
/// spaces, plus ONE leading space if the fragment started with whitespace and
/// ONE trailing space if it ended with whitespace. A fragment with whitespace
/// but no tokens (e.g. `" "` or `" ? "`) gives `" "`; one with neither
/// (`""`, `"?"`) gives `""`.
pub fn normalize_fragment(text: &str) -> String {
    // A fragment's edge is not always a word's edge: in `Joe[']s` or
    // `{name}['s]` the apostrophe is glued to the neighbouring part, so an
    // apostrophe touching the edge is kept rather than stripped as
    // punctuation.
    let is_apostrophe = |c: char| matches!(c, '\'' | '’' | '‘' | 'ʼ');
    if let Some(first) = text.chars().next().filter(|c| is_apostrophe(*c)) {
        return format!("'{}", normalize_fragment(&text[first.len_utf8()..]));
    }
    if let Some(last) = text.chars().last().filter(|c| is_apostrophe(*c)) {
        return format!(
            "{}'",
            normalize_fragment(&text[..text.len() - last.len_utf8()])
        );
    }
    let prepared = prepare(text);
    let lead = prepared.starts_with(is_space);
    let trail = prepared.ends_with(is_space);
    let tokens = tokenize_prepared(&prepared);
    if tokens.is_empty() {
        return if lead || trail || prepared.contains(is_space) {
            " ".to_string()
        } else {
            String::new()
        };
    }
    let len: usize = tokens.iter().map(|t| t.norm.len() + 1).sum();
    let mut out = String::with_capacity(len + 2);
    if lead {
        out.push(' ');
    }
    for (i, token) in tokens.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&token.norm);
    }
    if trail {
        out.push(' ');
    }
    out
}

/// Parses English cardinal number words at the start of `words` (any ASCII
/// case), following the grammar of rule 6 in the module documentation.
/// Returns the value and how many words were consumed, or `None` if `words`
/// does not start with a number word. `"and"` is only consumed inside a
/// number (`["one", "hundred", "and", "five"]` → `(105, 4)`), never at its
/// end (`["five", "and", "a", "half"]` → `(5, 1)`). Like [`tokenize`], it
/// returns `None` when the words are the start of a compound ordinal
/// (`["twenty", "first"]`).
pub fn parse_number_words(words: &[&str]) -> Option<(i64, usize)> {
    let (value, n) = parse_cardinal(words)?;
    if continues_as_ordinal(words, n) {
        None
    } else {
        Some((value, n))
    }
}

/// Spells out a number in English words for read-backs, US style (no "and";
/// tens and units hyphenated): `125` → `"one hundred twenty-five"`,
/// `-5` → `"minus five"`, `0` → `"zero"`. Every non-negative value below
/// 10^15 tokenizes back to its digits.
pub fn number_to_words(n: i64) -> String {
    if n == 0 {
        return "zero".to_string();
    }
    let mut parts: Vec<String> = Vec::new();
    if n < 0 {
        parts.push("minus".to_string());
    }
    let mut v = n.unsigned_abs();
    const SCALES: [(u64, &str); 6] = [
        (1_000_000_000_000_000_000, "quintillion"),
        (1_000_000_000_000_000, "quadrillion"),
        (1_000_000_000_000, "trillion"),
        (1_000_000_000, "billion"),
        (1_000_000, "million"),
        (1_000, "thousand"),
    ];
    for (scale, name) in SCALES {
        let q = v / scale;
        if q > 0 {
            parts.push(below_1000_words(q));
            parts.push(name.to_string());
            v %= scale;
        }
    }
    if v > 0 {
        parts.push(below_1000_words(v));
    }
    parts.join(" ")
}

// ---------------------------------------------------------------------------
// Rule 1: Unicode preparation.

/// Applies rule 1. Plain ASCII without backticks is already in its final form
/// and is borrowed.
fn prepare(text: &str) -> Cow<'_, str> {
    if text.bytes().all(|b| b.is_ascii() && b != b'`') {
        return Cow::Borrowed(text);
    }
    let spaced = space_fractions(text);
    let mut out = String::with_capacity(spaced.len() + 8);
    let chars = spaced.chars().filter(|&c| c != '\u{AD}').map(|c| match c {
        '\u{2019}' | '\u{2018}' | '\u{02BC}' | '\u{201B}' | '\u{00B4}' | '`' => '\'',
        other => other,
    });
    for c in chars.nfkc() {
        out.push(match c {
            '\u{2044}' | '\u{2215}' => '/',
            '\u{2010}'..='\u{2015}' | '\u{2212}' => '-',
            other => other,
        });
    }
    Cow::Owned(out)
}

/// True for the precomposed fraction characters (`¼ ½ ¾ ⅐ … ⅞ ⅟ ↉`).
fn is_vulgar_fraction(c: char) -> bool {
    matches!(c, '\u{BC}'..='\u{BE}' | '\u{2150}'..='\u{215F}' | '\u{2189}')
}

/// Puts a space between a fraction character and a letter or digit glued to
/// it, so that `3½` becomes `3 ½` (and not `31/2` after NFKC).
fn space_fractions(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_vulgar_fraction) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut prev: Option<char> = None;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if is_vulgar_fraction(c) {
            if prev.is_some_and(char::is_alphanumeric) {
                out.push(' ');
            }
            out.push(c);
            if chars
                .peek()
                .is_some_and(|&n| n.is_alphanumeric() && !is_vulgar_fraction(n))
            {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
        prev = Some(c);
    }
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------
// Rules 3–5: splitting words into tokens.

/// Characters that separate words (rule 8): Unicode whitespace, invisible
/// separators and control characters.
fn is_space(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '\u{200B}' | '\u{2060}' | '\u{FEFF}')
}

/// Punctuation that separates tokens unless an exception of rule 3 or 4
/// applies.
fn is_separator(c: char) -> bool {
    matches!(
        c,
        '.' | ','
            | '?'
            | '!'
            | ';'
            | ':'
            | '¿'
            | '¡'
            | '。'
            | '、'
            | '؟'
            | '"'
            | '“'
            | '”'
            | '„'
            | '«'
            | '»'
            | '-'
            | '_'
    )
}

fn tokenize_prepared(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars: Vec<(usize, char)> = Vec::new();
    for word in text.split(is_space) {
        if word.is_empty() {
            continue;
        }
        chars.clear();
        chars.extend(word.char_indices());
        split_word(word, &chars, &mut tokens);
    }
    merge_decimal_points(merge_numbers(tokens))
}

/// Splits one whitespace-free word at its separators (rules 3 and 4) and
/// hands each piece to [`emit_piece`].
fn split_word(word: &str, chars: &[(usize, char)], out: &mut Vec<Token>) {
    let mut start: Option<usize> = None;
    for (k, &(byte, c)) in chars.iter().enumerate() {
        let prev = if k > 0 {
            chars.get(k - 1).map(|&(_, p)| p)
        } else {
            None
        };
        let next = chars.get(k + 1).map(|&(_, n)| n);
        let prev_digit = prev.is_some_and(|p| p.is_ascii_digit());
        let next_digit = next.is_some_and(|n| n.is_ascii_digit());
        let keep = match c {
            '.' => {
                (prev_digit && next_digit)
                    || prev.is_some_and(char::is_alphabetic)
                    || (k == 0 && next_digit)
            }
            ':' | ',' => prev_digit && next_digit,
            '-' => {
                next_digit
                    && start.is_none()
                    && prev.is_none_or(|p| !p.is_alphanumeric() && p != '-' && p != '_')
            }
            other => !is_separator(other),
        };
        if keep {
            if start.is_none() {
                start = Some(byte);
            }
        } else if let Some(s) = start.take()
            && let Some(piece) = word.get(s..byte)
        {
            emit_piece(piece, out);
        }
    }
    if let Some(s) = start
        && let Some(piece) = word.get(s..)
    {
        emit_piece(piece, out);
    }
}

/// Handles one piece without separators: edge apostrophes, glued am/pm
/// (rule 5), initialisms and dots after letters (rule 3).
fn emit_piece(piece: &str, out: &mut Vec<Token>) {
    let piece = piece.trim_matches('\'');
    if piece.is_empty() {
        return;
    }
    if piece.starts_with(|c: char| c.is_ascii_digit()) {
        let end = piece
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | ':' | ',')))
            .unwrap_or(piece.len());
        if let (Some(num), Some(rest)) = (piece.get(..end), piece.get(end..))
            && let Some(ampm) = am_pm(rest)
        {
            emit_number_piece(num, out);
            out.push(Token {
                norm: ampm.to_string(),
                raw: rest.to_string(),
            });
            return;
        }
    }
    if !has_soft_dot(piece) {
        emit_number_piece(piece, out);
        return;
    }
    if let Some(norm) = initialism(piece) {
        out.push(Token {
            norm,
            raw: piece.to_string(),
        });
        return;
    }
    // Split at every dot that follows a letter. The parts contain no such
    // dots, so this recursion is one level deep.
    let mut seg_start = 0;
    let mut prev: Option<char> = None;
    for (i, c) in piece.char_indices() {
        if c == '.' && prev.is_some_and(char::is_alphabetic) {
            if let Some(seg) = piece.get(seg_start..i) {
                emit_piece(seg, out);
            }
            seg_start = i + 1;
        }
        prev = Some(c);
    }
    if let Some(seg) = piece.get(seg_start..) {
        emit_piece(seg, out);
    }
}

/// True if the piece has a dot right after a letter.
fn has_soft_dot(piece: &str) -> bool {
    let mut prev: Option<char> = None;
    for c in piece.chars() {
        if c == '.' && prev.is_some_and(char::is_alphabetic) {
            return true;
        }
        prev = Some(c);
    }
    false
}

/// `am`/`pm` for the suffixes `am`, `a.m`, `a.m.` (and the `p` forms) in any
/// case.
fn am_pm(s: &str) -> Option<&'static str> {
    const FORMS: [(&str, &str); 6] = [
        ("am", "am"),
        ("a.m", "am"),
        ("a.m.", "am"),
        ("pm", "pm"),
        ("p.m", "pm"),
        ("p.m.", "pm"),
    ];
    FORMS
        .iter()
        .find(|(form, _)| form.eq_ignore_ascii_case(s))
        .map(|&(_, canonical)| canonical)
}

/// The canonical form of an initialism (`A.C.` → `a.c.`, `p.m` → `pm`), or
/// `None` if the piece is not single letters separated by dots (at least two
/// letters, optionally one final dot).
fn initialism(piece: &str) -> Option<String> {
    let core = piece.strip_suffix('.').unwrap_or(piece);
    let mut letters = 0usize;
    let mut expect_letter = true;
    for c in core.chars() {
        if expect_letter {
            if !c.is_alphabetic() {
                return None;
            }
            letters += 1;
        } else if c != '.' {
            return None;
        }
        expect_letter = !expect_letter;
    }
    if letters < 2 || expect_letter {
        return None;
    }
    if let Some(ampm) = am_pm(core) {
        return Some(ampm.to_string());
    }
    let mut norm = lowercase(core);
    norm.push('.');
    Some(norm)
}

/// Emits a piece that may hold digit commas: `1,000` → `1000`; a comma that
/// does not group thousands splits the piece.
fn emit_number_piece(piece: &str, out: &mut Vec<Token>) {
    if piece.is_empty() {
        return;
    }
    if !piece.contains(',') {
        out.push(Token {
            norm: lowercase(piece),
            raw: piece.to_string(),
        });
        return;
    }
    if is_grouped_number(piece) {
        out.push(Token {
            norm: piece.chars().filter(|&c| c != ',').collect(),
            raw: piece.to_string(),
        });
        return;
    }
    for part in piece.split(',') {
        if !part.is_empty() {
            out.push(Token {
                norm: lowercase(part),
                raw: part.to_string(),
            });
        }
    }
}

/// `-?d{1,3}(,ddd)+(.d+)?`, checked without allocating.
fn is_grouped_number(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    if let Some(f) = frac
        && (f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    let mut groups = int.split(',');
    let first_ok = groups
        .next()
        .is_some_and(|g| (1..=3).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_digit()));
    let mut rest = 0usize;
    for g in groups {
        if g.len() != 3 || !g.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
        rest += 1;
    }
    first_ok && rest > 0
}

fn lowercase(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        s.to_lowercase()
    }
}

// ---------------------------------------------------------------------------
// Rule 6: number words.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumWord {
    /// `zero`: a number on its own, never part of a longer one.
    Zero,
    /// 1–19: `one` … `nineteen` (units 1–9 may follow a ten).
    Small(i64),
    /// 20, 30, … 90.
    Tens(i64),
    /// `hundred`.
    Hundred,
    /// `thousand`, `million`, `billion`, `trillion`.
    Scale(i64),
}

const NUMBER_WORDS: [(&str, NumWord); 33] = [
    ("zero", NumWord::Zero),
    ("one", NumWord::Small(1)),
    ("two", NumWord::Small(2)),
    ("three", NumWord::Small(3)),
    ("four", NumWord::Small(4)),
    ("five", NumWord::Small(5)),
    ("six", NumWord::Small(6)),
    ("seven", NumWord::Small(7)),
    ("eight", NumWord::Small(8)),
    ("nine", NumWord::Small(9)),
    ("ten", NumWord::Small(10)),
    ("eleven", NumWord::Small(11)),
    ("twelve", NumWord::Small(12)),
    ("thirteen", NumWord::Small(13)),
    ("fourteen", NumWord::Small(14)),
    ("fifteen", NumWord::Small(15)),
    ("sixteen", NumWord::Small(16)),
    ("seventeen", NumWord::Small(17)),
    ("eighteen", NumWord::Small(18)),
    ("nineteen", NumWord::Small(19)),
    ("twenty", NumWord::Tens(20)),
    ("thirty", NumWord::Tens(30)),
    ("forty", NumWord::Tens(40)),
    ("fifty", NumWord::Tens(50)),
    ("sixty", NumWord::Tens(60)),
    ("seventy", NumWord::Tens(70)),
    ("eighty", NumWord::Tens(80)),
    ("ninety", NumWord::Tens(90)),
    ("hundred", NumWord::Hundred),
    ("thousand", NumWord::Scale(1_000)),
    ("million", NumWord::Scale(1_000_000)),
    ("billion", NumWord::Scale(1_000_000_000)),
    ("trillion", NumWord::Scale(1_000_000_000_000)),
];

fn num_word(w: &str) -> Option<NumWord> {
    if !(3..=9).contains(&w.len()) || !w.is_ascii() {
        return None;
    }
    NUMBER_WORDS
        .iter()
        .find(|(spelling, _)| spelling.eq_ignore_ascii_case(w))
        .map(|&(_, kind)| kind)
}

/// A sequence of words the cardinal parser can read.
trait Words {
    fn word(&self, i: usize) -> Option<&str>;
}

impl Words for [&str] {
    fn word(&self, i: usize) -> Option<&str> {
        self.get(i).copied()
    }
}

impl Words for [Token] {
    fn word(&self, i: usize) -> Option<&str> {
        self.get(i).map(|t| t.norm.as_str())
    }
}

fn kind_at<W: Words + ?Sized>(w: &W, i: usize) -> Option<NumWord> {
    w.word(i).and_then(num_word)
}

fn is_and<W: Words + ?Sized>(w: &W, i: usize) -> bool {
    w.word(i).is_some_and(|s| s.eq_ignore_ascii_case("and"))
}

/// 0–99 starting at `i`: a unit, a teen, or a ten with an optional unit 1–9.
fn parse_below_100<W: Words + ?Sized>(w: &W, i: usize) -> Option<(i64, usize)> {
    match kind_at(w, i)? {
        NumWord::Zero => Some((0, i + 1)),
        NumWord::Small(v) => Some((v, i + 1)),
        NumWord::Tens(v) => match kind_at(w, i + 1) {
            Some(NumWord::Small(u)) if u <= 9 => Some((v + u, i + 2)),
            _ => Some((v, i + 1)),
        },
        NumWord::Hundred | NumWord::Scale(_) => None,
    }
}

/// 1–99 starting at `i` (used after `hundred` and `and`).
fn parse_tail<W: Words + ?Sized>(w: &W, i: usize) -> Option<(i64, usize)> {
    parse_below_100(w, i).filter(|&(v, _)| v >= 1)
}

/// One group before a scale word: `N`, `N hundred [and] M`, or (only at the
/// start of a run) a bare `hundred [and] M`.
fn parse_group<W: Words + ?Sized>(w: &W, i: usize, first: bool) -> Option<(i64, usize)> {
    let (mut value, mut j) = if first && kind_at(w, i) == Some(NumWord::Hundred) {
        (100, i + 1)
    } else {
        let (a, j) = parse_below_100(w, i)?;
        if a >= 1 && kind_at(w, j) == Some(NumWord::Hundred) {
            (a * 100, j + 1)
        } else {
            return Some((a, j));
        }
    };
    if let Some((t, k)) = parse_tail(w, j) {
        value += t;
        j = k;
    } else if is_and(w, j)
        && let Some((t, k)) = parse_tail(w, j + 1)
    {
        value += t;
        j = k;
    }
    Some((value, j))
}

fn parse_cardinal<W: Words + ?Sized>(w: &W) -> Option<(i64, usize)> {
    let mut total: i64 = 0;
    let mut i = 0usize;
    let mut last_scale = i64::MAX;
    let mut first = true;
    loop {
        let (group, j) = if first && matches!(kind_at(w, i), Some(NumWord::Scale(_))) {
            (1, i)
        } else {
            match parse_group(w, i, first) {
                Some(g) => g,
                None => break,
            }
        };
        if group == 0 {
            if first {
                return Some((0, j));
            }
            break;
        }
        match kind_at(w, j) {
            Some(NumWord::Scale(scale)) if scale < last_scale => {
                total = total.saturating_add(group.saturating_mul(scale));
                last_scale = scale;
                i = j + 1;
                first = false;
                if is_and(w, i)
                    && let Some((t, k)) = parse_tail(w, i + 1)
                {
                    return Some((total.saturating_add(t), k));
                }
            }
            // A scale word that cannot follow (`five thousand six thousand`):
            // the run ends before this group.
            Some(NumWord::Scale(_)) => break,
            _ => return Some((total.saturating_add(group), j)),
        }
    }
    if i == 0 { None } else { Some((total, i)) }
}

/// Ordinal number words, by what they can follow in a compound ordinal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ordinal {
    /// `first` … `ninth`: can follow a ten (`twenty first`) or a hundred.
    Unit,
    /// `tenth` … `nineteenth`, `twentieth` … `ninetieth`: can follow a
    /// hundred or a scale word (`one hundred tenth`).
    BelowHundred,
    /// `hundredth`, `thousandth`, …: can follow a number or `hundred`
    /// (`five hundredth`, `one hundred thousandth`).
    Scale,
}

fn ordinal_word(w: &str) -> Option<Ordinal> {
    const UNITS: [&str; 9] = [
        "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
    ];
    const BELOW_HUNDRED: [&str; 18] = [
        "tenth",
        "eleventh",
        "twelfth",
        "thirteenth",
        "fourteenth",
        "fifteenth",
        "sixteenth",
        "seventeenth",
        "eighteenth",
        "nineteenth",
        "twentieth",
        "thirtieth",
        "fortieth",
        "fiftieth",
        "sixtieth",
        "seventieth",
        "eightieth",
        "ninetieth",
    ];
    const SCALES: [&str; 5] = [
        "hundredth",
        "thousandth",
        "millionth",
        "billionth",
        "trillionth",
    ];
    let is = |list: &[&str]| list.iter().any(|o| o.eq_ignore_ascii_case(w));
    if is(&UNITS) {
        Some(Ordinal::Unit)
    } else if is(&BELOW_HUNDRED) {
        Some(Ordinal::BelowHundred)
    } else if is(&SCALES) {
        Some(Ordinal::Scale)
    } else {
        None
    }
}

/// True if the cardinal run `w[..n]` is the start of a compound ordinal:
/// `twenty first`, `one hundred and first`, `five hundredth`. Such runs stay
/// words (rule 6), so `twenty first` is not turned into `20 first`.
fn continues_as_ordinal<W: Words + ?Sized>(w: &W, n: usize) -> bool {
    let Some(last) = n.checked_sub(1).and_then(|i| kind_at(w, i)) else {
        return false;
    };
    let next = w.word(n).and_then(ordinal_word);
    let after_and = if is_and(w, n) {
        w.word(n + 1).and_then(ordinal_word)
    } else {
        None
    };
    match last {
        NumWord::Zero => false,
        NumWord::Tens(_) => matches!(next, Some(Ordinal::Unit | Ordinal::Scale)),
        NumWord::Small(_) => next == Some(Ordinal::Scale),
        NumWord::Hundred | NumWord::Scale(_) => {
            next.is_some() || matches!(after_and, Some(Ordinal::Unit | Ordinal::BelowHundred))
        }
    }
}

/// Replaces runs of number words by one digit token each (rule 6).
/// "twenty point five" → "20.5": after number words became digits, a
/// whole number followed by "point" and single digits is one decimal.
fn merge_decimal_points(tokens: Vec<Token>) -> Vec<Token> {
    if !tokens.iter().any(|t| t.norm == "point") {
        return tokens;
    }
    let is_digit = |t: &Token| t.norm.len() == 1 && t.norm.as_bytes()[0].is_ascii_digit();
    let is_whole = |t: &Token| !t.norm.is_empty() && t.norm.bytes().all(|b| b.is_ascii_digit());
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let whole = &tokens[i];
        if is_whole(whole)
            && tokens.get(i + 1).is_some_and(|t| t.norm == "point")
            && tokens.get(i + 2).is_some_and(is_digit)
        {
            let mut norm = format!("{}.", whole.norm);
            let mut raw = format!("{} {}", whole.raw, tokens[i + 1].raw);
            let mut j = i + 2;
            while let Some(d) = tokens.get(j).filter(|t| is_digit(t)) {
                norm.push_str(&d.norm);
                raw.push(' ');
                raw.push_str(&d.raw);
                j += 1;
            }
            out.push(Token { norm, raw });
            i = j;
        } else {
            out.push(whole.clone());
            i += 1;
        }
    }
    out
}

fn merge_numbers(tokens: Vec<Token>) -> Vec<Token> {
    if !tokens.iter().any(|t| num_word(&t.norm).is_some()) {
        return tokens;
    }
    // Plan first (start, length, value), then move the tokens.
    let mut runs: Vec<(usize, usize, i64)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let rest = tokens.get(i..).unwrap_or(&[]);
        match parse_cardinal(rest) {
            // A compound ordinal's words all stay as they are.
            Some((_, n)) if n >= 1 && continues_as_ordinal(rest, n) => i += n,
            Some((value, n)) if n >= 1 => {
                runs.push((i, n, value));
                i += n;
            }
            _ => i += 1,
        }
    }
    let mut out = Vec::with_capacity(tokens.len());
    let mut runs = runs.into_iter().peekable();
    // The run being merged: (index after its last token, value, raw words).
    let mut current: Option<(usize, i64, String)> = None;
    for (idx, token) in tokens.into_iter().enumerate() {
        match current.as_mut() {
            Some((_, _, raw)) => {
                raw.push(' ');
                raw.push_str(&token.raw);
            }
            None => match runs.peek() {
                Some(&(start, n, value)) if start == idx => {
                    runs.next();
                    current = Some((start + n, value, token.raw));
                }
                _ => {
                    out.push(token);
                    continue;
                }
            },
        }
        if current.as_ref().is_some_and(|(end, _, _)| idx + 1 == *end)
            && let Some((_, value, raw)) = current.take()
        {
            out.push(Token {
                norm: value.to_string(),
                raw,
            });
        }
    }
    out
}

fn below_1000_words(n: u64) -> String {
    const SMALL: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 10] = [
        "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    let small = |i: u64| SMALL.get(i as usize).copied().unwrap_or("");
    let mut out = String::new();
    let hundreds = n / 100;
    let rest = n % 100;
    if hundreds > 0 {
        out.push_str(small(hundreds % 10));
        out.push_str(" hundred");
    }
    if rest > 0 {
        if !out.is_empty() {
            out.push(' ');
        }
        if rest < 20 {
            out.push_str(small(rest));
        } else {
            out.push_str(TENS.get((rest / 10) as usize).copied().unwrap_or(""));
            if !rest.is_multiple_of(10) {
                out.push('-');
                out.push_str(small(rest % 10));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use yaml_rust2::{Yaml, YamlLoader};

    /// Reads a YAML list of strings; non-strings are reported (quote them).
    fn strings(y: &Yaml, what: &str) -> Result<Vec<String>, String> {
        let list = y
            .as_vec()
            .ok_or_else(|| format!("`{what}` must be a list"))?;
        list.iter()
            .map(|item| {
                item.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("`{what}` item {item:?} is not a string (quote it)"))
            })
            .collect()
    }

    /// Runs one case of `tests/data/normalize.yaml`; `Err` describes a failure.
    fn run_case(case: &Yaml) -> Result<(), String> {
        if let Some(input) = case["input"].as_str() {
            let tokens = tokenize(input);
            let norms: Vec<&str> = tokens.iter().map(|t| t.norm.as_str()).collect();
            let want = strings(&case["tokens"], "tokens")?;
            if norms != want {
                return Err(format!(
                    "tokenize({input:?}): norms {norms:?}, want {want:?}"
                ));
            }
            if !case["raw"].is_badvalue() {
                let raws: Vec<&str> = tokens.iter().map(|t| t.raw.as_str()).collect();
                let want = strings(&case["raw"], "raw")?;
                if raws != want {
                    return Err(format!("tokenize({input:?}): raw {raws:?}, want {want:?}"));
                }
            }
            // Templates and transcripts must agree: re-normalising the
            // normalised text changes nothing.
            let joined = norms.join(" ");
            let again: Vec<String> = tokenize(&joined).into_iter().map(|t| t.norm).collect();
            if again != norms {
                return Err(format!("not stable: {joined:?} re-tokenizes to {again:?}"));
            }
            Ok(())
        } else if let Some(fragment) = case["fragment"].as_str() {
            let got = normalize_fragment(fragment);
            let want = case["expect"]
                .as_str()
                .ok_or("fragment case needs a string `expect`")?;
            if got != want {
                return Err(format!(
                    "normalize_fragment({fragment:?}) = {got:?}, want {want:?}"
                ));
            }
            Ok(())
        } else if !case["words"].is_badvalue() && !case["value"].is_badvalue() {
            let words = strings(&case["words"], "words")?;
            let refs: Vec<&str> = words.iter().map(String::as_str).collect();
            let got = parse_number_words(&refs);
            let want = match &case["value"] {
                Yaml::Null => None,
                Yaml::Integer(v) => Some((
                    *v,
                    case["consumed"]
                        .as_i64()
                        .and_then(|c| usize::try_from(c).ok())
                        .ok_or("number case needs an integer `consumed`")?,
                )),
                other => return Err(format!("`value` {other:?} must be an integer or null")),
            };
            if got != want {
                return Err(format!(
                    "parse_number_words({refs:?}) = {got:?}, want {want:?}"
                ));
            }
            Ok(())
        } else if let Some(n) = case["spell"].as_i64() {
            let got = number_to_words(n);
            let want = case["words"]
                .as_str()
                .ok_or("spell case needs string `words`")?;
            if got != want {
                return Err(format!("number_to_words({n}) = {got:?}, want {want:?}"));
            }
            Ok(())
        } else {
            Err(format!("unknown kind of case: {case:?}"))
        }
    }

    /// Runs every case in the data file and reports all failures at once.
    /// Returns the number of cases run.
    fn check() -> usize {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/normalize.yaml");
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"));
        let docs = YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{path} is not valid YAML: {e}"));
        let cases = docs
            .first()
            .and_then(Yaml::as_vec)
            .unwrap_or_else(|| panic!("{path} must hold a list of cases"));
        let failures: Vec<String> = cases
            .iter()
            .enumerate()
            .filter_map(|(i, case)| run_case(case).err().map(|e| format!("case {i}: {e}")))
            .collect();
        assert!(
            failures.is_empty(),
            "{} of {} normalisation cases failed:\n{}",
            failures.len(),
            cases.len(),
            failures.join("\n")
        );
        cases.len()
    }

    #[test]
    fn data_cases() {
        let n = check();
        assert!(n >= 100, "expected the full case list, found {n} cases");
    }

    /// Deterministic pseudo-random strings built from tricky pieces: no
    /// panics, sane tokens, and normalisation is idempotent.
    #[test]
    fn never_panics_on_generated_input() {
        const PIECES: [&str; 48] = [
            "", " ", "\t", "\n", "\u{a0}", "\u{200b}", "\u{feff}", "\u{0}", "\u{301}", "\u{ad}",
            "½", "3½", "⅞", "⁄", "’", "'", "`", "´", "¨", "\"", "“", "-", "—", "−", "_", ".",
            "...", "…", ",", ":", "?", "¿", "。", "a.c.", "P.M.", "8pm", "1,000", "7:30", "twenty",
            "hundred", "and", "first", "İ", "ß", "Σ", "ﬁ", "😀", "%",
        ];
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..600 {
            let len = (next() % 12) as usize;
            let mut s = String::new();
            for _ in 0..len {
                let piece = PIECES[(next() % PIECES.len() as u64) as usize];
                s.push_str(piece);
                if next() % 3 == 0 {
                    s.push(' ');
                }
            }
            let tokens = tokenize(&s);
            for t in &tokens {
                assert!(!t.norm.is_empty() && !t.raw.is_empty(), "{s:?} gave {t:?}");
                assert!(!t.norm.contains(is_space), "{s:?} gave {t:?}");
            }
            let once = normalize_fragment(&s);
            assert_eq!(normalize_fragment(&once), once, "not idempotent on {s:?}");
        }
    }

    #[test]
    fn long_and_odd_input() {
        let long = "twenty-five, A.C. 8p.m. ½ ".repeat(20_000);
        assert_eq!(tokenize(&long).len(), 5 * 20_000);
        let one_word = "a".repeat(100_000) + "." + &"1".repeat(100_000);
        assert_eq!(tokenize(&one_word).len(), 2);
        for odd in [
            "\u{301}",
            "\u{301}.",
            "-",
            "'",
            "''",
            "'.'",
            ".",
            "\u{10FFFF}",
            "A.",
        ] {
            let _ = tokenize(odd);
            let _ = normalize_fragment(odd);
        }
        for n in [i64::MIN, i64::MAX, -1, 0] {
            assert!(!number_to_words(n).is_empty());
        }
    }

    #[test]
    fn number_words_round_trip() {
        let mut values: Vec<i64> = (0..=2_100).collect();
        let mut v: i64 = 7;
        while v < 1_000_000_000_000_000 {
            values.push(v);
            v = v * 13 + 11;
        }
        values.push(999_999_999_999_999);
        for n in values {
            let words = number_to_words(n);
            let norms: Vec<String> = tokenize(&words).into_iter().map(|t| t.norm).collect();
            assert_eq!(norms, vec![n.to_string()], "{n} spelled {words:?}");
        }
    }
}
