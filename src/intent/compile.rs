//! Definitions → the matcher's graph, compiled once.
//!
//! Compiling resolves every `<rule>` and `{list}` reference to an index,
//! normalises literal text with the same normaliser the transcripts go
//! through (so "twelve" in a template meets "12" in speech), and indexes list
//! values by their first word. Unknown references and rule cycles become
//! diagnostics; a sentence that has one is left out, the rest still work.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::diag::{Diagnostic, Severity};
use super::load::{Definitions, ListDef, NamedList, Origin, RangeDef, Risk, RuleDef};
use super::normalize::normalize_fragment;
use super::template::Expr;
use super::yaml::pos_in_scalar;

/// A node of the compiled matching graph.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    /// Normalised literal text; spaces are word boundaries.
    Text(Box<str>),
    Seq(Box<[Node]>),
    Alt(Box<[Node]>),
    /// Items in any order; each is matched as a separate word group.
    Perm(Box<[Node]>),
    Slot {
        list: u32,
        slot: Arc<str>,
        capture: bool,
    },
    Rule(u32),
}

/// A compiled list value.
#[derive(Debug, Clone)]
pub(crate) struct CValue {
    pub spoken: Node,
    /// `None`: the value is the spoken words.
    pub out: Option<Value>,
    pub context: Map<String, Value>,
}

#[derive(Debug, Clone)]
pub(crate) enum CList {
    Values {
        values: Vec<CValue>,
        /// Values whose spoken form is plain text, by their first word.
        by_first_word: HashMap<Box<str>, Vec<u32>>,
        /// Values whose spoken form is a template: tried everywhere.
        other: Vec<u32>,
    },
    Range(RangeDef),
    Wildcard(super::defs::WildcardDef),
    Time {
        pm_hours: Option<super::builtins::PmHours>,
    },
    Date,
}

/// One sentence group of an intent, compiled.
#[derive(Debug, Clone)]
pub(crate) struct CData {
    pub intent: u32,
    pub slots: Map<String, Value>,
    pub requires_context: Map<String, Value>,
    pub excludes_context: Map<String, Value>,
    pub response: Option<String>,
}

/// One sentence template, compiled.
#[derive(Debug, Clone)]
pub(crate) struct CSentence {
    pub node: Node,
    /// Literal words every match of this sentence contains: if one is
    /// missing from the input, the sentence cannot match (a cheap filter
    /// before backtracking).
    pub required: Box<[Box<str>]>,
    pub data: u32,
    pub text: String,
    pub origin: Origin,
}

/// Intent metadata the rest of the program needs.
#[derive(Debug, Clone)]
pub struct IntentInfo {
    /// The intent's name.
    pub name: String,
    /// Effective risk (undeclared → high).
    pub risk: Risk,
    /// Whether `risk` was declared in a file.
    pub risk_declared: bool,
    /// Read-back template.
    pub confirm: Option<String>,
    /// Executor.
    pub action: Option<super::load::ActionSpec>,
    /// Follow-up questions for what a match may lack, in the order asked.
    pub ask: Vec<super::load::AskDef>,
    /// The request in a few words (`summary:`).
    pub summary: Option<String>,
    /// Slots every template of the intent takes from the words (a data
    /// block's fixed `slots:` do not count: they need not be said): a
    /// reading the fallback made without one of them is one no template
    /// could have made.
    pub filled: Vec<String>,
}

/// The compiled graph: everything the matcher reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Graph {
    pub intents: Vec<IntentInfo>,
    pub data: Vec<CData>,
    pub sentences: Vec<CSentence>,
    pub rules: Vec<Node>,
    pub lists: Vec<CList>,
    /// Skip words as token sequences, longest first.
    pub skip_words: Vec<Vec<String>>,
}

/// Which names a reference can see: the data block's own, then the files'.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Scope {
    Global,
    Data(u32),
}

struct Compiler<'d> {
    defs: &'d Definitions,
    extra_lists: &'d HashMap<String, ListDef>,
    graph: Graph,
    diags: Vec<Diagnostic>,
    /// `None`: compiling it failed (already reported).
    rule_ids: HashMap<(Scope, String), Option<u32>>,
    list_ids: HashMap<(Scope, String), u32>,
    /// Rules being compiled right now, to find cycles.
    in_progress: Vec<(Scope, String)>,
    /// True while checking shared rules and lists nobody has used yet.
    checking_shared: bool,
    /// Required words of each compiled rule, computed once.
    rule_required: HashMap<u32, Vec<String>>,
    /// Slots every match of each compiled rule fills, computed once.
    rule_slots: HashMap<u32, Vec<String>>,
    /// Local rules and lists of the data block being compiled.
    local_rules: HashMap<u32, &'d std::collections::BTreeMap<String, RuleDef>>,
    local_lists: HashMap<u32, &'d std::collections::BTreeMap<String, NamedList>>,
}

