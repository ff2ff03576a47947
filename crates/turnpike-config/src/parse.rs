//! YAML (and therefore JSON) text to a [`Node`] tree: core-schema scalars, anchors, duplicate keys.

use std::collections::HashMap;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Tag};

use crate::error::ConfigError;
use crate::node::{Node, NodeKind, StrStyle, resolve_plain};
use crate::source::{FileId, Span};

/// Alias expansion beyond this many nodes is refused, so a "billion laughs" document cannot
/// exhaust memory.
const MAX_NODES: usize = 1_000_000;

/// The YAML core-schema tag prefix (`!!`).
const CORE_TAG_HANDLE: &str = "tag:yaml.org,2002:";

/// Parses one file. Returns the root (`None` after a syntax error or a second document) and
/// every error found. Duplicate keys and invalid keys are reported and their entries left out
/// of the tree; an empty file is a `Null` root.
pub(crate) fn parse(file: FileId, text: &str) -> (Option<Node>, Vec<ConfigError>) {
    let mut builder = Builder {
        file,
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        errors: Vec::new(),
        nodes: 0,
        documents: 0,
    };
    match builder.run(text) {
        Ok(()) => {
            let root = builder.root.unwrap_or_else(|| Node::new(NodeKind::Null, Span::point(file, 1, 1)));
            (Some(root), builder.errors)
        }
        Err(error) => {
            builder.errors.push(error);
            (None, builder.errors)
        }
    }
}

enum Frame {
    Seq {
        items: Vec<Node>,
        span: Span,
        anchor: usize,
    },
    Map {
        entries: Vec<(Node, Node)>,
        span: Span,
        anchor: usize,
        /// The key waiting for its value, or `None` when the next node is a key. The flag says
        /// whether the entry is to be dropped (duplicate or invalid key).
        key: Option<(Node, bool)>,
        seen: HashMap<String, Span>,
    },
}

struct Builder {
    file: FileId,
    stack: Vec<Frame>,
    anchors: HashMap<usize, (Node, usize)>,
    root: Option<Node>,
    errors: Vec<ConfigError>,
    nodes: usize,
    documents: usize,
}

impl Builder {
    fn run(&mut self, text: &str) -> Result<(), ConfigError> {
        for event in Parser::new_from_str(text) {
            let (event, span) = event.map_err(|e| {
                let at = self.point(*e.marker());
                ConfigError::new(format!("syntax error: {}", e.info())).with_span(at)
            })?;
            let start = self.point(span.start);
            match event {
                Event::DocumentStart(_) => {
                    self.documents += 1;
                    if self.documents > 1 {
                        return Err(ConfigError::new(
                            "a config file must hold a single YAML document, found a second one",
                        )
                        .with_span(start)
                        .with_help("remove the `---` separator or split the file in two"));
                    }
                }
                Event::Scalar(value, style, anchor, tag) => {
                    let span = self.span(span.start, span.end);
                    let node = self.scalar(&value, style, tag.as_deref(), span);
                    self.count(1)?;
                    self.finish(node, anchor, 1);
                }
                Event::Alias(id) => {
                    let Some(&(_, count)) = self.anchors.get(&id) else {
                        return Err(ConfigError::new("alias to an unknown anchor").with_span(start));
                    };
                    // Counted before copying, so an alias bomb fails before it allocates.
                    self.count(count)?;
                    if let Some((node, _)) = self.anchors.get(&id) {
                        let node = node.clone();
                        self.push(node);
                    }
                }
                Event::SequenceStart(anchor, tag) => {
                    self.check_collection_tag(tag.as_deref(), "seq", start);
                    self.stack.push(Frame::Seq { items: Vec::new(), span: start, anchor });
                }
                Event::MappingStart(anchor, tag) => {
                    self.check_collection_tag(tag.as_deref(), "map", start);
                    self.stack.push(Frame::Map {
                        entries: Vec::new(),
                        span: start,
                        anchor,
                        key: None,
                        seen: HashMap::new(),
                    });
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    let (node, anchor) = match self.stack.pop() {
                        Some(Frame::Seq { items, span, anchor }) => (Node::new(NodeKind::Seq(items), span), anchor),
                        Some(Frame::Map { entries, span, anchor, .. }) => {
                            (Node::new(NodeKind::Map(entries), span), anchor)
                        }
                        None => continue,
                    };
                    self.count(1)?;
                    let count = if anchor > 0 { count_nodes(&node) } else { 0 };
                    self.finish(node, anchor, count);
                }
                Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
            }
        }
        Ok(())
    }

