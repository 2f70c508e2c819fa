//! The template language: one sentence template in, a plain expression tree out.
//!
//! The syntax is hassil's (Home Assistant's), so its sentence files load
//! unchanged:
//!
//! | syntax            | meaning                                             |
//! |-------------------|-----------------------------------------------------|
//! | `(a\|b)`          | alternatives: one of them                           |
//! | `[a]`             | optional: `(a\|)`                                   |
//! | `(a;b)`           | permutation: all of them, in any order              |
//! | `{list}`          | a value of `list`, captured as slot `list`          |
//! | `{list:slot}`     | a value of `list`, captured as slot `slot`          |
//! | `{list:@name}`    | a value of `list`, captured for the response only   |
//! | `{@list}`         | short for `{list:@list}`                            |
//! | `<rule>`          | the expansion rule `rule`, substituted in place     |
//! | `\x`              | the character `x`, literally                        |
//!
//! Everything else is literal text. A `|` outside any group splits the whole
//! template into alternatives.
//!
//! Parsing is pure and keeps byte offsets so that errors point at the exact
//! character (`file:line:col` is computed by the loader, which knows where the
//! template sits in its file).

use std::fmt;

/// A parsed template expression. Plain data: the compiler turns it into the
/// matcher's graph, and other tools (checks, sampling) walk it directly.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Literal text, exactly as written (escapes removed). May be empty: an
    /// empty text is the "nothing" branch of an optional.
    Text(String),
    /// Items that must all match, in order.
    Seq(Vec<Expr>),
    /// Items of which exactly one must match.
    Alt(Vec<Expr>),
    /// Items that must all match, in any order, separated by whitespace.
    Perm(Vec<Expr>),
    /// A reference to a slot list.
    List(ListRef),
    /// A reference to an expansion rule.
    Rule {
        /// The rule's name.
        name: String,
        /// Byte offset of the `<` in the template.
        offset: usize,
    },
}

/// A `{list}`, `{list:slot}` or `{list:@capture}` reference.
#[derive(Debug, Clone, PartialEq)]
pub struct ListRef {
    /// The list to take a value from.
    pub list: String,
    /// The slot (or capture) name the value is stored under.
    pub slot: String,
    /// True for `@` captures: the value goes to the response, not the slots.
    pub capture: bool,
    /// Byte offset of the `{` in the template.
    pub offset: usize,
}

/// A syntax error in one template, with the byte offset of the offending spot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Byte offset into the template where the problem is.
    pub offset: usize,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.offset)
    }
}

impl std::error::Error for TemplateError {}

/// Parses one sentence template.
pub fn parse(template: &str) -> Result<Expr, TemplateError> {
    let mut parser = Parser {
        src: template,
        pos: 0,
        depth: 0,
    };
    let expr = parser.parse_group_body(None)?;
    debug_assert_eq!(parser.pos, template.len());
    Ok(expr)
}