/// Rules referencing rules deeper than this are refused (and cycles are caught).
const MAX_RULE_DEPTH: usize = 100;

/// A reference that could not be resolved; the sentence is dropped.
struct Broken;

/// Compiles definitions. `extra_lists` are lists supplied by the caller (for
/// example Home Assistant's entity names from a test fixture).
pub(crate) fn compile(
    defs: &Definitions,
    extra_lists: &HashMap<String, ListDef>,
) -> (Graph, Vec<Diagnostic>) {
    let mut c = Compiler {
        defs,
        extra_lists,
        graph: Graph::default(),
        diags: Vec::new(),
        rule_ids: HashMap::new(),
        list_ids: HashMap::new(),
        in_progress: Vec::new(),
        checking_shared: false,
        rule_required: HashMap::new(),
        rule_slots: HashMap::new(),
        local_rules: HashMap::new(),
        local_lists: HashMap::new(),
    };
    let mut skip: Vec<Vec<String>> = defs
        .skip_words
        .iter()
        .map(|w| {
            super::normalize::tokenize(w)
                .into_iter()
                .map(|t| t.norm)
                .collect::<Vec<_>>()
        })
        .filter(|w| !w.is_empty())
        .collect();
    skip.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    skip.dedup();
    c.graph.skip_words = skip;

    for (intent_index, intent) in defs.intents.iter().enumerate() {
        c.graph.intents.push(IntentInfo {
            name: intent.name.clone(),
            risk: intent.risk(),
            risk_declared: intent.risk.is_some(),
            confirm: intent.confirm.clone(),
            action: intent.action.clone(),
            ask: intent.ask.clone(),
            summary: intent.summary.clone(),
            filled: Vec::new(),
        });
        let mut filled: Option<Vec<String>> = None;
        for data in &intent.data {
            let data_index = c.graph.data.len() as u32;
            c.graph.data.push(CData {
                intent: intent_index as u32,
                slots: data.slots.clone(),
                requires_context: data.requires_context.clone(),
                excludes_context: data.excludes_context.clone(),
                response: data.response.clone(),
            });
            c.local_rules.insert(data_index, &data.rules);
            c.local_lists.insert(data_index, &data.lists);
            let scope = Scope::Data(data_index);
            for sentence in &data.sentences {
                if let Ok(node) = c.node(&sentence.expr, scope, sentence.origin, &sentence.text) {
                    let required = required_words(&node, &c.graph.rules, &mut c.rule_required)
                        .into_iter()
                        .map(String::into_boxed_str)
                        .collect();
                    let slots = required_slots(&node, &c.graph.rules, &mut c.rule_slots);
                    filled = Some(match filled {
                        None => slots,
                        Some(prev) => prev.into_iter().filter(|s| slots.contains(s)).collect(),
                    });
                    c.graph.sentences.push(CSentence {
                        required,
                        node,
                        data: data_index,
                        text: sentence.text.clone(),
                        origin: sentence.origin,
                    });
                }
            }
        }
        let mut filled = filled.unwrap_or_default();
        filled.sort();
        filled.dedup();
        c.graph.intents[intent_index].filled = filled;
    }
    // Shared rules and lists still get checked even if nothing uses them.
    c.checking_shared = true;
    for (name, def) in &defs.rules {
        let _ = c.rule(name, Scope::Global, Some((def.origin, "", 0)));
    }
    for name in defs.lists.keys() {
        let _ = c.list(name, Scope::Global, None);
    }
    (c.graph, c.diags)
}

impl<'d> Compiler<'d> {
    fn error_at(&mut self, origin: Origin, text: &str, offset: usize, message: String) {
        let file = &self.defs.files[origin.file];
        let index = text[..offset.min(text.len())].chars().count();
        let pos = pos_in_scalar(&file.text, origin.pos, origin.quote, index);
        self.diags.push(Diagnostic::new(
            Severity::Error,
            &file.path,
            &file.text,
            pos,
            message,
        ));
    }

    fn node(
        &mut self,
        expr: &Expr,
        scope: Scope,
        origin: Origin,
        text: &str,
    ) -> Result<Node, Broken> {
        Ok(match expr {
            Expr::Text(t) => Node::Text(normalize_fragment(t).into_boxed_str()),
            Expr::Seq(items) => Node::Seq(self.nodes(items, scope, origin, text)?),
            Expr::Alt(items) => Node::Alt(self.nodes(items, scope, origin, text)?),
            Expr::Perm(items) => Node::Perm(self.nodes(items, scope, origin, text)?),
            Expr::Rule { name, offset } => {
                Node::Rule(self.rule(name, scope, Some((origin, text, *offset)))?)
            }
            Expr::List(r) => Node::Slot {
                list: self.list(&r.list, scope, Some((origin, text, r.offset)))?,
                slot: Arc::from(r.slot.as_str()),
                capture: r.capture,
            },
        })
    }

