//! Error collection: deserialize, drop what failed, try again, until every error is found.

use serde::de::DeserializeOwned;

use crate::de::{DeError, ErrKind, NodeDe, Removed};
use crate::error::{ConfigError, MAX_ERRORS, did_you_mean};
use crate::node::{Node, NodeKind};

/// Deserializes `T` from `root`, collecting every error rather than stopping at the first.
///
/// Each failure is recorded with the path and span of the node it is about (the key of an
/// unknown field, the mapping that lacks a missing field, the value of a wrong type), then
/// that node is dropped from a working view of the tree and deserialization runs again:
/// an unknown key loses its entry; a bad value loses its mapping entry or sequence element;
/// a mapping missing a field is dropped from its parent. Failures that only follow from an
/// earlier drop (a required field whose bad value was dropped) are not reported. Sequence
/// elements keep their original indices in paths and [`crate::Spanned`].
///
/// Returns the partially recovered value, or `None` when the root itself fails or after
/// [`MAX_ERRORS`] errors. Never panics.
pub fn from_node<T: DeserializeOwned>(root: &Node) -> (Option<T>, Vec<ConfigError>) {
    recover(root, Removed::new())
}

/// [`from_node`] with some nodes already dropped (those whose substitution failed).
pub(crate) fn recover<T: DeserializeOwned>(root: &Node, mut removed: Removed) -> (Option<T>, Vec<ConfigError>) {
    let mut errors = Vec::new();
    // Every round drops one more node, so the tree's size bounds the rounds; the limit is a
    // second guard.
    for _ in 0..100_000 {
        let error = match T::deserialize(NodeDe::root(root, &removed)) {
            Ok(value) => return (Some(value), errors),
            Err(error) => error,
        };
        let Some(loc) = error.loc.clone() else {
            errors.push(to_config_error(root, &error));
            return (None, errors);
        };
        let report = match &error.kind {
            ErrKind::MissingField(field) => !lost_to_removal(root, &loc.idx, &removed, field),
            ErrKind::UnknownField { .. } | ErrKind::UnknownVariant { .. } => true,
            ErrKind::Other => !loc.consequence,
        };
        if report {
            errors.push(to_config_error(root, &error));
            if errors.len() >= MAX_ERRORS {
                errors.push(ConfigError::new(format!("too many errors, stopped after {MAX_ERRORS}")));
                return (None, errors);
            }
        }
        if loc.idx.is_empty() || !removed.insert(loc.idx) {
            return (None, errors);
        }
    }
    (None, errors)
}

/// Whether the mapping at `idx` had an entry for `field` that an earlier round dropped.
fn lost_to_removal(root: &Node, idx: &[u32], removed: &Removed, field: &str) -> bool {
    let Some(NodeKind::Map(entries)) = node_at(root, idx).map(|n| &n.kind) else {
        return false;
    };
    entries.iter().enumerate().any(|(i, (key, _))| {
        key.as_str() == Some(field) && {
            let mut child = idx.to_vec();
            child.push(u32::try_from(i).unwrap_or(u32::MAX));
            removed.contains(&child)
        }
    })
}

fn node_at<'a>(root: &'a Node, idx: &[u32]) -> Option<&'a Node> {
    idx.iter().try_fold(root, |node, &i| {
        let i = usize::try_from(i).ok()?;
        match &node.kind {
            NodeKind::Seq(items) => items.get(i),
            NodeKind::Map(entries) => entries.get(i).map(|(_, v)| v),
            _ => None,
        }
    })
}

fn to_config_error(root: &Node, error: &DeError) -> ConfigError {
    let help = match &error.kind {
        ErrKind::UnknownField { field, expected } => did_you_mean(field, expected),
        ErrKind::UnknownVariant { variant, expected } => did_you_mean(variant, expected),
        ErrKind::MissingField(_) | ErrKind::Other => None,
    }
    .map(|name| format!("did you mean `{name}`?"));
    match &error.loc {
        Some(loc) => ConfigError {
            message: error.message.clone(),
            path: root.display_path(&loc.path),
            span: Some(loc.span),
            help,
        },
        None => ConfigError { message: error.message.clone(), path: String::new(), span: Some(root.span), help },
    }
}