/// True if `text` uses any template syntax (as opposed to plain words).
pub fn is_template(text: &str) -> bool {
    text.chars()
        .any(|c| matches!(c, '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | '|' | '@'))
}

/// How the items of a group are separated.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
enum Separator {
    #[default]
    None,
    Alt,
    Perm,
}

/// A group's items as they are parsed: the branches already ended by a
/// separator, the one being read, and the literal text not yet pushed as an
/// item (so that consecutive characters become one `Expr::Text`).
#[derive(Default)]
struct GroupBody {
    /// Branches before the last separator, each already one expression.
    done: Vec<Expr>,
    /// Items of the branch being read.
    items: Vec<Expr>,
    text: String,
    separator: Separator,
}

impl GroupBody {
    /// Ends the pending literal text, if any, as an item.
    fn flush(&mut self) {
        if !self.text.is_empty() {
            self.items.push(Expr::Text(std::mem::take(&mut self.text)));
        }
    }

    /// Adds an item after the text read so far.
    fn push(&mut self, item: Expr) {
        self.flush();
        self.items.push(item);
    }

    /// Ends the branch being read at a separator; the next one starts empty.
    fn split(&mut self, separator: Separator) {
        self.separator = separator;
        self.flush();
        let branch = seq(std::mem::take(&mut self.items));
        self.done.push(branch);
    }

    /// The group as one expression: its single branch, or its alternatives
    /// or permutation items.
    fn finish(mut self) -> Expr {
        self.flush();
        let last = seq(self.items);
        let mut branches = self.done;
        match self.separator {
            // No separator was read, so `done` is empty.
            Separator::None => last,
            Separator::Alt => {
                branches.push(last);
                Expr::Alt(branches)
            }
            Separator::Perm => {
                branches.push(last);
                Expr::Perm(branches)
            }
        }
    }
}

/// Groups nested deeper than this are refused: nobody writes them, and the
/// parser and matcher recurse once per level.
const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn error(&self, offset: usize, message: impl Into<String>) -> TemplateError {
        TemplateError {
            offset,
            message: message.into(),
        }
    }

    /// Parses items until `close` (or the end of the template when `close` is
    /// `None`), splitting on `|` or `;`. Consumes the closing character.
    fn parse_group_body(&mut self, close: Option<(char, usize)>) -> Result<Expr, TemplateError> {
        let mut body = GroupBody::default();
        loop {
            let here = self.pos;
            let Some(c) = self.bump() else {
                if let Some((open, at)) = close {
                    return Err(self.error(at, format!("'{open}' is never closed")));
                }
                break;
            };
            match c {
                '\\' => match self.bump() {
                    Some(escaped) => body.text.push(escaped),
                    None => return Err(self.error(here, "a '\\' at the end escapes nothing")),
                },
                '(' | '[' => {
                    let group = self.parse_group(c, here)?;
                    body.push(group);
                }
                ')' | ']' => {
                    self.check_close(c, here, close)?;
                    break;
                }
                '|' | ';' => {
                    let separator = self.separator(c, here, close, body.separator)?;
                    body.split(separator);
                }
                '{' => {
                    let list = self.parse_list_ref(here)?;
                    body.push(list);
                }
                '}' => return Err(self.error(here, "'}' closes nothing")),
                '<' => {
                    let rule = self.parse_rule_ref(here)?;
                    body.push(rule);
                }
                '>' => return Err(self.error(here, "'>' closes nothing")),
                '@' => {
                    return Err(self.error(
                        here,
                        "'@' is only allowed at the start of a capture name in '{...}' (write '\\@' for the character)",
                    ));
                }
                other => body.text.push(other),
            }
        }
        Ok(body.finish())
    }

    /// Parses the group `open` (`(` or `[`, at byte `at`) opens, up to and
    /// including its closing character. An optional `[a]` becomes `(a|)`.
    fn parse_group(&mut self, open: char, at: usize) -> Result<Expr, TemplateError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error(at, format!("groups are nested more than {MAX_DEPTH} deep")));
        }
        self.depth += 1;
        let inner = self.parse_group_body(Some((open, at)))?;
        self.depth -= 1;
        Ok(if open == '[' {
            match inner {
                Expr::Alt(mut items) => {
                    items.push(Expr::Text(String::new()));
                    Expr::Alt(items)
                }
                other => Expr::Alt(vec![other, Expr::Text(String::new())]),
            }
        } else {
            inner
        })
    }

    /// Checks that `c` (`)` or `]`, at byte `here`) closes the group being
    /// parsed, `close`: the same kind of bracket, and a group at all.
    fn check_close(
        &self,
        c: char,
        here: usize,
        close: Option<(char, usize)>,
    ) -> Result<(), TemplateError> {
        let expected = close.map(|(open, _)| if open == '(' { ')' } else { ']' });
        match (close, expected) {
            (Some(_), Some(want)) if want == c => Ok(()),
            (Some((open, at)), Some(want)) => Err(self.error(
                here,
                format!("'{c}' closes the '{open}' opened at byte {at}, which needs '{want}'"),
            )),
            _ => Err(self.error(here, format!("'{c}' closes nothing"))),
        }
    }

    /// The separator `c` (`|` or `;`, at byte `here`) stands for, checked
    /// against where it is: a `;` only inside `(...)`, and never in a group
    /// already split by the other one (`so_far`).
    fn separator(
        &self,
        c: char,
        here: usize,
        close: Option<(char, usize)>,
        so_far: Separator,
    ) -> Result<Separator, TemplateError> {
        let this = if c == '|' {
            Separator::Alt
        } else {
            Separator::Perm
        };
        if c == ';' && close.map(|(open, _)| open) != Some('(') {
            return Err(self.error(here, "';' (permutation) is only allowed inside '(...)'"));
        }
        if so_far != Separator::None && so_far != this {
            return Err(self.error(
                here,
                "a group cannot mix '|' (alternatives) and ';' (permutation)",
            ));
        }
        Ok(this)
    }

    fn parse_name(
        &mut self,
        open_at: usize,
        open: char,
        close: char,
    ) -> Result<String, TemplateError> {
        let start = self.pos;
        loop {
            match self.bump() {
                Some(c) if c == close => break,
                Some(c)
                    if matches!(c, '(' | ')' | '[' | ']' | '{' | '}' | '<' | '>' | '|' | ';') =>
                {
                    return Err(self.error(
                        self.pos - c.len_utf8(),
                        format!("'{c}' is not allowed inside '{open}...{close}'"),
                    ));
                }
                Some(_) => {}
                None => return Err(self.error(open_at, format!("'{open}' is never closed"))),
            }
        }
        Ok(self.src[start..self.pos - close.len_utf8()].to_string())
    }

    fn parse_list_ref(&mut self, open_at: usize) -> Result<Expr, TemplateError> {
        let body = self.parse_name(open_at, '{', '}')?;
        let body = body.trim();
        let (list, slot, capture) = if let Some(name) = body.strip_prefix('@') {
            (name, name, true)
        } else if let Some((list, slot)) = body.split_once(':') {
            match slot.trim().strip_prefix('@') {
                Some(capture) => (list, capture, true),
                None => (list, slot, false),
            }
        } else {
            (body, body, false)
        };
        let (list, slot) = (list.trim(), slot.trim());
        if list.is_empty() {
            return Err(self.error(open_at, "a list reference needs a list name: '{name}'"));
        }
        if slot.is_empty() {
            return Err(self.error(open_at, "a slot name after ':' cannot be empty"));
        }
        Ok(Expr::List(ListRef {
            list: list.to_string(),
            slot: slot.to_string(),
            capture,
            offset: open_at,
        }))
    }

    fn parse_rule_ref(&mut self, open_at: usize) -> Result<Expr, TemplateError> {
        let name = self.parse_name(open_at, '<', '>')?;
        let name = name.trim();
        if name.is_empty() {
            return Err(self.error(open_at, "a rule reference needs a rule name: '<name>'"));
        }
        Ok(Expr::Rule {
            name: name.to_string(),
            offset: open_at,
        })
    }
}