    fn nodes(
        &mut self,
        items: &[Expr],
        scope: Scope,
        origin: Origin,
        text: &str,
    ) -> Result<Box<[Node]>, Broken> {
        // Report every broken reference in the group, not just the first.
        let mut out = Vec::with_capacity(items.len());
        let mut broken = false;
        for item in items {
            match self.node(item, scope, origin, text) {
                Ok(n) => out.push(n),
                Err(Broken) => broken = true,
            }
        }
        if broken {
            Err(Broken)
        } else {
            Ok(out.into_boxed_slice())
        }
    }

    /// The scope a reference really resolves in: a data block's own scope
    /// only if it defines local rules or lists, else the files' scope (so
    /// shared rules are compiled once, not once per block).
    fn effective(&self, scope: Scope) -> Scope {
        match scope {
            Scope::Data(d)
                if self.local_rules.get(&d).is_some_and(|m| !m.is_empty())
                    || self.local_lists.get(&d).is_some_and(|m| !m.is_empty()) =>
            {
                scope
            }
            _ => Scope::Global,
        }
    }

    /// Resolves `<name>` as seen from `scope`. As in hassil, a shared rule's
    /// body sees the local rules and lists of the block that uses it.
    fn rule(
        &mut self,
        name: &str,
        scope: Scope,
        at: Option<(Origin, &str, usize)>,
    ) -> Result<u32, Broken> {
        let scope = self.effective(scope);
        let def = match scope {
            Scope::Data(d) => self
                .local_rules
                .get(&d)
                .and_then(|m| m.get(name))
                .or_else(|| self.defs.rules.get(name)),
            Scope::Global => self.defs.rules.get(name),
        };
        let Some(def) = def else {
            if scope == Scope::Global && at.is_none() {
                return Err(Broken);
            }
            if scope == Scope::Global && self.defined_locally(name, true) && self.checking_shared {
                return Err(Broken); // checked where a block that defines it uses it
            }
            return self.unknown("rule", name, at);
        };
        let key = (scope, name.to_string());
        if let Some(id) = self.rule_ids.get(&key) {
            return id.ok_or(Broken);
        }
        if let Some(start) = self.in_progress.iter().position(|k| *k == key) {
            let chain: Vec<String> = self.in_progress[start..]
                .iter()
                .map(|(_, n)| format!("<{n}>"))
                .chain(std::iter::once(format!("<{name}>")))
                .collect();
            let message = format!("rule cycle: {}", chain.join(" → "));
            match at {
                Some((origin, text, offset)) => self.error_at(origin, text, offset, message),
                None => self.error_at(def.origin, &def.text, 0, message),
            }
            return Err(Broken);
        }
        if self.in_progress.len() >= MAX_RULE_DEPTH {
            let message = format!("rules nest more than {MAX_RULE_DEPTH} deep");
            if let Some((origin, text, offset)) = at {
                self.error_at(origin, text, offset, message);
            }
            return Err(Broken);
        }
        self.in_progress.push(key.clone());
        let compiled = self.node(&def.expr, scope, def.origin, &def.text);
        self.in_progress.pop();
        let Ok(node) = compiled else {
            self.rule_ids.insert(key, None);
            return Err(Broken);
        };
        let id = self.graph.rules.len() as u32;
        self.graph.rules.push(node);
        self.rule_ids.insert(key, Some(id));
        Ok(id)
    }

    fn defined_locally(&self, name: &str, rule: bool) -> bool {
        if rule {
            self.local_rules.values().any(|m| m.contains_key(name))
        } else {
            self.local_lists.values().any(|m| m.contains_key(name))
        }
    }

    fn unknown<T>(
        &mut self,
        what: &str,
        name: &str,
        at: Option<(Origin, &str, usize)>,
    ) -> Result<T, Broken> {
        if let Some((origin, text, offset)) = at {
            let (open, close) = if what == "rule" {
                ('<', '>')
            } else {
                ('{', '}')
            };
            self.error_at(
                origin,
                text,
                offset,
                format!("unknown {what} {open}{name}{close}"),
            );
        }
        Err(Broken)
    }

