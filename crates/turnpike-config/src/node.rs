//! The parsed document tree: nodes that remember where they came from, and paths into the tree.

use std::fmt;

use crate::source::Span;

/// How a string scalar was written. Only plain scalars are resolved by the YAML core schema
/// (`8080` is an integer, `"8080"` a string).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StrStyle {
    /// Unquoted.
    Plain,
    /// Single- or double-quoted, or a block scalar (`|`, `>`): always a string.
    Quoted,
}

/// What a node holds.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// `null`, `~`, or nothing at all.
    Null,
    /// `true` / `false` (also `True`, `TRUE`, ...).
    Bool(bool),
    /// A decimal, `0x` or `0o` integer that fits in an `i64`.
    Int(i64),
    /// A float, including `.inf`, `-.inf` and `.nan`.
    Float(f64),
    /// Any other scalar, with how it was written.
    Str(String, StrStyle),
    /// A sequence. Elements keep their original order.
    Seq(Vec<Node>),
    /// A mapping, in source order. Keys are always [`NodeKind::Str`] nodes: the loader rejects
    /// null, sequence and mapping keys, and keeps the text of other scalar keys (`200:` is the
    /// key `"200"`).
    Map(Vec<(Node, Node)>),
}

/// One value of a config document, with the position it was read from.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub kind: NodeKind,
    /// Where the value starts (and, for a one-line scalar, ends).
    pub span: Span,
    /// Whether `${env:..}` / `${file:..}` substitution changed this scalar. Such a node's text
    /// must never appear in a message: [`crate::ConfigError::at`] and the deserializer redact it.
    pub substituted: bool,
    /// Source text of a plain scalar that resolved to a non-string (`0x1F`, `TRUE`), so it can
    /// still be read as a string exactly as written.
    pub(crate) raw: Option<String>,
    /// Values that substitution inserted here; redacted from messages.
    pub(crate) secrets: Vec<String>,
}

impl Node {
    /// A node of `kind` at `span`, not substituted.
    pub fn new(kind: NodeKind, span: Span) -> Self {
        Node { kind, span, substituted: false, raw: None, secrets: Vec::new() }
    }

    /// Builds a node from a plain (unquoted) scalar, resolving it by the YAML 1.2 core schema.
    ///
    /// Fails only for an integer literal that does not fit in an `i64`.
    pub fn from_plain(text: &str, span: Span) -> Result<Self, String> {
        let kind = resolve_plain(text)?;
        let mut node = Node::new(kind, span);
        if !matches!(node.kind, NodeKind::Str(..) | NodeKind::Null) {
            node.raw = Some(text.to_owned());
        }
        Ok(node)
    }

    /// The string value, if this is a string scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s, _) => Some(s),
            _ => None,
        }
    }

    /// The text of a scalar as written: strings as-is, other plain scalars in their source
    /// spelling. `None` for null and collections.
    pub fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            NodeKind::Str(s, _) => Some(s.clone()),
            NodeKind::Null | NodeKind::Seq(_) | NodeKind::Map(_) => None,
            NodeKind::Bool(b) => Some(self.raw.clone().unwrap_or_else(|| b.to_string())),
            NodeKind::Int(i) => Some(self.raw.clone().unwrap_or_else(|| i.to_string())),
            NodeKind::Float(f) => Some(self.raw.clone().unwrap_or_else(|| f.to_string())),
        }
    }

    /// The value under `key` if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            NodeKind::Map(entries) => entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v),
            _ => None,
        }
    }

    /// A short name for the kind of value, for messages: `null`, `a boolean`, `a mapping`...
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a float",
            NodeKind::Str(..) => "a string",
            NodeKind::Seq(_) => "a sequence",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// The node at `path` below this one, or `None` if some segment does not exist.
    pub fn lookup(&self, path: &Path) -> Option<&Node> {
        path.0.iter().try_fold(self, |node, seg| node.child(seg))
    }

    /// The deepest node along `path` that exists (this node if even the first segment is
    /// missing).
    pub fn lookup_nearest(&self, path: &Path) -> &Node {
        let mut node = self;
        for seg in &path.0 {
            match node.child(seg) {
                Some(child) => node = child,
                None => break,
            }
        }
        node
    }

    /// Renders `path` for people, using this node as the root: `routes[orders].match.path`.
    ///
    /// A sequence element that is a mapping with a scalar `id` (else `name`) renders as
    /// `[that-id]`, otherwise as `[3]`; substituted ids are never shown. Keys that are empty or
    /// contain `.`, `[`, `]`, quotes or whitespace render as `["a.b"]`. Segments past the end of
    /// the tree render plainly.
    pub fn display_path(&self, path: &Path) -> String {
        let mut out = String::new();
        let mut node = Some(self);
        for seg in &path.0 {
            let child = node.and_then(|n| n.child(seg));
            match seg {
                PathSeg::Key(key) => push_key(&mut out, key),
                PathSeg::Index(i) => match child.and_then(element_label) {
                    Some(label) => {
                        out.push('[');
                        out.push_str(&label);
                        out.push(']');
                    }
                    None => {
                        out.push('[');
                        out.push_str(&i.to_string());
                        out.push(']');
                    }
                },
            }
            node = child;
        }
        out
    }

    fn child(&self, seg: &PathSeg) -> Option<&Node> {
        match (seg, &self.kind) {
            (PathSeg::Key(key), NodeKind::Map(_)) => self.get(key),
            (PathSeg::Index(i), NodeKind::Seq(items)) => items.get(*i),
            _ => None,
        }
    }

    /// Every secret that substitution put into this node or below it.
    pub(crate) fn collect_secrets(&self, out: &mut Vec<String>) {
        if self.substituted {
            out.extend(self.secrets.iter().filter(|s| !s.is_empty()).cloned());
            if let Some(text) = self.scalar_text().filter(|s| !s.is_empty()) {
                out.push(text);
            }
        }
        match &self.kind {
            NodeKind::Seq(items) => items.iter().for_each(|n| n.collect_secrets(out)),
            NodeKind::Map(entries) => entries.iter().for_each(|(_, v)| v.collect_secrets(out)),
            _ => {}
        }
    }
}

