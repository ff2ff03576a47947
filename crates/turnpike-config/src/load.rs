//! Loading: a file or a directory of files, merged, substituted and deserialized.

use std::path::Path as FsPath;

use serde::de::DeserializeOwned;

use crate::error::{ConfigError, ConfigErrors};
use crate::node::{Node, NodeKind, Path};
use crate::parse::parse;
use crate::recover::recover;
use crate::source::{SourceMap, Span};
use crate::subst::substitute;

/// The outcome of a load: whatever could be recovered, and every error.
///
/// `value` may be `Some` even when `errors` is not empty: it is the document with the failing
/// parts left out, so callers can run their semantic checks on the rest and report everything
/// at once. Treat a load as successful only when `errors` is empty.
#[derive(Debug)]
pub struct Loaded<T> {
    /// The (possibly partially) deserialized document; `None` if the root failed or the
    /// text could not be parsed.
    pub value: Option<T>,
    /// The substituted tree, for semantic checks ([`ConfigError::at`]); `None` if the text
    /// could not be parsed.
    pub root: Option<Node>,
    /// Every file read, for rendering errors.
    pub sources: SourceMap,
    /// Every error, sorted by file and position.
    pub errors: Vec<ConfigError>,
}

impl<T> Loaded<T> {
    /// Whether there is a value and no error.
    pub fn is_ok(&self) -> bool {
        self.value.is_some() && self.errors.is_empty()
    }

    /// The errors rendered as text; see [`ConfigErrors::render`].
    pub fn render_errors(&self) -> String {
        ConfigErrors(self.errors.clone()).render(&self.sources)
    }

    fn failed(sources: SourceMap, errors: Vec<ConfigError>) -> Self {
        Loaded { value: None, root: None, sources, errors: sorted(errors) }
    }
}

/// Loads a config from a file or a directory.
///
/// A directory contributes every `*.yaml`, `*.yml` and `*.json` file directly inside it (not
/// in subdirectories, not hidden files), in byte order of file name. Each file's top level must
/// be a mapping (an empty file contributes nothing); the files are merged key by key: sequences
/// are concatenated in file order, mappings are unioned (a key defined in two files is an
/// error at the second), and any other repeated key is an error at the second file.
///
/// Then `${env:..}` / `${file:..}` are substituted (`env` looks variables up; relative file
/// paths are resolved against the directory of the file containing them) and `T` is
/// deserialized with [`crate::from_node`]'s error recovery.
///
/// Errors: a path that cannot be read, an empty directory, syntax errors (the file's tree is
/// then unavailable, so `value` and `root` are `None`), and everything the later steps find.
pub fn load_path<T: DeserializeOwned>(path: &FsPath, env: &dyn Fn(&str) -> Option<String>) -> Loaded<T> {
    let mut sources = SourceMap::new();
    let metadata = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            let error = ConfigError::new(format!("cannot read `{}`: {e}", path.display()));
            return Loaded::failed(sources, vec![error]);
        }
    };
    if !metadata.is_dir() {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) => {
                let error = ConfigError::new(format!("cannot read `{}`: {e}", path.display()));
                return Loaded::failed(sources, vec![error]);
            }
        };
        let base_dir = path.parent().unwrap_or(FsPath::new("."));
        let file = sources.add(path.display().to_string(), text, base_dir);
        let (root, errors) = parse(file, sources.text(file).unwrap_or_default());
        return match root {
            Some(root) => finish(root, sources, errors, env),
            None => Loaded::failed(sources, errors),
        };
    }

    let files = match config_files(path) {
        Ok(files) => files,
        Err(error) => return Loaded::failed(sources, vec![error]),
    };
    let mut errors = Vec::new();
    let mut roots = Vec::new();
    let mut fatal = false;
    for file_path in files {
        match std::fs::read_to_string(&file_path) {
            Ok(text) => {
                let file = sources.add(file_path.display().to_string(), text, path);
                let (root, mut file_errors) = parse(file, sources.text(file).unwrap_or_default());
                errors.append(&mut file_errors);
                match root {
                    Some(root) => roots.push(root),
                    None => fatal = true,
                }
            }
            Err(e) => {
                errors.push(ConfigError::new(format!("cannot read `{}`: {e}", file_path.display())));
                fatal = true;
            }
        }
    }
    if fatal {
        return Loaded::failed(sources, errors);
    }
    let root = merge(roots, &sources, &mut errors);
    finish(root, sources, errors, env)
}

/// Loads a config from text. `name` is how the text is shown in errors (`config.yaml`,
/// `<stdin>`); relative `${file:..}` paths are resolved against `base_dir`. Otherwise as
/// [`load_path`] for a single file.
pub fn load_str<T: DeserializeOwned>(
    name: &str,
    text: &str,
    base_dir: &FsPath,
    env: &dyn Fn(&str) -> Option<String>,
) -> Loaded<T> {
    let mut sources = SourceMap::new();
    let file = sources.add(name, text, base_dir);
    let (root, errors) = parse(file, sources.text(file).unwrap_or_default());
    match root {
        Some(root) => finish(root, sources, errors, env),
        None => Loaded::failed(sources, errors),
    }
}

