//! Config loading machinery: YAML/JSON with source positions, substitution and error collection.
//!
//! The pipeline ([`load_path`], [`load_str`]):
//!
//! 1. **parse** YAML (JSON is read by the same parser) into a [`Node`] tree where every node
//!    knows its [`Span`]; plain scalars follow the YAML 1.2 core schema, anchors and aliases
//!    are resolved, duplicate keys and multiple documents are errors;
//! 2. **merge** the files of a config directory key by key;
//! 3. **substitute** `${env:NAME}`, `${env:NAME:-default}`, `${file:PATH}`,
//!    `${file:PATH:-default}` in string values (`$${` is a literal `${`); substituted values
//!    are never shown in messages;
//! 4. **deserialize** a serde type from the tree with [`from_node`], which collects every error
//!    (dropping what failed and trying again) instead of stopping at the first.
//!
//! Errors ([`ConfigError`]) carry the field path (`routes[orders].match.path`), the span and an
//! optional help line, and render with a source snippet ([`ConfigErrors::render`]).
//!
//! Types that want positions for later semantic checks wrap fields in [`Spanned`]. Durations
//! and sizes are written with units ([`Duration`], [`ByteSize`]).
//!
//! Serde's internally tagged enums (`#[serde(tag = "..")]`), untagged enums and `flatten`
//! buffer their input without positions: errors inside them point at the enclosing mapping,
//! a plain number there cannot be read as a string, and `Spanned` does not work there. Prefer
//! externally tagged enums (`kind: {...}` single-key mappings) or adjacently tagged ones with
//! the tag first.

#![warn(missing_docs)]

mod de;
mod error;
mod load;
mod node;
mod parse;
mod recover;
mod source;
mod spanned;
mod subst;
mod units;

#[cfg(test)]
mod tests;

pub use error::{ConfigError, ConfigErrors, ErrorReport, MAX_ERRORS, did_you_mean};
pub use load::{Loaded, load_path, load_str};
pub use node::{Node, NodeKind, Path, PathSeg, StrStyle};
pub use recover::from_node;
pub use source::{FileId, SourceMap, Span};
pub use spanned::Spanned;
pub use units::{ByteSize, Duration, UnitParseError};

/// Parses YAML or JSON text into a tree without substituting or deserializing, adding the
/// text to `sources`. Returns `None` for the tree after a syntax error or a second document;
/// other errors (duplicate keys, invalid keys or tags) leave the offending entry out.
pub fn parse_str(
    sources: &mut SourceMap,
    name: &str,
    text: &str,
    base_dir: &std::path::Path,
) -> (Option<Node>, Vec<ConfigError>) {
    let file = sources.add(name, text, base_dir);
    parse::parse(file, sources.text(file).unwrap_or_default())
}