fn element_label(node: &Node) -> Option<String> {
    ["id", "name"].iter().find_map(|key| {
        let value = node.get(key)?;
        if value.substituted {
            return None;
        }
        value.scalar_text().filter(|s| !s.is_empty())
    })
}

fn push_key(out: &mut String, key: &str) {
    let needs_quotes =
        key.is_empty() || key.chars().any(|c| matches!(c, '.' | '[' | ']' | '"' | '\'') || c.is_whitespace());
    if needs_quotes {
        out.push_str(&format!("[{key:?}]"));
    } else {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(key);
    }
}

/// Removes every occurrence of each secret (and its escaped form) from `message`.
pub(crate) fn redact(message: &str, secrets: &[String]) -> String {
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    // Longest first, so a secret containing a shorter one is replaced whole.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = message.to_owned();
    for secret in secrets {
        let escaped = secret.escape_debug().to_string();
        if escaped != *secret {
            out = out.replace(&escaped, "<redacted>");
        }
        out = out.replace(secret.as_str(), "<redacted>");
    }
    out
}

/// Resolves a plain scalar by the YAML 1.2 core schema.
pub(crate) fn resolve_plain(text: &str) -> Result<NodeKind, String> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(NodeKind::Null),
        "true" | "True" | "TRUE" => return Ok(NodeKind::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(NodeKind::Bool(false)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Ok(NodeKind::Float(f64::INFINITY));
        }
        "-.inf" | "-.Inf" | "-.INF" => return Ok(NodeKind::Float(f64::NEG_INFINITY)),
        ".nan" | ".NaN" | ".NAN" => return Ok(NodeKind::Float(f64::NAN)),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if is_digits(hex, 16) {
            return parse_radix(text, hex, 16);
        }
    } else if let Some(oct) = text.strip_prefix("0o") {
        if is_digits(oct, 8) {
            return parse_radix(text, oct, 8);
        }
    } else {
        let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
        if is_digits(digits, 10) {
            return text
                .parse::<i64>()
                .map(NodeKind::Int)
                .map_err(|_| format!("integer `{text}` does not fit in 64 bits"));
        }
        if is_core_float(digits)
            && let Ok(f) = text.parse::<f64>()
        {
            return Ok(NodeKind::Float(f));
        }
    }
    Ok(NodeKind::Str(text.to_owned(), StrStyle::Plain))
}

fn parse_radix(text: &str, digits: &str, radix: u32) -> Result<NodeKind, String> {
    i64::from_str_radix(digits, radix)
        .map(NodeKind::Int)
        .map_err(|_| format!("integer `{text}` does not fit in 64 bits"))
}

fn is_digits(s: &str, radix: u32) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_digit(radix))
}

/// `( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?` (sign already stripped).
fn is_core_float(s: &str) -> bool {
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some(("", frac)) => is_digits(frac, 10),
        Some((int, frac)) => is_digits(int, 10) && (frac.is_empty() || is_digits(frac, 10)),
        None => is_digits(mantissa, 10),
    };
    let exponent_ok = exponent.is_none_or(|e| is_digits(e.strip_prefix(['-', '+']).unwrap_or(e), 10));
    mantissa_ok && exponent_ok
}

/// One step of a [`Path`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathSeg {
    /// A mapping key.
    Key(String),
    /// A sequence index, always the element's position in the source file.
    Index(usize),
}

/// A location in a document tree: `Path::root().key("routes").index(3).key("upstream")`.
///
/// Indices are positions in the source, never shifted by elements dropped during error
/// recovery. [`Node::display_path`] renders a path with element ids; `Display` renders it
/// plainly (`routes[3].upstream`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path(Vec<PathSeg>);

impl Path {
    /// The empty path: the document root.
    pub fn root() -> Self {
        Path(Vec::new())
    }

    /// This path extended by a mapping key.
    #[must_use]
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.0.push(PathSeg::Key(key.into()));
        self
    }

    /// This path extended by a sequence index.
    #[must_use]
    pub fn index(mut self, index: usize) -> Self {
        self.0.push(PathSeg::Index(index));
        self
    }

    /// Appends a segment in place.
    pub fn push(&mut self, seg: PathSeg) {
        self.0.push(seg);
    }

    /// The path one level up, or `None` at the root.
    pub fn parent(&self) -> Option<Path> {
        let (_, rest) = self.0.split_last()?;
        Some(Path(rest.to_vec()))
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[PathSeg] {
        &self.0
    }

    /// Whether this is the root path.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<PathSeg>> for Path {
    fn from(segments: Vec<PathSeg>) -> Self {
        Path(segments)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        for seg in &self.0 {
            match seg {
                PathSeg::Key(key) => push_key(&mut out, key),
                PathSeg::Index(i) => out.push_str(&format!("[{i}]")),
            }
        }
        f.write_str(&out)
    }
}