fn finish<T: DeserializeOwned>(
    mut root: Node,
    sources: SourceMap,
    mut errors: Vec<ConfigError>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Loaded<T> {
    let (mut subst_errors, removed) = substitute(&mut root, &sources, env);
    errors.append(&mut subst_errors);
    let (value, mut de_errors) = recover::<T>(&root, removed);
    errors.append(&mut de_errors);
    Loaded { value, root: Some(root), sources, errors: sorted(errors) }
}

fn sorted(mut errors: Vec<ConfigError>) -> Vec<ConfigError> {
    errors.sort_by_key(|e| (e.span.is_none(), e.span.map(|s| (s.file, s.line, s.col))));
    errors
}

/// The config files directly in `dir`, in byte order of name.
fn config_files(dir: &FsPath) -> Result<Vec<std::path::PathBuf>, ConfigError> {
    let cannot_read = |e: std::io::Error| ConfigError::new(format!("cannot read directory `{}`: {e}", dir.display()));
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(cannot_read)? {
        let entry = entry.map_err(cannot_read)?;
        let name = entry.file_name();
        let Some(name_str) = name.to_str() else {
            continue;
        };
        let is_config = [".yaml", ".yml", ".json"].iter().any(|ext| name_str.to_ascii_lowercase().ends_with(ext));
        if !is_config || name_str.starts_with('.') {
            continue;
        }
        // Follows symlinks, so a Kubernetes ConfigMap mount (files linked into `..data/`) works.
        if std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        files.push((name, entry.path()));
    }
    if files.is_empty() {
        return Err(ConfigError::new(format!(
            "no `*.yaml`, `*.yml` or `*.json` files in directory `{}`",
            dir.display()
        )));
    }
    files.sort_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

/// Merges the files of a directory into one mapping (rules in [`load_path`]).
fn merge(roots: Vec<Node>, sources: &SourceMap, errors: &mut Vec<ConfigError>) -> Node {
    let span = roots.first().map(|r| r.span).unwrap_or_default();
    let at = |span: Span| format!("{}:{}:{}", sources.name(span.file), span.line, span.col);
    let mut merged: Vec<(Node, Node)> = Vec::new();
    for root in roots {
        let entries = match root.kind {
            NodeKind::Map(entries) => entries,
            NodeKind::Null => continue,
            _ => {
                errors.push(
                    ConfigError::new(format!(
                        "the top level of `{}` must be a mapping, found {}",
                        sources.name(root.span.file),
                        root.kind_name()
                    ))
                    .with_span(root.span)
                    .with_help("files in a config directory are merged key by key"),
                );
                continue;
            }
        };
        for (key, value) in entries {
            let name = key.as_str().unwrap_or_default().to_owned();
            let Some((first_key, existing)) = merged.iter_mut().find(|(k, _)| k.as_str() == Some(name.as_str())) else {
                merged.push((key, value));
                continue;
            };
            let (existing_name, new_name) = (existing.kind_name(), value.kind_name());
            let both_collections = matches!(
                (&existing.kind, &value.kind),
                (NodeKind::Seq(_) | NodeKind::Map(_), NodeKind::Seq(_) | NodeKind::Map(_))
            );
            match (&mut existing.kind, value.kind) {
                (NodeKind::Seq(items), NodeKind::Seq(more)) => items.extend(more),
                (NodeKind::Map(entries), NodeKind::Map(more)) => {
                    for (k, v) in more {
                        let sub = k.as_str().unwrap_or_default().to_owned();
                        if let Some((first, _)) = entries.iter().find(|(e, _)| e.as_str() == Some(sub.as_str())) {
                            let path = Path::root().key(name.clone()).key(sub);
                            errors.push(
                                ConfigError::new(format!("`{path}` is already defined at {}", at(first.span)))
                                    .with_span(k.span)
                                    .with_path(path.to_string()),
                            );
                        } else {
                            entries.push((k, v));
                        }
                    }
                }
                _ => {
                    let how =
                        if both_collections { format!(" as {existing_name} (here {new_name})") } else { String::new() };
                    errors.push(
                        ConfigError::new(format!(
                            "`{}` is already defined at {}{how}",
                            Path::root().key(name.clone()),
                            at(first_key.span)
                        ))
                        .with_span(key.span)
                        .with_path(Path::root().key(name.clone()).to_string())
                        .with_help(
                            "across files, sequences are concatenated and mappings merged; other values may be defined once",
                        ),
                    );
                }
            }
        }
    }
    Node::new(NodeKind::Map(merged), span)
}
