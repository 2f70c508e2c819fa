//! Intent files → definitions ([`super::defs`], re-exported here), with
//! every problem reported as a diagnostic.
//!
//! The loader accepts Home Assistant's sentence files unchanged and our own
//! files, which add per-intent `risk`, `confirm`, `action` and `tests`,
//! file-level `not_understood` and `out_of_scope` lists, and two built-in
//! list kinds (`time`, `date`). It never stops at the first problem: `voicegate intents check`
//! shows them all, each with `file:line:col` and a caret under the spot.
//!
//! Loading does I/O only in [`read_dir`]; everything else works on strings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::diag::{Diagnostic, Severity};
use super::normalize;
use super::template::{self, Expr};
use super::yaml::{self, Kind, Node, Pos, Quote};
use crate::request::ActionKind;

pub use super::defs::*;

/// Reads every `*.yaml` file under `dir` (recursively), sorted by path.
pub fn read_dir(dir: &Path) -> std::io::Result<Vec<SourceFile>> {
    let mut paths = Vec::new();
    collect_yaml(dir, &mut paths)?;
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path)?;
            let text = String::from_utf8(bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: not UTF-8 text: {e}", path.display()),
                )
            })?;
            Ok(SourceFile { path, text })
        })
        .collect()
}

fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    if dir.is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_yaml(&path, out)?;
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            out.push(path);
        }
    }
    Ok(())
}

/// Loads definitions from files. Returns them with every diagnostic found;
/// definitions with errors are left out, the rest are kept.
pub fn load(files: Vec<SourceFile>) -> (Definitions, Vec<Diagnostic>) {
    let mut loader = Loader {
        defs: Definitions::default(),
        diags: Vec::new(),
        file: 0,
        extension_owner: BTreeMap::new(),
    };
    for (index, file) in files.iter().enumerate() {
        loader.file = index;
        loader.load_file(file);
    }
    loader.defs.files = files;
    for intent in &loader.defs.intents {
        if intent.risk.is_none() {
            loader.diags.push(loader_diag(
                &loader.defs.files,
                Severity::Warning,
                intent.origin,
                format!(
                    "intent '{}' has no 'risk': it defaults to high (needs a spoken confirmation)",
                    intent.name
                ),
            ));
        }
    }
    (loader.defs, loader.diags)
}

fn loader_diag(
    files: &[SourceFile],
    severity: Severity,
    origin: Origin,
    message: String,
) -> Diagnostic {
    let file = &files[origin.file];
    Diagnostic::new(severity, &file.path, &file.text, origin.pos, message)
}

struct Loader {
    defs: Definitions,
    diags: Vec<Diagnostic>,
    file: usize,
    /// For intents merged across files: which file set the extensions.
    extension_owner: BTreeMap<String, usize>,
}

type Text<'a> = &'a SourceFile;

impl Loader {
    fn origin(&self, pos: Pos) -> Origin {
        Origin {
            file: self.file,
            pos,
            quote: Quote::Plain,
        }
    }

    fn origin_of(&self, node: &Node) -> Origin {
        let quote = match &node.kind {
            Kind::Str(_, quote) => *quote,
            _ => Quote::Plain,
        };
        Origin {
            file: self.file,
            pos: node.pos,
            quote,
        }
    }

    fn report(&mut self, src: Text, severity: Severity, pos: Pos, message: impl Into<String>) {
        self.diags.push(Diagnostic::new(
            severity,
            &src.path,
            &src.text,
            pos,
            message.into(),
        ));
    }

    fn error(&mut self, src: Text, pos: Pos, message: impl Into<String>) {
        self.report(src, Severity::Error, pos, message);
    }

    fn warn(&mut self, src: Text, pos: Pos, message: impl Into<String>) {
        self.report(src, Severity::Warning, pos, message);
    }

