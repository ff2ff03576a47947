//! `${env:NAME}` and `${file:PATH}` substitution in string values, after parsing.
//!
//! Substitution runs on the parsed tree, so a value can never inject YAML structure. Keys are
//! never substituted. A plain (unquoted) scalar is resolved again by the core schema after
//! substitution (`port: ${env:PORT}` becomes an integer); a quoted one stays a string.

use std::collections::HashSet;
use std::path::Path as FsPath;

use crate::error::ConfigError;
use crate::node::{Node, NodeKind, Path, StrStyle, redact, resolve_plain};
use crate::source::SourceMap;

/// Substitutes every string value below `root`. Returns the errors (each at the scalar that
/// failed) and the index paths of those scalars, to be treated as removed when deserializing.
pub(crate) fn substitute(
    root: &mut Node,
    sources: &SourceMap,
    env: &dyn Fn(&str) -> Option<String>,
) -> (Vec<ConfigError>, HashSet<Vec<u32>>) {
    let mut walker = Walker { sources, env, failures: Vec::new() };
    walker.walk(root, &Path::root(), &mut Vec::new());
    let mut removed = HashSet::new();
    let mut errors = Vec::new();
    for failure in walker.failures {
        let mut error = ConfigError::at(root, &failure.path, failure.message);
        error.help = failure.help;
        errors.push(error);
        removed.insert(failure.idx);
    }
    (errors, removed)
}

struct Failure {
    path: Path,
    idx: Vec<u32>,
    message: String,
    help: Option<String>,
}

struct Walker<'a> {
    sources: &'a SourceMap,
    env: &'a dyn Fn(&str) -> Option<String>,
    failures: Vec<Failure>,
}

impl Walker<'_> {
    fn walk(&mut self, node: &mut Node, path: &Path, idx: &mut Vec<u32>) {
        match &mut node.kind {
            NodeKind::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let child = path.clone().index(i);
                    idx.push(u32::try_from(i).unwrap_or(u32::MAX));
                    self.walk(item, &child, idx);
                    idx.pop();
                }
            }
            NodeKind::Map(entries) => {
                for (i, (key, value)) in entries.iter_mut().enumerate() {
                    let child = path.clone().key(key.as_str().unwrap_or_default());
                    idx.push(u32::try_from(i).unwrap_or(u32::MAX));
                    self.walk(value, &child, idx);
                    idx.pop();
                }
            }
            NodeKind::Str(text, style) => {
                let (text, style) = (text.clone(), *style);
                self.scalar(node, text, style, path, idx);
            }
            NodeKind::Null | NodeKind::Bool(_) | NodeKind::Int(_) | NodeKind::Float(_) => {}
        }
    }

    fn scalar(&mut self, node: &mut Node, text: String, style: StrStyle, path: &Path, idx: &[u32]) {
        if !text.contains("${") {
            return;
        }
        let base_dir = self.sources.base_dir(node.span.file);
        let Expanded { text: new, secrets } = match expand(&text, base_dir, self.env) {
            Ok(Some(expanded)) => expanded,
            Ok(None) => return,
            Err((message, help)) => {
                // The text is still the source text, so the message may quote it.
                self.fail(path, idx, message, help);
                return;
            }
        };
        if secrets.is_empty() {
            // Only `$${` escapes: no value came from outside.
            node.kind = NodeKind::Str(new, style);
            return;
        }
        node.substituted = true;
        node.secrets = secrets;
        if style == StrStyle::Quoted {
            node.kind = NodeKind::Str(new, style);
            return;
        }
        match resolve_plain(&new) {
            Ok(kind) => {
                if !matches!(kind, NodeKind::Str(..) | NodeKind::Null) {
                    node.raw = Some(new);
                }
                node.kind = kind;
            }
            Err(message) => {
                let mut secrets = node.secrets.clone();
                secrets.push(new.clone());
                node.kind = NodeKind::Str(new, style);
                self.fail(path, idx, redact(&message, &secrets), None);
            }
        }
    }

    fn fail(&mut self, path: &Path, idx: &[u32], message: String, help: Option<String>) {
        self.failures.push(Failure { path: path.clone(), idx: idx.to_vec(), message, help });
    }
}

struct Expanded {
    text: String,
    /// The values that were inserted, one per `${..}`.
    secrets: Vec<String>,
}

/// Expands every `${..}` in `text`; `None` if there is nothing to expand. Error messages hold
/// only source text (names, paths), never a looked-up value.
fn expand(
    text: &str,
    base_dir: Option<&FsPath>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Expanded>, (String, Option<String>)> {
    let mut out = String::with_capacity(text.len());
    let mut secrets = Vec::new();
    let mut rest = text;
    let mut changed = false;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            changed = true;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err((
                    format!("unterminated `${{` in `{}`", truncate(tail)),
                    Some("close it with `}`, or write `$${` for a literal `${`".to_owned()),
                ));
            };
            let expr = &after[..end];
            let value = lookup(expr, base_dir, env)?;
            out.push_str(&value);
            secrets.push(value);
            rest = &after[end + 1..];
            changed = true;
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(changed.then_some(Expanded { text: out, secrets }))
}

fn truncate(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

/// Resolves one `${..}` expression (without the braces).
fn lookup(
    expr: &str,
    base_dir: Option<&FsPath>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, (String, Option<String>)> {
    let (body, default) = match expr.split_once(":-") {
        Some((body, default)) => (body, Some(default)),
        None => (expr, None),
    };
    if let Some(name) = body.strip_prefix("env:") {
        if name.is_empty() {
            return Err(("empty variable name in `${env:}`".to_owned(), None));
        }
        match (env(name), default) {
            // Like the shell's `:-`, an empty variable takes the default too.
            (Some(value), Some(default)) if value.is_empty() => Ok(default.to_owned()),
            (Some(value), _) => Ok(value),
            (None, Some(default)) => Ok(default.to_owned()),
            (None, None) => Err((
                format!("environment variable `{name}` is not set"),
                Some(format!("set it, or give a default: `${{env:{name}:-default}}`")),
            )),
        }
    } else if let Some(file) = body.strip_prefix("file:") {
        if file.is_empty() {
            return Err(("empty path in `${file:}`".to_owned(), None));
        }
        let full = match base_dir {
            Some(dir) => dir.join(file),
            None => FsPath::new(file).to_path_buf(),
        };
        match std::fs::read_to_string(&full) {
            Ok(contents) => Ok(contents.trim_end_matches(['\n', '\r']).to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && default.is_some() => {
                Ok(default.unwrap_or_default().to_owned())
            }
            Err(e) => Err((
                format!("cannot read `${{file:{file}}}` ({}): {e}", full.display()),
                (e.kind() == std::io::ErrorKind::NotFound)
                    .then(|| "relative paths are resolved against the directory of the config file".to_owned()),
            )),
        }
    } else {
        Err((
            format!("unknown substitution `${{{expr}}}`"),
            Some(
                "use `${env:NAME}` or `${file:PATH}` (with `:-default` if wanted), or `$${` for a literal `${`"
                    .to_owned(),
            ),
        ))
    }
}
