//! [`Shape`]: how whisper spells a sentence, apart from its words.
//!
//! Why it exists, and why here: the intents' grammar reads text case-blind
//! and treats punctuation as word breaks, so it cannot stop a decoder it
//! pushes off course from escaping through odd spellings. These rules are
//! about whisper's output, not about the intents, so they live with the
//! decoder that applies them (`grammar_decode.rs`), not in the intent
//! engine. Pure: characters in, a verdict out.

/// How a transcript is written, apart from its words: the spelling rules a
/// constrained decoder must keep to. The grammar reads text case-blind and
/// treats punctuation as word breaks; left at that, a decoder that the
/// grammar pushes off its preferred course escapes through odd spellings
/// that are still "in the grammar": "RaiSe, the voLuMe", "I'm aWaKE",
/// "almond. MILK", or a second sentence ("... with cream. With cream.").
/// `Shape` follows the characters and refuses:
/// - an upper-case letter after a lower-case one in the same word, and
///   all-capital words longer than [`MAX_CAPS`] letters ("OK", "TV", "DJ"
///   pass; "RAISE" does not; neither does "McDonald");
/// - a second sentence: anything after "?" or "!", and anything but an
///   abbreviation's next letter after ". " ("7 a.m. tomorrow" is one
///   sentence; "with cream. With cream." is a decoder looping);
/// - two stops in a row (".."), and a number with two points ("3.5.5");
/// - the same word three times in a row ("ten-ten-ten", "and, and, and").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Letters read of the current word.
    letters: u8,
    /// Whether all of them were capitals.
    all_caps: bool,
    /// A lower-case letter was read in the current word.
    lower: bool,
    /// A digit, then a point, then a digit: "2.5".
    decimal: bool,
    stop: Stop,
    /// Hash of the current word (lower-cased) and of the one before it,
    /// and how many times in a row the previous word came.
    word: u64,
    last_word: u64,
    repeats: u8,
    /// Letters of the word just before a ".": 1 for "a." of "a.m.".
    dot_after: u8,
    /// The last character was a digit.
    last_digit: bool,
    /// The "." just read came straight after a digit (maybe "2.5").
    dot_after_digit: bool,
    /// The current word has an apostrophe.
    apostrophe: bool,
    /// The last character was a separator other than a space.
    punct: bool,
}

/// Where the text is relative to a sentence stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Stop {
    #[default]
    None,
    /// Just read "." (more may follow: "a.m.", "2.5").
    Dot,
    /// Read ". ": only lower-case text may follow.
    DotSpace,
    /// Read "?" or "!": the sentence is over.
    Ended,
}

/// The longest all-capital word [`Shape`] allows.
pub const MAX_CAPS: u8 = 3;

impl Shape {
    /// True if the text read so far ends with a full stop, "?" or "!"
    /// (not a decimal point): the sentence must be complete here.
    pub fn ends_sentence(&self) -> bool {
        match self.stop {
            Stop::None => false,
            Stop::Dot => !self.dot_after_digit,
            Stop::DotSpace | Stop::Ended => true,
        }
    }

