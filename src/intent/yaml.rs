//! A YAML document tree that remembers where every node came from.
//!
//! Intent files are edited by people, and every error we report must say
//! `file:line:col`. serde-style deserialisation forgets positions once a
//! document parses, so the loader walks this small tree instead. Anchors and
//! aliases are resolved by copying; merge keys (`<<`) are not supported (the
//! files we load do not use them).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A position in a source file: 1-based line and column, and the byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Byte offset from the start of the file.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
}

/// One YAML node with the position where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts (for quoted scalars: the opening quote).
    pub pos: Pos,
    /// What the node is.
    pub kind: Kind,
}

/// The kinds of YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `~`, `null` or nothing.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string, and how it was quoted.
    Str(String, Quote),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order. Keys are kept as nodes for their positions.
    Map(Vec<(Node, Node)>),
}

/// How a string scalar was written; tells how source columns map to characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    /// Unquoted.
    Plain,
    /// `'...'`
    Single,
    /// `"..."`
    Double,
    /// `|` or `>` block scalars.
    Block,
}

/// A YAML syntax error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Where the parser gave up.
    pub pos: Pos,
    /// The parser's message.
    pub message: String,
}

impl Node {
    /// The string value, if this is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            Kind::Str(s, _) => Some(s),
            _ => None,
        }
    }

    /// Entries of a mapping, if this is one.
    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            Kind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// Items of a sequence, if this is one.
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            Kind::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// Looks up a key in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.scalar_text().as_deref() == Some(key))
            .map(|(_, v)| v)
    }

    /// The scalar as text (strings as they are; numbers and booleans printed).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            Kind::Str(s, _) => Some(s.clone()),
            Kind::Int(i) => Some(i.to_string()),
            Kind::Float(f) => Some(f.to_string()),
            Kind::Bool(b) => Some(b.to_string()),
            Kind::Null | Kind::Seq(_) | Kind::Map(_) => None,
        }
    }

    /// A short name for the node's kind, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Null => "nothing",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) => "an integer",
            Kind::Float(_) => "a number",
            Kind::Str(..) => "a string",
            Kind::Seq(_) => "a list",
            Kind::Map(_) => "a mapping",
        }
    }

    /// Converts the node to a JSON value (mapping keys become strings).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            Kind::Null => Value::Null,
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Int(i) => Value::from(*i),
            Kind::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or(Value::Null),
            Kind::Str(s, _) => Value::String(s.clone()),
            Kind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Kind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.scalar_text().unwrap_or_default(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// The position of character `index` (0-based, in the scalar's decoded
    /// text) in the source. Exact for plain and single-line quoted scalars
    /// without escapes; for others it is the best estimate.
    pub fn pos_of_char(&self, source: &str, index: usize) -> Pos {
        let Kind::Str(_, quote) = &self.kind else {
            return self.pos;
        };
        pos_in_scalar(source, self.pos, *quote, index)
    }
}

/// The position of character `index` of a string scalar that starts at `start`
/// and was written with `quote`. Exact for plain and single-line quoted
/// scalars; an estimate for block scalars and line-folded strings.
pub fn pos_in_scalar(source: &str, start: Pos, quote: Quote, index: usize) -> Pos {
    {
        let skip = match quote {
            Quote::Plain | Quote::Block => 0,
            Quote::Single | Quote::Double => 1,
        };
        let mut pos = start;
        let rest = source.get(start.offset..).unwrap_or("");
        let mut chars = rest.chars();
        let step = |pos: &mut Pos, c: char| {
            pos.offset += c.len_utf8();
            if c == '\n' {
                pos.line += 1;
                pos.col = 1;
            } else {
                pos.col += 1;
            }
        };
        for _ in 0..skip {
            if let Some(c) = chars.next() {
                step(&mut pos, c);
            }
        }
        let mut decoded = 0;
        while decoded < index {
            let Some(c) = chars.next() else { break };
            step(&mut pos, c);
            match (quote, c) {
                (Quote::Double, '\\') => {
                    if let Some(c) = chars.next() {
                        step(&mut pos, c);
                    }
                }
                (Quote::Single, '\'') => {
                    if let Some(c) = chars.next() {
                        step(&mut pos, c);
                    }
                }
                _ => {}
            }
            decoded += 1;
        }
        pos
    }
}

/// Parses one YAML document. An empty file gives a `Null` node.
pub fn parse(source: &str) -> Result<Node, SyntaxError> {
    let mut builder = Builder {
        source,
        cursor: CharCursor::default(),
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        documents: 0,
        error: None,
    };
    let mut parser = Parser::new_from_str(source);
    if let Err(e) = parser.load(&mut builder, false) {
        return Err(SyntaxError {
            pos: pos_from_marker(source, e.marker()),
            message: e.info().to_string(),
        });
    }
    if let Some(error) = builder.error {
        return Err(error);
    }
    Ok(builder.root.unwrap_or(Node {
        pos: Pos {
            offset: 0,
            line: 1,
            col: 1,
        },
        kind: Kind::Null,
    }))
}

/// yaml-rust2 reports lines 1-based and columns 0-based; we want both 1-based
/// and in characters.
fn pos_from_marker(source: &str, marker: &Marker) -> Pos {
    pos_from_marker_with(source, marker, &mut CharCursor::default())
}