    /// Checks that `node` is a mapping; reports duplicate and unknown keys.
    fn mapping<'n>(
        &mut self,
        src: Text,
        node: &'n Node,
        what: &str,
        known: Option<&[&str]>,
    ) -> Option<Vec<(String, &'n Node, &'n Node)>> {
        let Some(entries) = node.as_map() else {
            if node.kind != Kind::Null {
                self.error(
                    src,
                    node.pos,
                    format!("{what} must be a mapping, found {}", node.kind_name()),
                );
            }
            return None;
        };
        let mut seen: BTreeMap<String, Pos> = BTreeMap::new();
        let mut out = Vec::new();
        for (k, v) in entries {
            let Some(key) = k.scalar_text() else {
                self.error(src, k.pos, format!("keys in {what} must be plain text"));
                continue;
            };
            if let Some(first) = seen.get(&key) {
                let first = *first;
                self.error(
                    src,
                    k.pos,
                    format!(
                        "'{key}' is defined twice in {what} (first at line {}:{})",
                        first.line, first.col
                    ),
                );
                continue;
            }
            seen.insert(key.clone(), k.pos);
            if let Some(known) = known
                && !known.contains(&key.as_str())
            {
                self.warn(
                    src,
                    k.pos,
                    format!(
                        "unknown key '{key}' in {what} (ignored); known keys: {}",
                        known.join(", ")
                    ),
                );
                continue;
            }
            out.push((key, k, v));
        }
        Some(out)
    }

    fn string<'n>(&mut self, src: Text, node: &'n Node, what: &str) -> Option<&'n str> {
        match &node.kind {
            Kind::Str(s, _) => Some(s),
            _ => {
                self.error(
                    src,
                    node.pos,
                    format!("{what} must be text, found {}", node.kind_name()),
                );
                None
            }
        }
    }

    /// Parses a template held in a string node; errors point inside the string.
    fn template(&mut self, src: Text, node: &Node, text: &str) -> Option<Expr> {
        match template::parse(text) {
            Ok(expr) => Some(expr),
            Err(e) => {
                let char_index = text[..e.offset.min(text.len())].chars().count();
                let pos = node.pos_of_char(&src.text, char_index);
                self.error(src, pos, format!("template: {}", e.message));
                None
            }
        }
    }

    fn load_file(&mut self, src: Text) {
        let root = match yaml::parse(&src.text) {
            Ok(root) => root,
            Err(e) => {
                self.error(src, e.pos, format!("malformed YAML: {}", e.message));
                return;
            }
        };
        if root.kind == Kind::Null {
            self.warn(src, root.pos, "empty file");
            return;
        }
        let Some(top) = self.mapping(
            src,
            &root,
            "an intent file",
            Some(&[
                "language",
                "intents",
                "lists",
                "expansion_rules",
                "skip_words",
                "responses",
                "not_understood",
                "out_of_scope",
            ]),
        ) else {
            if root.kind != Kind::Null {
                return;
            }
            return;
        };
        for (key, _k, value) in top {
            match key.as_str() {
                "language" => {
                    self.string(src, value, "'language'");
                }
                "intents" => self.load_intents(src, value),
                "lists" => {
                    let lists = self.load_lists(src, value, "'lists'");
                    for (name, list) in lists {
                        if let Some(prev) = self.defs.lists.get(&name) {
                            let prev = prev.origin;
                            let prev_path = self.file_label(prev);
                            self.error(
                                src,
                                list.origin.pos,
                                format!("list '{name}' is already defined at {prev_path}"),
                            );
                        } else {
                            self.defs.lists.insert(name, list);
                        }
                    }
                }
                "expansion_rules" => {
                    let rules = self.load_rules(src, value);
                    for (name, rule) in rules {
                        if let Some(prev) = self.defs.rules.get(&name) {
                            let prev_path = self.file_label(prev.origin);
                            self.error(
                                src,
                                rule.origin.pos,
                                format!("rule '<{name}>' is already defined at {prev_path}"),
                            );
                        } else {
                            self.defs.rules.insert(name, rule);
                        }
                    }
                }
                "skip_words" => {
                    for item in self.string_list(src, value, "'skip_words'") {
                        self.defs.skip_words.push(item.0);
                    }
                }
                "not_understood" => {
                    for (text, pos) in self.string_list(src, value, "'not_understood'") {
                        let origin = self.origin(pos);
                        self.defs.not_understood.push((text, origin));
                    }
                }
                "out_of_scope" => {
                    for (text, pos) in self.string_list(src, value, "'out_of_scope'") {
                        let origin = self.origin(pos);
                        self.defs.not_understood.push((text.clone(), origin));
                        self.defs.out_of_scope.push((text, origin));
                    }
                }
                _ => {} // responses: Home Assistant's response texts, unused here
            }
        }
    }

    fn file_label(&self, origin: Origin) -> String {
        // During loading, `defs.files` is not filled yet; positions in the
        // current file are labelled by line only.
        if origin.file == self.file {
            format!("line {}:{}", origin.pos.line, origin.pos.col)
        } else {
            format!(
                "file #{} line {}:{}",
                origin.file + 1,
                origin.pos.line,
                origin.pos.col
            )
        }
    }

    fn string_list(&mut self, src: Text, node: &Node, what: &str) -> Vec<(String, Pos)> {
        let Some(items) = node.as_seq() else {
            self.error(src, node.pos, format!("{what} must be a list"));
            return Vec::new();
        };
        let mut out = Vec::new();
        for item in items {
            if let Some(s) = self.string(src, item, &format!("an item of {what}")) {
                out.push((s.to_string(), item.pos));
            }
        }
        out
    }

    fn load_rules(&mut self, src: Text, node: &Node) -> Vec<(String, RuleDef)> {
        let Some(entries) = self.mapping(src, node, "'expansion_rules'", None) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, _k, value) in entries {
            let Some(text) = self.string(src, value, &format!("rule '<{name}>'")) else {
                continue;
            };
            if let Some(expr) = self.template(src, value, text) {
                out.push((
                    name,
                    RuleDef {
                        text: text.to_string(),
                        expr,
                        origin: self.origin_of(value),
                    },
                ));
            }
        }
        out
    }

    fn load_lists(&mut self, src: Text, node: &Node, what: &str) -> Vec<(String, NamedList)> {
        let Some(entries) = self.mapping(src, node, what, None) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (name, key, value) in entries {
            if let Some(def) = self.load_list(src, &name, value) {
                out.push((
                    name,
                    NamedList {
                        def,
                        origin: self.origin(key.pos),
                    },
                ));
            }
        }
        out
    }

    fn load_list(&mut self, src: Text, name: &str, node: &Node) -> Option<ListDef> {
        let what = format!("list '{name}'");
        let entries = self.mapping(
            src,
            node,
            &what,
            Some(&["values", "range", "wildcard", "time", "date"]),
        )?;
        let mut kinds = entries.iter().filter(|(k, _, _)| {
            matches!(
                k.as_str(),
                "values" | "range" | "wildcard" | "time" | "date"
            )
        });
        let Some((kind, key, value)) = kinds.next() else {
            self.error(
                src,
                node.pos,
                format!("{what} needs one of 'values', 'range', 'wildcard', 'time' or 'date'"),
            );
            return None;
        };
        if let Some((other, k2, _)) = kinds.next() {
            self.error(
                src,
                k2.pos,
                format!("{what} has both '{kind}' and '{other}': a list is one kind"),
            );
            return None;
        }
        let _ = key;
        match kind.as_str() {
            "values" => self.load_values(src, value, &what).map(ListDef::Values),
            "range" => self.load_range(src, value, &what).map(ListDef::Range),
            "wildcard" => match value.kind {
                Kind::Bool(true) => Some(ListDef::Wildcard(WildcardDef::default())),
                Kind::Map(_) => self.load_wildcard(src, value, &what).map(ListDef::Wildcard),
                _ => {
                    self.error(
                        src,
                        value.pos,
                        format!("{what}: 'wildcard' must be true or a mapping (excluding, not_starting, not_possessive)"),
                    );
                    None
                }
            },
            "time" => self.load_time(src, value, &what),
            "date" => Some(ListDef::Date),
            _ => None,
        }
    }

    /// `wildcard: {excluding: [words], not_starting: [phrases],
    /// not_possessive: true}`, the words normalised as the matcher compares
    /// them.
    fn load_wildcard(&mut self, src: Text, node: &Node, what: &str) -> Option<WildcardDef> {
        let entries = self.mapping(
            src,
            node,
            what,
            Some(&["excluding", "not_starting", "not_possessive"]),
        )?;
        let mut def = WildcardDef::default();
        for (key, _, value) in entries {
            if key == "not_possessive" {
                match value.kind {
                    Kind::Bool(b) => def.not_possessive = b,
                    _ => self.error(
                        src,
                        value.pos,
                        format!("{what}: 'not_possessive' must be true or false"),
                    ),
                }
                continue;
            }
            let items = self.string_list(src, value, &format!("{what}: '{key}'"));
            for (text, pos) in items {
                let words: Vec<String> = normalize::tokenize(&text)
                    .into_iter()
                    .map(|t| t.norm)
                    .collect();
                if words.is_empty() {
                    self.error(src, pos, format!("{what}: '{key}' has an empty item"));
                    continue;
                }
                match key.as_str() {
                    "excluding" => def.excluding.extend(words),
                    _ => def.not_starting.push(words),
                }
            }
        }
        Some(def)
    }

    fn load_values(&mut self, src: Text, node: &Node, what: &str) -> Option<Vec<ListValue>> {
        let Some(items) = node.as_seq() else {
            self.error(
                src,
                node.pos,
                format!(
                    "{what}: 'values' must be a list, found {}",
                    node.kind_name()
                ),
            );
            return None;
        };
        let mut values = Vec::new();
        for item in items {
            match &item.kind {
                Kind::Str(text, _) => {
                    let Some(spoken) = self.template(src, item, text) else {
                        continue;
                    };
                    // A plain word list produces the word as written; a
                    // template produces the words actually spoken.
                    let out = (!template::is_template(text)).then(|| Value::String(text.clone()));
                    values.push(ListValue {
                        spoken,
                        spoken_text: text.clone(),
                        out,
                        context: Map::new(),
                        origin: self.origin_of(item),
                    });
                }
                Kind::Int(_) | Kind::Float(_) => {
                    let text = item.scalar_text().unwrap_or_default();
                    values.push(ListValue {
                        spoken: Expr::Text(text.clone()),
                        spoken_text: text,
                        out: Some(item.to_json()),
                        context: Map::new(),
                        origin: self.origin(item.pos),
                    });
                }
                Kind::Map(_) => {
                    if let Some(value) = self.load_mapped_value(src, item, what) {
                        values.push(value);
                    }
                }
                _ => self.error(
                    src,
                    item.pos,
                    format!(
                        "a value of {what} must be text or a mapping with 'in', found {}",
                        item.kind_name()
                    ),
                ),
            }
        }
        Some(values)
    }

    /// One list value written as a mapping: `{in: ..., out: ..., context:
    /// ...}`. `None` (after reporting why) when it has no usable `in`.
    fn load_mapped_value(&mut self, src: Text, item: &Node, what: &str) -> Option<ListValue> {
        let entries = self.mapping(
            src,
            item,
            &format!("a value of {what}"),
            Some(&["in", "out", "context", "metadata"]),
        )?;
        let mut spoken = None;
        let mut out = None;
        let mut context = Map::new();
        let mut in_origin = None;
        for (key, _k, value) in entries {
            match key.as_str() {
                "in" => {
                    let text = match &value.kind {
                        Kind::Str(s, _) => s.clone(),
                        Kind::Int(_) | Kind::Float(_) => value.scalar_text().unwrap_or_default(),
                        _ => {
                            self.error(
                                src,
                                value.pos,
                                format!("'in' must be text, found {}", value.kind_name()),
                            );
                            continue;
                        }
                    };
                    if let Some(expr) = self.template(src, value, &text) {
                        in_origin = Some(self.origin_of(value));
                        spoken = Some((expr, text));
                    }
                }
                "out" => out = Some(value.to_json()),
                "context" => match value.to_json() {
                    Value::Object(map) => context = map,
                    _ => self.error(src, value.pos, "'context' must be a mapping"),
                },
                _ => {}
            }
        }
        match spoken {
            Some((expr, text)) => Some(ListValue {
                spoken: expr,
                spoken_text: text,
                out,
                context,
                origin: in_origin.unwrap_or_else(|| self.origin(item.pos)),
            }),
            None => {
                if item.get("in").is_none() {
                    self.error(src, item.pos, format!("a value of {what} needs 'in'"));
                }
                None
            }
        }
    }

    /// `time: {}` or `time: {pm_hours: {from: 1, to: 10}}`.
    fn load_time(&mut self, src: Text, node: &Node, what: &str) -> Option<ListDef> {
        let what = format!("{what}: 'time'");
        let entries = self.mapping(src, node, &what, Some(&["pm_hours"]))?;
        let mut pm_hours = None;
        for (key, _k, value) in entries {
            if key != "pm_hours" {
                continue;
            }
            let range = self.load_range(src, value, &format!("{what}: 'pm_hours'"))?;
            let hour = |n: f64| (n.fract() == 0.0 && (1.0..=11.0).contains(&n)).then_some(n as u32);
            match (hour(range.from), hour(range.to)) {
                (Some(from), Some(to)) if from <= to => {
                    pm_hours = Some(super::builtins::PmHours { from, to });
                }
                _ => {
                    self.error(
                        src,
                        value.pos,
                        format!("{what}: 'pm_hours' must go from one whole hour to another, from 1 to 11"),
                    );
                    return None;
                }
            }
        }
        Some(ListDef::Time { pm_hours })
    }

    fn load_range(&mut self, src: Text, node: &Node, what: &str) -> Option<RangeDef> {
        let entries = self.mapping(
            src,
            node,
            &format!("{what}: 'range'"),
            Some(&[
                "type",
                "from",
                "to",
                "step",
                "multiplier",
                "fractions",
                "digits",
                "words",
                "words_language",
                "words_ruleset",
            ]),
        )?;
        let mut range = RangeDef {
            from: f64::NAN,
            to: f64::NAN,
            step: 1.0,
            multiplier: 1.0,
            fractions: 1,
        };
        for (key, _k, value) in entries {
            let number = match value.kind {
                Kind::Int(i) => Some(i as f64),
                Kind::Float(f) => Some(f),
                _ => None,
            };
            match key.as_str() {
                "from" | "to" | "step" | "multiplier" => {
                    let Some(n) = number.filter(|n| n.is_finite()) else {
                        self.error(
                            src,
                            value.pos,
                            format!("'{key}' must be a number, found {}", value.kind_name()),
                        );
                        return None;
                    };
                    match key.as_str() {
                        "from" => range.from = n,
                        "to" => range.to = n,
                        "step" => range.step = n,
                        _ => range.multiplier = n,
                    }
                }
                "fractions" => match value.as_str() {
                    Some("halves") => range.fractions = 2,
                    Some("tenths") => range.fractions = 10,
                    _ => {
                        self.error(src, value.pos, "'fractions' must be 'halves' or 'tenths'");
                        return None;
                    }
                },
                _ => {}
            }
        }
        if range.from.is_nan() || range.to.is_nan() {
            self.error(
                src,
                node.pos,
                format!("{what}: a range needs 'from' and 'to'"),
            );
            return None;
        }
        if range.step <= 0.0 {
            self.error(src, node.pos, format!("{what}: 'step' must be positive"));
            return None;
        }
        if range.from > range.to {
            self.error(src, node.pos, format!("{what}: 'from' is larger than 'to'"));
            return None;
        }
        Some(range)
    }

    fn load_intents(&mut self, src: Text, node: &Node) {
        let Some(entries) = self.mapping(src, node, "'intents'", None) else {
            return;
        };
        for (name, key, value) in entries {
            self.load_intent(src, name, key, value);
        }
    }

    /// Loads one intent of an `intents:` mapping and adds it to the
    /// definitions.
    fn load_intent(&mut self, src: Text, name: String, key: &Node, node: &Node) {
        if let Some((intent, has_extensions)) = self.read_intent(src, name, key, node) {
            self.add_intent(src, key, intent, has_extensions);
        }
    }

    /// Reads one intent's fields; `None` if it is not a mapping of known
    /// fields. The flag is true if it sets voicegate's extensions (`risk`,
    /// `confirm`, `action`), even with errors in them: of the files an
    /// intent is spread over, only one may set them.
    fn read_intent(
        &mut self,
        src: Text,
        name: String,
        key: &Node,
        node: &Node,
    ) -> Option<(IntentDef, bool)> {
        let what = format!("intent '{name}'");
        let entries = self.mapping(
            src,
            node,
            &what,
            Some(&[
                "data",
                "risk",
                "confirm",
                "action",
                "tests",
                "description",
                "summary",
                "ask",
                "examples",
                "fallback_leeway",
            ]),
        )?;
        let mut intent = IntentDef {
            name,
            risk: None,
            confirm: None,
            description: None,
            summary: None,
            action: None,
            data: Vec::new(),
            tests: Vec::new(),
            ask: Vec::new(),
            examples: Vec::new(),
            fallback_leeway: None,
            origin: self.origin(key.pos),
        };
        let mut has_extensions = false;
        for (field, _k, value) in entries {
            match field.as_str() {
                "risk" => {
                    has_extensions = true;
                    if let Some(risk) = self.load_risk(src, value, &what) {
                        intent.risk = Some(risk);
                    }
                }
                // Free text for people; anything else is ignored, as it
                // always was (Home Assistant's files are not ours to judge).
                "description" => intent.description = value.as_str().map(str::to_string),
                "summary" => {
                    if let Some(text) = self.string(src, value, &format!("{what}: 'summary'")) {
                        intent.summary = Some(text.to_string());
                    }
                }
                "confirm" => {
                    has_extensions = true;
                    if let Some(text) = self.string(src, value, "'confirm'") {
                        intent.confirm = Some(text.to_string());
                    }
                }
                "action" => {
                    has_extensions = true;
                    intent.action = self.load_action(src, value, &what);
                }
                "examples" => {
                    for (text, pos) in self.string_list(src, value, "'examples'") {
                        let origin = self.origin(pos);
                        intent.examples.push((text, origin));
                    }
                }
                "fallback_leeway" => {
                    let number = match value.kind {
                        Kind::Int(i) => Some(i as f64),
                        Kind::Float(f) => Some(f),
                        _ => None,
                    };
                    match number.filter(|v| (0.0..=0.5).contains(v)) {
                        Some(v) => intent.fallback_leeway = Some(v as f32),
                        None => self.error(
                            src,
                            value.pos,
                            format!("{what}: 'fallback_leeway' must be a number from 0 to 0.5"),
                        ),
                    }
                }
                "ask" => {
                    has_extensions = true;
                    let (asks, answers) = self.load_asks(src, value, &intent.name);
                    intent.ask = asks;
                    intent.data.extend(answers);
                }
                "data" => {
                    let data = self.load_items(src, value, &what, "data", |this, item| {
                        this.load_data(src, item, &what)
                    });
                    intent.data.extend(data);
                }
                "tests" => {
                    let tests = self.load_items(src, value, &what, "tests", |this, item| {
                        this.load_test(src, item)
                    });
                    intent.tests.extend(tests);
                }
                _ => {}
            }
        }
        Some((intent, has_extensions))
    }

    /// An intent's `risk`: `low` or `high`.
    fn load_risk(&mut self, src: Text, value: &Node, what: &str) -> Option<Risk> {
        match value.as_str() {
            Some("low") => Some(Risk::Low),
            Some("high") => Some(Risk::High),
            _ => {
                self.error(
                    src,
                    value.pos,
                    format!("{what}: 'risk' must be 'low' or 'high'"),
                );
                None
            }
        }
    }

    /// The items of a list field (`field`) of `what`, each read by `load`;
    /// those with errors are left out (`load` reported them).
    fn load_items<T>(
        &mut self,
        src: Text,
        value: &Node,
        what: &str,
        field: &str,
        mut load: impl FnMut(&mut Self, &Node) -> Option<T>,
    ) -> Vec<T> {
        let Some(items) = value.as_seq() else {
            self.error(src, value.pos, format!("{what}: '{field}' must be a list"));
            return Vec::new();
        };
        items.iter().filter_map(|item| load(self, item)).collect()
    }

    /// Adds a loaded intent to the definitions. Home Assistant splits one
    /// intent over several files, so an intent already loaded from another
    /// file gains this one's sentences and tests; its extensions may be set
    /// in one file only. Twice in one file is an error.
    fn add_intent(&mut self, src: Text, key: &Node, intent: IntentDef, has_extensions: bool) {
        let name = intent.name.clone();
        if let Some(existing) = self.defs.intents.iter_mut().find(|i| i.name == name) {
            if existing.origin.file == self.file {
                self.error(
                    src,
                    key.pos,
                    format!("intent '{name}' is defined twice in this file"),
                );
                return;
            }
            // Home Assistant splits one intent over several files: merge.
            if has_extensions {
                if let Some(owner) = self.extension_owner.get(&name) {
                    let owner = *owner;
                    self.error(
                        src,
                        key.pos,
                        format!(
                            "duplicate intent '{name}': its risk/confirm/action are already set in file #{}",
                            owner + 1
                        ),
                    );
                    return;
                }
                self.extension_owner.insert(name, self.file);
                existing.risk = intent.risk;
                existing.confirm = intent.confirm;
                existing.action = intent.action;
                existing.ask = intent.ask;
            }
            if existing.description.is_none() {
                existing.description = intent.description;
            }
            if existing.summary.is_none() {
                existing.summary = intent.summary;
            }
            existing.data.extend(intent.data);
            existing.tests.extend(intent.tests);
            existing.examples.extend(intent.examples);
            if intent.fallback_leeway.is_some() {
                existing.fallback_leeway = intent.fallback_leeway;
            }
        } else {
            if has_extensions {
                self.extension_owner.insert(name, self.file);
            }
            self.defs.intents.push(intent);
        }
    }

    fn load_action(&mut self, src: Text, node: &Node, what: &str) -> Option<ActionSpec> {
        let entries = self.mapping(
            src,
            node,
            &format!("{what}: 'action'"),
            Some(&["kind", "params"]),
        )?;
        let mut kind = None;
        let mut params = Value::Object(Map::new());
        for (key, _k, value) in entries {
            match key.as_str() {
                "kind" => {
                    kind = self
                        .string(src, value, "'kind'")
                        .map(|text| (text.to_string(), value.pos))
                }
                "params" => {
                    if value.as_map().is_none() {
                        self.error(src, value.pos, "'params' must be a mapping");
                    } else {
                        params = value.to_json();
                    }
                }
                _ => {}
            }
        }
        match kind {
            Some((text, pos)) if !text.trim().is_empty() => match text.parse::<ActionKind>() {
                Ok(kind) => Some(ActionSpec { kind, params }),
                Err(unknown) => {
                    self.error(src, pos, format!("{what}: 'action': {unknown}"));
                    None
                }
            },
            _ => {
                self.error(src, node.pos, format!("{what}: 'action' needs a 'kind'"));
                None
            }
        }
    }

    fn context_map(&mut self, src: Text, node: &Node, what: &str) -> Map<String, Value> {
        match node.to_json() {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            _ => {
                self.error(src, node.pos, format!("{what} must be a mapping"));
                Map::new()
            }
        }
    }

    fn load_data(&mut self, src: Text, node: &Node, what: &str) -> Option<DataDef> {
        let entries = self.mapping(
            src,
            node,
            &format!("a data block of {what}"),
            Some(&[
                "sentences",
                "slots",
                "requires_context",
                "excludes_context",
                "expansion_rules",
                "lists",
                "response",
                "metadata",
                "required_keywords",
                "wildcards_required",
            ]),
        )?;
        let mut data = DataDef::default();
        for (key, _k, value) in entries {
            match key.as_str() {
                "sentences" => {
                    let sentences =
                        self.templates(src, value, "'sentences' must be a list", "a sentence");
                    data.sentences.extend(sentences);
                }
                "slots" => data.slots = self.context_map(src, value, "'slots'"),
                "requires_context" => {
                    data.requires_context = self.context_map(src, value, "'requires_context'")
                }
                "excludes_context" => {
                    data.excludes_context = self.context_map(src, value, "'excludes_context'")
                }
                "expansion_rules" => {
                    data.rules = self.load_rules(src, value).into_iter().collect();
                }
                "lists" => {
                    data.lists = self.load_lists(src, value, "'lists'").into_iter().collect();
                }
                "response" => data.response = value.scalar_text(),
                _ => {}
            }
        }
        if node.get("sentences").is_none() {
            self.warn(
                src,
                node.pos,
                format!("a data block of {what} has no sentences"),
            );
        }
        Some(data)
    }

    /// `ask:` — a mapping from what may be missing to its question, either
    /// `name: "Question?"` or `name: {question, slots, answers,
    /// after_action}`. Returns
    /// the questions and, for each with `answers:`, a data block of those
    /// templates that matches only while that question waits
    /// ([`ASKING_KEY`]).
    fn load_asks(&mut self, src: Text, node: &Node, intent: &str) -> (Vec<AskDef>, Vec<DataDef>) {
        let (mut asks, mut answers) = (Vec::new(), Vec::new());
        let what = format!("'ask' of intent '{intent}'");
        let Some(entries) = self.mapping(src, node, &what, None) else {
            return (asks, answers);
        };
        for (name, _k, value) in entries {
            let mut ask = AskDef {
                name: name.clone(),
                question: String::new(),
                slots: vec![name.clone()],
                after_action: false,
            };
            if let Some(question) = value.as_str() {
                ask.question = question.to_string();
                asks.push(ask);
                continue;
            }
            let Some(fields) = self.mapping(
                src,
                value,
                &format!("ask '{name}'"),
                Some(&["question", "slots", "answers", "after_action"]),
            ) else {
                continue;
            };
            let mut data = DataDef::default();
            for (field, _k, v) in fields {
                match field.as_str() {
                    "question" => {
                        if let Some(q) = self.string(src, v, "'question'") {
                            ask.question = q.to_string();
                        }
                    }
                    "slots" => {
                        ask.slots = self
                            .string_list(src, v, "'slots'")
                            .into_iter()
                            .map(|(s, _)| s)
                            .collect();
                    }
                    "after_action" => match v.kind {
                        Kind::Bool(b) => ask.after_action = b,
                        _ => self.error(
                            src,
                            v.pos,
                            format!("ask '{name}': 'after_action' must be true or false"),
                        ),
                    },
                    "answers" => {
                        let answers = self.templates(
                            src,
                            v,
                            "'answers' must be a list of templates",
                            "an answer",
                        );
                        data.sentences.extend(answers);
                    }
                    _ => {}
                }
            }
            if ask.question.trim().is_empty() {
                self.error(src, value.pos, format!("ask '{name}' needs a 'question'"));
                continue;
            }
            if ask.slots.is_empty() {
                self.error(src, value.pos, format!("ask '{name}': 'slots' is empty"));
                continue;
            }
            if !data.sentences.is_empty() {
                data.requires_context
                    .insert(ASKING_KEY.into(), Value::String(ask.context_value(intent)));
                answers.push(data);
            }
            asks.push(ask);
        }
        (asks, answers)
    }

    /// A list of sentence templates (`sentences:`, `answers:`), each parsed;
    /// `not_list` is the error when it is no list, `item` names one.
    fn templates(
        &mut self,
        src: Text,
        value: &Node,
        not_list: &str,
        item: &str,
    ) -> Vec<SentenceDef> {
        let Some(items) = value.as_seq() else {
            self.error(src, value.pos, not_list);
            return Vec::new();
        };
        let mut out = Vec::new();
        for node in items {
            let Some(text) = self.string(src, node, item) else {
                continue;
            };
            if let Some(expr) = self.template(src, node, text) {
                out.push(SentenceDef {
                    text: text.to_string(),
                    expr,
                    origin: self.origin_of(node),
                });
            }
        }
        out
    }

    fn load_test(&mut self, src: Text, node: &Node) -> Option<TestCase> {
        let entries = self.mapping(
            src,
            node,
            "a test",
            Some(&["sentences", "slots", "context"]),
        )?;
        let mut test = TestCase {
            sentences: Vec::new(),
            slots: Map::new(),
            context: Map::new(),
        };
        for (key, _k, value) in entries {
            match key.as_str() {
                "sentences" => {
                    for (text, pos) in self.string_list(src, value, "'sentences'") {
                        let origin = self.origin(pos);
                        test.sentences.push((text, origin));
                    }
                }
                "slots" => test.slots = self.context_map(src, value, "'slots'"),
                "context" => test.context = self.context_map(src, value, "'context'"),
                _ => {}
            }
        }
        if test.sentences.is_empty() {
            self.error(src, node.pos, "a test needs 'sentences'");
            return None;
        }
        Some(test)
    }
}