    fn count(&mut self, n: usize) -> Result<(), ConfigError> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > MAX_NODES {
            return Err(ConfigError::new(format!(
                "document too large: more than {MAX_NODES} values after expanding aliases"
            )));
        }
        Ok(())
    }

    fn finish(&mut self, node: Node, anchor: usize, count: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, (node.clone(), count.max(1)));
        }
        self.push(node);
    }

    /// Places a finished node into its parent (or makes it the root).
    fn push(&mut self, node: Node) {
        let Some(mut frame) = self.stack.pop() else {
            self.root = Some(node);
            return;
        };
        match &mut frame {
            Frame::Seq { items, .. } => items.push(node),
            Frame::Map { entries, key, seen, .. } => match key.take() {
                Some((key, false)) => entries.push((key, node)),
                Some((_, true)) => {}
                None => *key = Some(self.accept_key(node, seen)),
            },
        }
        self.stack.push(frame);
    }

    /// Validates a key; the flag says whether its entry is to be dropped.
    fn accept_key(&mut self, node: Node, seen: &mut HashMap<String, Span>) -> (Node, bool) {
        if let Some(error) = key_error(&node) {
            self.errors.push(error);
            return (node, true);
        }
        let key = string_key(node);
        let text = key.as_str().unwrap_or_default().to_owned();
        if let Some(first) = seen.get(&text) {
            self.errors.push(
                ConfigError::new(format!("duplicate key `{text}` (first defined at line {})", first.line))
                    .with_span(key.span)
                    .with_help("each key may appear once in a mapping"),
            );
            return (key, true);
        }
        seen.insert(text, key.span);
        (key, false)
    }

    fn scalar(&mut self, value: &str, style: ScalarStyle, tag: Option<&Tag>, span: Span) -> Node {
        let quoted = || Node::new(NodeKind::Str(value.to_owned(), StrStyle::Quoted), span);
        let plain = |errors: &mut Vec<ConfigError>| match Node::from_plain(value, span) {
            Ok(node) => node,
            Err(message) => {
                errors.push(ConfigError::new(message).with_span(span));
                Node::new(NodeKind::Str(value.to_owned(), StrStyle::Plain), span)
            }
        };
        match tag {
            None if style == ScalarStyle::Plain => plain(&mut self.errors),
            None => quoted(),
            Some(tag) if tag.handle == CORE_TAG_HANDLE => match tag.suffix.as_str() {
                "str" => quoted(),
                suffix @ ("int" | "float" | "bool" | "null") => {
                    let kind = resolve_plain(value).ok();
                    let ok = matches!(
                        (suffix, &kind),
                        ("int", Some(NodeKind::Int(_)))
                            | ("float", Some(NodeKind::Float(_) | NodeKind::Int(_)))
                            | ("bool", Some(NodeKind::Bool(_)))
                            | ("null", Some(NodeKind::Null))
                    );
                    if !ok {
                        self.errors
                            .push(ConfigError::new(format!("`{value}` is not a valid `!!{suffix}`")).with_span(span));
                    }
                    let mut node = plain(&mut self.errors);
                    if let (true, "float", NodeKind::Int(i)) = (ok, suffix, &node.kind) {
                        node.kind = NodeKind::Float(*i as f64);
                    }
                    node
                }
                other => {
                    self.errors.push(unsupported_tag(&format!("!!{other}"), span));
                    plain(&mut self.errors)
                }
            },
            Some(tag) => {
                self.errors.push(unsupported_tag(&format!("{}{}", tag.handle, tag.suffix), span));
                if style == ScalarStyle::Plain { plain(&mut self.errors) } else { quoted() }
            }
        }
    }

    fn check_collection_tag(&mut self, tag: Option<&Tag>, expected: &str, span: Span) {
        let Some(tag) = tag else { return };
        if tag.handle != CORE_TAG_HANDLE || tag.suffix != expected {
            let shown = if tag.handle == CORE_TAG_HANDLE {
                format!("!!{}", tag.suffix)
            } else {
                format!("{}{}", tag.handle, tag.suffix)
            };
            self.errors.push(unsupported_tag(&shown, span));
        }
    }

    fn point(&self, marker: Marker) -> Span {
        let (line, col) = line_col(marker);
        Span::point(self.file, line, col)
    }

    fn span(&self, start: Marker, end: Marker) -> Span {
        let (line, col) = line_col(start);
        let (end_line, end_col) = line_col(end);
        if end_line == line && end_col > col {
            Span { file: self.file, line, col, end_line, end_col }
        } else {
            Span::point(self.file, line, col)
        }
    }
}

fn unsupported_tag(tag: &str, span: Span) -> ConfigError {
    ConfigError::new(format!("unsupported tag `{tag}`")).with_span(span).with_help(
        "only the core tags `!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!seq` and `!!map` are understood",
    )
}

fn line_col(marker: Marker) -> (u32, u32) {
    let line = u32::try_from(marker.line()).unwrap_or(u32::MAX);
    let col = u32::try_from(marker.col()).unwrap_or(u32::MAX - 1) + 1;
    (line, col)
}

/// Why a parsed key cannot be a mapping key, if it cannot.
fn key_error(node: &Node) -> Option<ConfigError> {
    match node.kind {
        NodeKind::Null | NodeKind::Seq(_) | NodeKind::Map(_) => Some(
            ConfigError::new(format!("mapping keys must be strings, found {}", node.kind_name())).with_span(node.span),
        ),
        _ => None,
    }
}

/// A scalar key as a string node, spelled as written (`200:` is the key `"200"`).
fn string_key(node: Node) -> Node {
    match node.kind {
        NodeKind::Str(..) => node,
        _ => Node::new(NodeKind::Str(node.scalar_text().unwrap_or_default(), StrStyle::Plain), node.span),
    }
}

fn count_nodes(node: &Node) -> usize {
    1 + match &node.kind {
        NodeKind::Seq(items) => items.iter().map(count_nodes).sum(),
        NodeKind::Map(entries) => entries.iter().map(|(k, v)| count_nodes(k) + count_nodes(v)).sum(),
        _ => 0,
    }
}