fn seq(mut items: Vec<Expr>) -> Expr {
    match items.len() {
        0 => Expr::Text(String::new()),
        1 => items.pop().expect("one item"),
        _ => Expr::Seq(items),
    }
}

/// Calls `f` on every list and rule reference in `expr`, depth first.
pub fn walk_refs<'e>(expr: &'e Expr, f: &mut dyn FnMut(&'e Expr)) {
    match expr {
        Expr::Text(_) => {}
        Expr::Seq(items) | Expr::Alt(items) | Expr::Perm(items) => {
            for item in items {
                walk_refs(item, f);
            }
        }
        Expr::List(_) | Expr::Rule { .. } => f(expr),
    }
}

/// Every sentence `expr` accepts, up to `limit` of them. List and rule
/// references are left as their `{name}` / `<name>` text. Used to expand
/// names that are themselves templates ("Trader Joe[']s").
pub fn sample(expr: &Expr, limit: usize) -> Vec<String> {
    fn go(expr: &Expr, limit: usize) -> Vec<String> {
        match expr {
            Expr::Text(t) => vec![t.clone()],
            Expr::List(l) => vec![format!("{{{}}}", l.list)],
            Expr::Rule { name, .. } => vec![format!("<{name}>")],
            Expr::Alt(items) => {
                let mut out = Vec::new();
                for item in items {
                    for s in go(item, limit) {
                        if out.len() >= limit {
                            return out;
                        }
                        out.push(s);
                    }
                }
                out
            }
            Expr::Seq(items) => {
                let mut out = vec![String::new()];
                for item in items {
                    let parts = go(item, limit);
                    let mut next = Vec::new();
                    'fill: for prefix in &out {
                        for part in &parts {
                            if next.len() >= limit {
                                break 'fill;
                            }
                            next.push(format!("{prefix}{part}"));
                        }
                    }
                    out = next;
                }
                out
            }
            Expr::Perm(items) => {
                // Permutations of a few items: join each ordering with spaces.
                let mut out = Vec::new();
                let mut order: Vec<usize> = (0..items.len()).collect();
                permute(&mut order, 0, &mut |order| {
                    let seq = Expr::Seq(
                        order
                            .iter()
                            .flat_map(|&i| [Expr::Text(" ".into()), items[i].clone()])
                            .collect(),
                    );
                    for s in go(&seq, limit) {
                        if out.len() < limit {
                            out.push(s);
                        }
                    }
                });
                out
            }
        }
    }
    fn permute(order: &mut Vec<usize>, k: usize, f: &mut dyn FnMut(&[usize])) {
        if k == order.len() {
            return f(order);
        }
        for i in k..order.len() {
            order.swap(k, i);
            permute(order, k + 1, f);
            order.swap(k, i);
        }
    }
    go(expr, limit)
        .into_iter()
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Expr {
        Expr::Text(s.to_string())
    }

    #[test]
    fn parses_alternatives_optionals_and_refs() {
        let e = parse("(turn|switch) on [the] {name}").unwrap();
        let Expr::Seq(items) = e else {
            panic!("not a sequence")
        };
        assert_eq!(items[0], Expr::Alt(vec![text("turn"), text("switch")]));
        assert_eq!(items[1], text(" on "));
        assert_eq!(items[2], Expr::Alt(vec![text("the"), text("")]));
        assert!(matches!(&items[4], Expr::List(l) if l.list == "name" && l.slot == "name"));
    }

    #[test]
    fn top_level_bar_splits_alternatives() {
        let e = parse("<a>|<b>").unwrap();
        assert!(matches!(e, Expr::Alt(ref v) if v.len() == 2));
    }

    #[test]
    fn permutation_and_captures() {
        let e = parse("(a;b;c)").unwrap();
        assert!(matches!(e, Expr::Perm(ref v) if v.len() == 3));
        let e = parse("{list:@cap}").unwrap();
        assert!(matches!(e, Expr::List(ref l) if l.capture && l.slot == "cap"));
        let e = parse("{@cap}").unwrap();
        assert!(matches!(e, Expr::List(ref l) if l.capture && l.list == "cap"));
    }

    #[test]
    fn sampling_expands_alternatives() {
        let e = parse("Trader Joe[']s").unwrap();
        assert_eq!(sample(&e, 10), vec!["Trader Joe's", "Trader Joes"]);
        let e = parse("(a;b) c").unwrap();
        assert_eq!(sample(&e, 10), vec!["a b c", "b a c"]);
    }

    #[test]
    fn escapes_are_literal() {
        assert_eq!(parse(r"a \(b\) \[c\]").unwrap(), text("a (b) [c]"));
    }

    #[test]
    fn errors_point_at_the_spot() {
        let cases = [
            ("turn on (the light", 8, "never closed"),
            ("turn on the light)", 17, "closes nothing"),
            ("a (b] c", 4, "needs ')'"),
            ("{}", 0, "needs a list name"),
            ("<>", 0, "needs a rule name"),
            ("(a|b;c)", 4, "cannot mix"),
            ("a;b", 1, "only allowed inside"),
            ("{name", 0, "never closed"),
            ("x \\", 2, "escapes nothing"),
        ];
        for (template, offset, message) in cases {
            let err = parse(template).unwrap_err();
            assert_eq!(err.offset, offset, "{template}: {err}");
            assert!(err.message.contains(message), "{template}: {err}");
        }
    }
}