    /// Resolves `{name}` as seen from `scope`.
    fn list(
        &mut self,
        name: &str,
        scope: Scope,
        at: Option<(Origin, &str, usize)>,
    ) -> Result<u32, Broken> {
        let scope = self.effective(scope);
        let local = match scope {
            Scope::Data(d) => self
                .local_lists
                .get(&d)
                .and_then(|m| m.get(name))
                .map(|l| (Scope::Data(d), l)),
            Scope::Global => None,
        };
        let (def_scope, def): (Scope, &ListDef) = match local {
            Some((s, l)) => (s, &l.def),
            None => match self.extra_lists.get(name) {
                Some(def) => (Scope::Global, def),
                None => match self.defs.lists.get(name) {
                    Some(l) => (Scope::Global, &l.def),
                    None if self.checking_shared && self.defined_locally(name, false) => {
                        return Err(Broken);
                    }
                    None => return self.unknown("list", name, at),
                },
            },
        };
        let key = (def_scope, name.to_string());
        if let Some(id) = self.list_ids.get(&key) {
            return Ok(*id);
        }
        let compiled = match def {
            ListDef::Values(values) => {
                let mut out = Vec::with_capacity(values.len());
                let mut by_first_word: HashMap<Box<str>, Vec<u32>> = HashMap::new();
                let mut other = Vec::new();
                for value in values {
                    let Ok(spoken) =
                        self.node(&value.spoken, def_scope, value.origin, &value.spoken_text)
                    else {
                        continue;
                    };
                    let index = out.len() as u32;
                    match &spoken {
                        Node::Text(t) if !t.trim().is_empty() => {
                            let first = t.split_whitespace().next().unwrap_or("");
                            by_first_word.entry(first.into()).or_default().push(index);
                        }
                        Node::Text(_) => continue, // an empty value would match anywhere
                        _ => other.push(index),
                    }
                    out.push(CValue {
                        spoken,
                        out: value.out.clone(),
                        context: value.context.clone(),
                    });
                }
                CList::Values {
                    values: out,
                    by_first_word,
                    other,
                }
            }
            ListDef::Range(r) => CList::Range(r.clone()),
            ListDef::Wildcard(w) => CList::Wildcard(w.clone()),
            ListDef::Time { pm_hours } => CList::Time {
                pm_hours: *pm_hours,
            },
            ListDef::Date => CList::Date,
        };
        let id = self.graph.lists.len() as u32;
        self.graph.lists.push(compiled);
        self.list_ids.insert(key, id);
        Ok(id)
    }
}

/// The literal words (space-separated pieces of literal text) that every
/// match of `node` must contain, sorted and deduplicated.
fn required_words(
    node: &Node,
    rules: &[Node],
    memo: &mut HashMap<u32, Vec<String>>,
) -> Vec<String> {
    in_every_match(node, rules, memo, &|leaf| match leaf {
        Node::Text(t) => t
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    })
}

/// The slots every match of `node` fills, sorted and deduplicated.
fn required_slots(
    node: &Node,
    rules: &[Node],
    memo: &mut HashMap<u32, Vec<String>>,
) -> Vec<String> {
    in_every_match(node, rules, memo, &|leaf| match leaf {
        // `@` captures go to the response, not the slots.
        Node::Slot {
            slot,
            capture: false,
            ..
        } => vec![slot.to_string()],
        _ => Vec::new(),
    })
}

/// What every match of `node` contains, of what `leaf` finds in its text and
/// slot nodes: all of a sequence's parts, only what every branch of an
/// alternative has (so an optional part adds nothing). Sorted, deduplicated;
/// `memo` keeps each rule's result.
fn in_every_match<T: Ord + Clone>(
    node: &Node,
    rules: &[Node],
    memo: &mut HashMap<u32, Vec<T>>,
    leaf: &dyn Fn(&Node) -> Vec<T>,
) -> Vec<T> {
    let mut out = match node {
        Node::Text(_) | Node::Slot { .. } => leaf(node),
        Node::Seq(items) | Node::Perm(items) => items
            .iter()
            .flat_map(|item| in_every_match(item, rules, memo, leaf))
            .collect(),
        Node::Alt(items) => {
            let mut common: Option<Vec<T>> = None;
            for item in items.iter() {
                let found = in_every_match(item, rules, memo, leaf);
                common = Some(match common {
                    None => found,
                    Some(prev) => prev.into_iter().filter(|w| found.contains(w)).collect(),
                });
                if common.as_ref().is_some_and(Vec::is_empty) {
                    break;
                }
            }
            common.unwrap_or_default()
        }
        Node::Rule(id) => {
            if let Some(found) = memo.get(id) {
                found.clone()
            } else {
                let found = rules
                    .get(*id as usize)
                    .map(|body| in_every_match(body, rules, memo, leaf))
                    .unwrap_or_default();
                memo.insert(*id, found.clone());
                found
            }
        }
    };
    out.sort();
    out.dedup();
    out
}
