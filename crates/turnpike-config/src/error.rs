//! Config errors: what went wrong, where (file:line:col and field path), and how to show it.

use std::fmt;

use serde::Serialize;

use crate::node::{Node, Path, redact};
use crate::source::{FileId, SourceMap, Span};

/// Most errors one load reports; past this the loader stops and says so.
pub const MAX_ERRORS: usize = 200;

/// One problem in a config, with where it is.
///
/// `message` never contains a value that came from `${env:..}` or `${file:..}` substitution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Lowercase description: ``unknown field `upstrem`, expected one of `id`, `upstream` ``.
    pub message: String,
    /// The field path, rendered (`routes[orders].match.path`); empty for the document itself or
    /// for errors not tied to a field (syntax errors, unreadable files).
    pub path: String,
    /// Where in the source, when known.
    pub span: Option<Span>,
    /// A hint: a likely intended name, or how to fix it.
    pub help: Option<String>,
}

impl ConfigError {
    /// An error with only a message.
    pub fn new(message: impl Into<String>) -> Self {
        ConfigError { message: message.into(), path: String::new(), span: None, help: None }
    }

    /// An error about the node at `path` below `root`: the span is that node's (or, if the path
    /// does not exist, the nearest existing ancestor's), the path is rendered with
    /// [`Node::display_path`]. If the node holds substituted values they are replaced with
    /// `<redacted>` in `message`.
    pub fn at(root: &Node, path: &Path, message: impl Into<String>) -> Self {
        let node = root.lookup_nearest(path);
        let mut secrets = Vec::new();
        node.collect_secrets(&mut secrets);
        ConfigError {
            message: redact(&message.into(), &secrets),
            path: root.display_path(path),
            span: Some(node.span),
            help: None,
        }
    }

    /// Sets the span.
    #[must_use]
    pub fn with_span(mut self, span: Span) -> Self {
        self.span = Some(span);
        self
    }

    /// Sets the rendered path.
    #[must_use]
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = path.into();
        self
    }

    /// Sets the help line.
    #[must_use]
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// `file:line:col` of the error, if it has a span.
    pub fn location(&self, sources: &SourceMap) -> Option<String> {
        self.span.map(|s| format!("{}:{}:{}", sources.name(s.file), s.line, s.col))
    }

    fn sort_key(&self) -> (bool, Option<(FileId, u32, u32)>) {
        (self.span.is_none(), self.span.map(|s| (s.file, s.line, s.col)))
    }

    /// Renders this error as one block (no trailing blank line); see [`ConfigErrors::render`].
    pub fn render(&self, sources: &SourceMap) -> String {
        let mut out = format!("error: {}\n", self.message);
        // The quoted line never shows a secret written literally in the file (`secret: ...` next to an error).
        let line_text = self.span.and_then(|s| sources.line(s.file, s.line)).map(mask_secrets);
        let gutter = match (self.span, &line_text) {
            (Some(span), Some(_)) => span.line.to_string().len(),
            _ => 1,
        };
        let pad = " ".repeat(gutter);
        if let Some(span) = self.span {
            out.push_str(&format!("{pad}--> {}:{}:{}\n", sources.name(span.file), span.line, span.col));
            if let Some(text) = &line_text {
                let indent: String = text
                    .chars()
                    .take(usize::try_from(span.col.saturating_sub(1)).unwrap_or(0))
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                let carets = "^".repeat(usize::try_from(span.width()).unwrap_or(1));
                out.push_str(&format!("{pad} |\n"));
                out.push_str(&format!("{} | {}\n", span.line, text).replace(" | \n", " |\n"));
                out.push_str(&format!("{pad} | {indent}{carets}\n"));
            }
        }
        if !self.path.is_empty() {
            out.push_str(&format!("{pad} = at: {}\n", self.path));
        }
        if let Some(help) = &self.help {
            out.push_str(&format!("{pad} = help: {help}\n"));
        }
        out
    }
}

/// Field names whose values are secrets: never quoted in an error snippet.
const SECRET_FIELDS: &[&str] =
    &["secret", "client_secret", "key", "key_pem", "password", "token", "api_key", "private_key", "authorization"];

fn is_secret_field(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_FIELDS.contains(&name.as_str()) || name.ends_with("_secret") || name.ends_with("password")
}

