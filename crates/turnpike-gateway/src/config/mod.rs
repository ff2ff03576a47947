//! Configuration: the document types, loading (YAML/JSON, file or directory, `${env:..}`/`${file:..}`), and
//! compiling a document into a [`Snapshot`](crate::snapshot::Snapshot), with every error reported at once.

mod compile;
pub mod document;
mod resilience;
pub mod schema;

use std::path::PathBuf;

use turnpike_config::{ConfigErrors, SourceMap};

pub use compile::compile;
pub use document::Document;

use crate::snapshot::Snapshot;
use crate::state::State;

/// Where the configuration comes from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A YAML or JSON file, or a directory of them merged in name order.
    File(PathBuf),
    /// Text held in memory (tests, the embedded demo). `base_dir` anchors relative `${file:..}` paths.
    Text {
        /// The name errors refer to.
        name: String,
        /// The YAML or JSON text.
        text: String,
        /// The directory relative `${file:..}` paths start from.
        base_dir: PathBuf,
    },
}

impl ConfigSource {
    /// The directory paths in the config (certificates, schemas, key files) are relative to.
    pub fn base_dir(&self) -> PathBuf {
        match self {
            ConfigSource::File(path) if path.is_dir() => path.clone(),
            ConfigSource::File(path) => path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), |p| p.to_path_buf()),
            ConfigSource::Text { base_dir, .. } => base_dir.clone(),
        }
    }

    /// An in-memory config named `name`, with `${file:..}` paths relative to the working directory.
    pub fn text(name: impl Into<String>, text: impl Into<String>) -> Self {
        ConfigSource::Text { name: name.into(), text: text.into(), base_dir: PathBuf::from(".") }
    }
}

/// Every error found in a configuration, with the sources to render them against.
#[derive(Debug)]
pub struct Report {
    /// The errors.
    pub errors: ConfigErrors,
    /// The files they point into.
    pub sources: SourceMap,
}

impl Report {
    /// The errors as plain data (file, line, column, path, message), for machines.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.errors.to_json(&self.sources)).unwrap_or_default()
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.errors.render(&self.sources))
    }
}

/// Reads the environment for `${env:..}` substitution.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Loads and parses `source` into a document, collecting every syntax and type error.
pub fn load(source: &ConfigSource) -> turnpike_config::Loaded<Document> {
    match source {
        ConfigSource::File(path) => turnpike_config::load_path(path, &env),
        ConfigSource::Text { name, text, base_dir } => turnpike_config::load_str(name, text, base_dir, &env),
    }
}

/// Loads, validates and compiles `source` against `state`. No side effects beyond creating state entries for the
/// snapshot (no sockets, no connections): `turnpike validate` runs exactly this.
pub fn load_and_compile(source: &ConfigSource, state: &State, generation: u64) -> Result<Snapshot, Report> {
    let loaded = load(source);
    let mut errors = loaded.errors;
    let base_dir = source.base_dir();
    let snapshot = match (&loaded.value, &loaded.root) {
        (Some(document), Some(root)) => match compile(document, root, &base_dir, state, generation) {
            Ok(snapshot) => Some(snapshot),
            Err(mut more) => {
                errors.append(&mut more);
                None
            }
        },
        _ => None,
    };
    match snapshot {
        Some(snapshot) if errors.is_empty() => Ok(snapshot),
        _ => Err(Report { errors: ConfigErrors(errors), sources: loaded.sources }),
    }
}