fn pos_from_marker_with(source: &str, marker: &Marker, cursor: &mut CharCursor) -> Pos {
    let offset = cursor.byte_of(source, marker.index());
    let line_start = source[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    Pos {
        offset,
        line: marker.line().max(1),
        col: source[line_start..offset].chars().count() + 1,
    }
}

/// Converts yaml-rust2's character indices to byte offsets. Events arrive in
/// (almost always) increasing order, so it walks on from the last answer
/// instead of from the start: linear in the file, not quadratic.
#[derive(Default)]
struct CharCursor {
    chars: usize,
    bytes: usize,
}

impl CharCursor {
    fn byte_of(&mut self, source: &str, chars: usize) -> usize {
        if chars < self.chars {
            *self = CharCursor::default();
        }
        let rest = &source[self.bytes..];
        let mut walked = rest.char_indices().skip(chars - self.chars);
        match walked.next() {
            Some((i, _)) => {
                self.bytes += i;
                self.chars = chars;
            }
            None => {
                self.bytes = source.len();
                self.chars += rest.chars().count();
            }
        }
        self.bytes
    }
}

enum Frame {
    Seq(Node, usize),
    Map(Node, usize, Option<Node>),
}

struct Builder<'a> {
    source: &'a str,
    cursor: CharCursor,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    documents: usize,
    error: Option<SyntaxError>,
}

impl Builder<'_> {
    fn push_value(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq(seq, _)) => {
                if let Kind::Seq(items) = &mut seq.kind {
                    items.push(node);
                }
            }
            Some(Frame::Map(map, _, key)) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    if let Kind::Map(entries) = &mut map.kind {
                        entries.push((k, node));
                    }
                }
            },
        }
    }
}

fn scalar_kind(value: String, style: TScalarStyle) -> Kind {
    let quote = match style {
        TScalarStyle::Plain => Quote::Plain,
        TScalarStyle::SingleQuoted => Quote::Single,
        TScalarStyle::DoubleQuoted => Quote::Double,
        TScalarStyle::Literal | TScalarStyle::Folded => Quote::Block,
    };
    if quote != Quote::Plain {
        return Kind::Str(value, quote);
    }
    match value.as_str() {
        "~" | "null" | "Null" | "NULL" | "" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        _ => {}
    }
    if let Ok(i) = value.parse::<i64>() {
        return Kind::Int(i);
    }
    let looks_numeric = value
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
        && value.chars().any(|c| c.is_ascii_digit());
    if looks_numeric && let Ok(f) = value.parse::<f64>() {
        return Kind::Float(f);
    }
    Kind::Str(value, Quote::Plain)
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, event: Event, marker: Marker) {
        if self.error.is_some() {
            return;
        }
        let pos = pos_from_marker_with(self.source, &marker, &mut self.cursor);
        match event {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    self.error = Some(SyntaxError {
                        pos,
                        message: "only one YAML document per file is supported".into(),
                    });
                }
            }
            Event::Scalar(value, style, anchor, _tag) => {
                let node = Node {
                    pos,
                    kind: scalar_kind(value, style),
                };
                self.push_value(node, anchor);
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.push_value(Node { pos, ..node }, 0),
                None => {
                    self.error = Some(SyntaxError {
                        pos,
                        message: "alias to an unknown anchor".into(),
                    });
                }
            },
            Event::SequenceStart(anchor, _) => self.stack.push(Frame::Seq(
                Node {
                    pos,
                    kind: Kind::Seq(Vec::new()),
                },
                anchor,
            )),
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map(
                Node {
                    pos,
                    kind: Kind::Map(Vec::new()),
                },
                anchor,
                None,
            )),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Seq(node, anchor)) | Some(Frame::Map(node, anchor, _)) => {
                    self.push_value(node, anchor)
                }
                None => {}
            },
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let src = "a:\n  - \"x {y}\"\n  - plain text\n";
        let root = parse(src).unwrap();
        let items = root.get("a").unwrap().as_seq().unwrap();
        assert_eq!((items[0].pos.line, items[0].pos.col), (2, 5));
        assert_eq!((items[1].pos.line, items[1].pos.col), (3, 5));
        // Character 2 of "x {y}" is '{', one past the opening quote.
        let p = items[0].pos_of_char(src, 2);
        assert_eq!((p.line, p.col), (2, 8));
        assert_eq!(&src[p.offset..p.offset + 1], "{");
    }

    #[test]
    fn scalars_have_types() {
        let root = parse("a: 1\nb: 'one'\nc: true\nd: 1.5\ne:\n").unwrap();
        assert_eq!(root.get("a").unwrap().kind, Kind::Int(1));
        assert!(
            matches!(root.get("b").unwrap().kind, Kind::Str(ref s, Quote::Single) if s == "one")
        );
        assert_eq!(root.get("c").unwrap().kind, Kind::Bool(true));
        assert_eq!(root.get("d").unwrap().kind, Kind::Float(1.5));
        assert_eq!(root.get("e").unwrap().kind, Kind::Null);
    }

    #[test]
    fn an_alias_reads_as_its_anchored_node() {
        // Intent files share word lists this way (intents/en/music.yaml).
        let root = parse("a: &words [x, y]\nb: *words\n").unwrap();
        let b = root.get("b").unwrap().as_seq().unwrap();
        assert_eq!(b.len(), 2);
        assert!(matches!(b[1].kind, Kind::Str(ref s, _) if s == "y"));
        assert!(parse("a: *nowhere\n").is_err());
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err:?}");
        let err = parse("a:\n  b: 1\n c: 2\n").unwrap_err();
        assert_eq!(err.pos.line, 3, "{err:?}");
    }
}