/// `line` with the value of every secret field (`secret: abc`, `{ key: "abc", ... }`) replaced by `*`s of the same
/// length, so carets under the line still point where they did.
pub fn mask_secrets(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = chars.clone();
    let mut i = 0;
    while i < chars.len() {
        let starts_key = i == 0 || matches!(chars[i - 1], ' ' | '\t' | '{' | ',' | '-' | '"' | '\'');
        if !starts_key || !(chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '-') {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect();
        let mut j = i;
        if j < chars.len() && (chars[j] == '"' || chars[j] == '\'') {
            j += 1; // the closing quote of a quoted key
        }
        while j < chars.len() && chars[j] == ' ' {
            j += 1;
        }
        if j >= chars.len() || chars[j] != ':' || !is_secret_field(&name) {
            continue;
        }
        j += 1;
        while j < chars.len() && (chars[j] == ' ' || chars[j] == '\t') {
            j += 1;
        }
        let value_start = j;
        let end = match chars.get(j) {
            Some(&q @ ('"' | '\'')) => {
                let mut k = j + 1;
                while k < chars.len() && chars[k] != q {
                    k += if chars[k] == '\\' { 2 } else { 1 };
                }
                (k + 1).min(chars.len())
            }
            _ => {
                let in_flow = chars[..start].contains(&'{');
                let mut k = j;
                while k < chars.len()
                    && !(in_flow && matches!(chars[k], ',' | '}'))
                    && !(chars[k] == '#' && k > 0 && chars[k - 1] == ' ')
                {
                    k += 1;
                }
                while k > value_start && chars[k - 1] == ' ' {
                    k -= 1;
                }
                k
            }
        };
        for c in &mut out[value_start..end] {
            *c = '*';
        }
        i = end;
    }
    out.into_iter().collect()
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if !self.path.is_empty() {
            write!(f, " (at {})", self.path)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Every error of one load.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

/// One error as plain data, for JSON output (`turnpike validate --format json`, the admin API).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ErrorReport {
    /// The message.
    pub message: String,
    /// The rendered field path (may be empty).
    pub path: String,
    /// Display name of the file, when the error has a position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// 1-based line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// 1-based column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub col: Option<u32>,
    /// Line of the end of the span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_line: Option<u32>,
    /// Column just past the end of the span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_col: Option<u32>,
    /// The help line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl ConfigErrors {
    /// Whether there is no error.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The errors sorted by file, then position; errors without a position last, in their
    /// original order.
    pub fn sorted(&self) -> Vec<&ConfigError> {
        let mut errors: Vec<&ConfigError> = self.0.iter().collect();
        errors.sort_by_key(|e| e.sort_key());
        errors
    }

    /// Renders every error as plain text (no color), sorted, one block per error with a blank
    /// line between, and a final `N errors` line:
    ///
    /// ```text
    /// error: unknown field `upstrem`, expected one of `id`, `match`, `upstream`
    ///   --> config.yaml:12:5
    ///    |
    /// 12 |     upstrem: orders
    ///    |     ^^^^^^^
    ///    = at: routes[orders].upstrem
    ///    = help: did you mean `upstream`?
    ///
    /// 1 error
    /// ```
    pub fn render(&self, sources: &SourceMap) -> String {
        let mut out = String::new();
        for error in self.sorted() {
            out.push_str(&error.render(sources));
            out.push('\n');
        }
        let n = self.0.len();
        out.push_str(&format!("{n} error{}\n", if n == 1 { "" } else { "s" }));
        out
    }

    /// The errors as plain structs (sorted like [`ConfigErrors::render`]), ready to serialize.
    pub fn to_json(&self, sources: &SourceMap) -> Vec<ErrorReport> {
        self.sorted()
            .into_iter()
            .map(|e| ErrorReport {
                message: e.message.clone(),
                path: e.path.clone(),
                file: e.span.map(|s| sources.name(s.file).to_owned()),
                line: e.span.map(|s| s.line),
                col: e.span.map(|s| s.col),
                end_line: e.span.map(|s| s.end_line),
                end_col: e.span.map(|s| s.end_col),
                help: e.help.clone(),
            })
            .collect()
    }
}

impl From<Vec<ConfigError>> for ConfigErrors {
    fn from(errors: Vec<ConfigError>) -> Self {
        ConfigErrors(errors)
    }
}

impl fmt::Display for ConfigErrors {
    /// One line per error, without source positions (use [`ConfigErrors::render`] for those).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The candidate closest to `given`: within edit distance 2, or one a prefix of the other
/// (at least 3 characters long). Ties go to the earlier candidate.
pub fn did_you_mean<'a>(given: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let given_lower = given.to_lowercase();
    let mut best: Option<(usize, &'a str)> = None;
    for &candidate in candidates {
        let lower = candidate.to_lowercase();
        let distance = edit_distance(&given_lower, &lower);
        let score = if distance <= 2 && distance < given.chars().count().max(1) {
            distance
        } else if given_lower.len().min(lower.len()) >= 3
            && (lower.starts_with(&given_lower) || given_lower.starts_with(&lower))
        {
            3
        } else {
            continue;
        };
        if best.is_none_or(|(s, _)| score < s) {
            best = Some((score, candidate));
        }
    }
    best.map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod mask_tests {
    use super::mask_secrets;

    #[test]
    fn masks_secret_values_in_block_and_flow_style() {
        assert_eq!(mask_secrets("      secret: short-literal"), "      secret: *************");
        assert_eq!(mask_secrets("  client_secret: \"a b\" # note"), "  client_secret: ***** # note");
        assert_eq!(
            mask_secrets("  - { id: acme, keys: [{ key: abc123 }], plan: gold }"),
            "  - { id: acme, keys: [{ key: ****** }], plan: gold }"
        );
        assert_eq!(mask_secrets("jwt: { secret: 'x,y', issuer: a }"), "jwt: { secret: *****, issuer: a }");
        assert_eq!(mask_secrets("  keys: [a]"), "  keys: [a]");
        assert_eq!(mask_secrets("  monkey: banana"), "  monkey: banana");
        assert_eq!(mask_secrets("  db_password: hunter2"), "  db_password: *******");
    }
}
