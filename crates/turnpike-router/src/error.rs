//! Errors reported by [`crate::Router::build`]: every problem of every route, at once.

use std::fmt;

/// One problem with one route. [`crate::Router::build`] returns all of them, ordered by route
/// index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildError {
    /// Index of the offending route in the input list.
    pub route: usize,
    /// Which field: `"path"`, `"hosts[1]"`, `"methods"`, `"headers[0]"`, `"query[2]"`; empty when
    /// the error is about the route as a whole (duplicates, unreachable routes).
    pub field: String,
    /// What kind of problem.
    pub kind: BuildErrorKind,
    /// A short lowercase explanation, suitable for a config error message.
    pub message: String,
}

/// The kind of a [`BuildError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildErrorKind {
    /// The field is malformed or can never match.
    Invalid,
    /// The route is identical to an earlier one (same hosts, path matcher, methods, header and
    /// query rules).
    Duplicate {
        /// Index of the earlier identical route.
        of: usize,
    },
    /// The route can never be selected: in every host group it belongs to, a route ranked before it
    /// with the same path matcher and rules accepts all of its methods.
    Unreachable {
        /// Index of a route that shadows it.
        shadowed_by: usize,
    },
}

impl BuildError {
    pub(crate) fn invalid(route: usize, field: impl Into<String>, message: impl Into<String>) -> Self {
        BuildError { route, field: field.into(), kind: BuildErrorKind::Invalid, message: message.into() }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "route {}: {}", self.route, self.message)
        } else {
            write!(f, "route {}: {}: {}", self.route, self.field, self.message)
        }
    }
}

impl std::error::Error for BuildError {}
