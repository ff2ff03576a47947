//! Captured path parameters: names borrowed from the router, values borrowed from the request path.

use std::fmt;

/// How many params are stored inline; a route capturing more spills the rest into a `Vec`.
pub const INLINE_PARAMS: usize = 8;

/// Marks a param whose (optional regex) group did not participate in the match.
const ABSENT: (u32, u32) = (u32::MAX, u32::MAX);

/// The params captured by a match: `{name}` and `{*name}` of a template, named groups of a regex.
///
/// Stores byte ranges into the request path and the names as the route declared them. Up to
/// [`INLINE_PARAMS`] params are held inline, so exact, prefix and template matches do not touch the
/// heap.
#[derive(Clone)]
pub struct Params<'r, 'q> {
    names: &'r [Box<str>],
    path: &'q str,
    inline: [(u32, u32); INLINE_PARAMS],
    spill: Vec<(u32, u32)>,
}

impl<'r, 'q> Params<'r, 'q> {
    /// No params (exact and prefix matches).
    #[inline]
    pub fn empty(path: &'q str) -> Self {
        Params { names: &[], path, inline: [ABSENT; INLINE_PARAMS], spill: Vec::new() }
    }

    /// Room for one value per name, all absent until [`Params::set`].
    #[inline]
    pub(crate) fn with_names(names: &'r [Box<str>], path: &'q str) -> Self {
        let spill = if names.len() > INLINE_PARAMS { vec![ABSENT; names.len() - INLINE_PARAMS] } else { Vec::new() };
        Params { names, path, inline: [ABSENT; INLINE_PARAMS], spill }
    }

    /// Sets the value of the `i`-th name to `path[start..end]` (the router only selects paths
    /// shorter than 4 GiB).
    #[inline]
    pub(crate) fn set(&mut self, i: usize, start: usize, end: usize) {
        let (start, end) = (start as u32, end as u32);
        if let Some(slot) = self.inline.get_mut(i) {
            *slot = (start, end);
        } else if let Some(slot) = self.spill.get_mut(i - INLINE_PARAMS) {
            *slot = (start, end);
        }
    }

    fn value(&self, i: usize) -> Option<&'q str> {
        let (start, end) = if i < INLINE_PARAMS { self.inline[i] } else { *self.spill.get(i - INLINE_PARAMS)? };
        if start == u32::MAX { None } else { self.path.get(start as usize..end as usize) }
    }

    /// The value captured for `name`, or `None` if the route has no such param (or its optional
    /// regex group did not participate). Values are raw slices of the normalized path (still
    /// percent-encoded where it is).
    pub fn get(&self, name: &str) -> Option<&'q str> {
        let i = self.names.iter().position(|n| &**n == name)?;
        self.value(i)
    }

    /// The number of params the route captures (including absent optional regex groups).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when the route captures no params.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// `(name, value)` pairs in declaration order, skipping absent optional regex groups.
    pub fn iter(&self) -> impl Iterator<Item = (&'r str, &'q str)> + '_ {
        self.names.iter().enumerate().filter_map(|(i, n)| Some((&**n, self.value(i)?)))
    }
}

impl fmt::Debug for Params<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}