    /// The shape after `c`, or `None` if `c` breaks the rules.
    ///
    /// Longer than the ~100 lines we aim for, on purpose: it is one match
    /// over the character's class, each arm the rules for that class, and
    /// it reads as the table of the rules listed on [`Shape`]; split up,
    /// the rules for one character would be in several places.
    pub fn feed(self, c: char) -> Option<Shape> {
        if self.stop == Stop::Ended {
            return None;
        }
        let mut next = self;
        next.last_digit = c.is_ascii_digit();
        next.punct = false;
        match c {
            '.' => {
                if self.stop != Stop::None {
                    return None;
                }
                next.stop = Stop::Dot;
                next.dot_after = self.letters;
                next.dot_after_digit = self.last_digit;
                next.end_word()?;
            }
            '?' | '!' => {
                if self.stop != Stop::None {
                    return None;
                }
                next.stop = Stop::Ended;
                next.end_word()?;
            }
            c if c.is_whitespace() => {
                if self.stop == Stop::Dot {
                    if self.dot_after != 1 {
                        return None;
                    }
                    next.stop = Stop::DotSpace;
                }
                next.end_word()?;
                next.decimal = false;
            }
            c if c.is_ascii_digit() => {
                if self.stop == Stop::DotSpace || (self.stop == Stop::Dot && self.dot_after != 0) {
                    // "mocha. 12-ounce mocha", "cream.5"
                    return None;
                }
                if self.stop == Stop::Dot {
                    // "2.5": the point came right after digits; a second
                    // point in the same number ("3.5.5") is a loop.
                    if self.decimal {
                        return None;
                    }
                    next.decimal = true;
                }
                next.word = mix_hash(self.word, c);
                next.stop = Stop::None;
            }
            c if c.is_uppercase() => {
                if self.stop != Stop::None
                    || self.lower
                    || (self.letters > 0 && !self.all_caps)
                    || self.letters >= MAX_CAPS
                {
                    return None;
                }
                next.all_caps = true;
                next.letters += 1;
                next.word = mix_hash(self.word, c.to_ascii_lowercase());
                next.stop = Stop::None;
            }
            c if c.is_alphabetic() => {
                if self.stop == Stop::Dot && self.dot_after != 1 {
                    // "a.m" goes on; "cream.based" and "2.five" do not.
                    return None;
                }
                if self.letters > 1 && self.all_caps {
                    // "DJs" is fine; "RAISe" is not (caught above) and
                    // "ABc" is an odd spelling either way.
                    return None;
                }
                next.lower = true;
                next.all_caps = false;
                next.letters = next.letters.saturating_add(1);
                next.word = mix_hash(self.word, c);
                next.stop = Stop::None;
            }
            '%' if self.last_digit && self.stop == Stop::None => {
                // "40%": only straight after a number.
                next.word = mix_hash(self.word, c);
            }
            '\'' | '\u{2019}' => {
                // One apostrophe in a word, after a letter ("I'm", "o'clock").
                if self.stop != Stop::None || self.apostrophe || self.letters == 0 {
                    return None;
                }
                next.apostrophe = true;
                next.word = mix_hash(self.word, '\'');
            }
            c if c.is_alphanumeric() => {
                if self.stop != Stop::None {
                    return None;
                }
                next.word = mix_hash(self.word, c);
            }
            '%' => return None,
            _ => {
                // Other separators (",", "-", ":") end the word; after a
                // stop only an abbreviation's comma may come ("7 a.m.,").
                if self.stop == Stop::DotSpace
                    || (self.stop == Stop::Dot && (self.dot_after != 1 || c != ','))
                    || self.punct
                {
                    // Also no two marks in a row ("a--timer", ",-").
                    return None;
                }
                next.punct = true;
                next.stop = Stop::None;
                next.end_word()?;
                next.decimal = false;
            }
        }
        Some(next)
    }

    /// [`Shape::feed`] for each character of `text`.
    pub fn feed_str(self, text: &str) -> Option<Shape> {
        text.chars().try_fold(self, Shape::feed)
    }

    /// Closes the current word; `None` if it is the third time in a row.
    fn end_word(&mut self) -> Option<()> {
        self.letters = 0;
        self.all_caps = false;
        self.lower = false;
        self.apostrophe = false;
        if self.word != 0 {
            if self.word == self.last_word {
                self.repeats += 1;
                if self.repeats >= 3 {
                    return None;
                }
            } else {
                self.last_word = self.word;
                self.repeats = 1;
            }
            self.word = 0;
        }
        Some(())
    }
}

/// FNV-1a step over a character (a word's identity for [`Shape`]).
fn mix_hash(hash: u64, c: char) -> u64 {
    let start = if hash == 0 {
        0xcbf2_9ce4_8422_2325
    } else {
        hash
    };
    (start ^ u64::from(u32::from(c))).wrapping_mul(0x0000_0100_0000_01b3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_keeps_to_how_sentences_are_written() {
        for (text, ok) in [
            ("Can I get a latte?", true),
            (" I'm awake.", true),
            ("Set an alarm for 7 a.m. tomorrow", true),
            ("Set a timer for 2.5 minutes.", true),
            ("Turn on the TV, OK?", true),
            ("Play some ABBA", false),
            ("RaiSe, the voLuMe", false),
            ("I'm aWaKE", false),
            ("RAISE THE VOLUME", false),
            ("a little softeR", false),
            ("with almond. MILK", false),
            ("with cream. With cream.", false),
            ("Yes? Yes", false),
            ("Yes!", true),
            ("Yes..", false),
            ("Yes. , no", false),
            ("Yes. yes", false),
            ("A 12-ounce mocha. 12-ounce mocha", false),
            ("3.5.5", false),
            ("2.5", true),
            ("7.30.", true),
            ("a ten-ten-ten-", false),
            ("and, and, and,", false),
            ("no no", true),
            ("It's 5 p.m. now", true),
            ("with a lot of cream.!", false),
            ("with a lot of cream.based", false),
            ("mocha. 12-ounce", false),
            ("Set it for 7 p.m.", true),
            ("Set it for 7 a.m., please", true),
            ("with a lot.,timer", false),
            ("almond.-milk", false),
            ("sugar.'", false),
            ("and o'o'o", false),
            ("with a--timer", false),
            ("at 7 o'clock, I'm up - ok", true),
            ("40%", true),
            ("soy milk%%", false),
        ] {
            assert_eq!(Shape::default().feed_str(text).is_some(), ok, "{text}");
        }
        for (text, ends) in [
            ("a latte.", true),
            ("a latte?", true),
            ("for 2.", false),
            ("for 2.5", false),
            ("a latte", false),
        ] {
            let shape = Shape::default().feed_str(text).expect(text);
            assert_eq!(shape.ends_sentence(), ends, "{text}");
        }
    }
}
