//! Method sets: a bitmask for the standard methods plus a list for extension methods.

use http::Method;

/// The standard methods in alphabetical order; a method's bit is its index here.
const STANDARD: [Method; 10] = [
    Method::CONNECT,
    Method::DELETE,
    Method::GET,
    Method::HEAD,
    Method::OPTIONS,
    Method::PATCH,
    Method::POST,
    Method::PUT,
    Method::QUERY,
    Method::TRACE,
];
const GET: u16 = 1 << 2;
const HEAD: u16 = 1 << 3;

/// The bit of a standard method, 0 for an extension method. Most frequent methods are tested first.
#[inline]
pub(crate) fn bit(m: &Method) -> u16 {
    if *m == Method::GET {
        return GET;
    }
    if *m == Method::POST {
        return 1 << 6;
    }
    STANDARD.iter().position(|s| s == m).map_or(0, |i| 1 << i)
}

/// The methods a route accepts. `GET` implies `HEAD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MethodSet {
    any: bool,
    bits: u16,
    /// Extension methods, sorted and deduplicated.
    ext: Vec<Method>,
}

impl MethodSet {
    /// Builds the set; a method listed twice is an error naming it.
    pub(crate) fn from_list(list: &[Method]) -> Result<MethodSet, String> {
        let mut set = MethodSet { any: list.is_empty(), bits: 0, ext: Vec::new() };
        for (i, m) in list.iter().enumerate() {
            if list[..i].contains(m) {
                return Err(format!("method `{m}` is listed twice"));
            }
            match bit(m) {
                0 => set.ext.push(m.clone()),
                b => set.bits |= b,
            }
        }
        if set.bits & GET != 0 {
            set.bits |= HEAD;
        }
        set.ext.sort();
        Ok(set)
    }

    /// True when the route has no method list.
    #[inline]
    pub(crate) fn is_any(&self) -> bool {
        self.any
    }

    /// Whether `m` (whose [`bit`] is `b`) is accepted.
    #[inline]
    pub(crate) fn contains(&self, m: &Method, b: u16) -> bool {
        self.any || (b != 0 && self.bits & b != 0) || (b == 0 && self.ext.iter().any(|e| e == m))
    }

    /// Whether every request `other` accepts, `self` accepts too.
    pub(crate) fn includes(&self, other: &MethodSet) -> bool {
        self.any || (!other.any && other.bits & !self.bits == 0 && other.ext.iter().all(|m| self.ext.contains(m)))
    }
}

/// The union of the methods of routes that matched everything but the method: the `Allow` of a 405.
#[derive(Default)]
pub(crate) struct Allowed<'r> {
    bits: u16,
    ext: Vec<&'r Method>,
}

impl<'r> Allowed<'r> {
    pub(crate) fn add(&mut self, set: &'r MethodSet) {
        self.bits |= set.bits;
        self.ext.extend(set.ext.iter());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.bits == 0 && self.ext.is_empty()
    }

    /// Sorted (alphabetically), deduplicated, with `HEAD` wherever `GET` is.
    pub(crate) fn into_vec(self) -> Vec<Method> {
        let mut out: Vec<Method> =
            STANDARD.iter().enumerate().filter(|(i, _)| self.bits & (1 << i) != 0).map(|(_, m)| m.clone()).collect();
        out.extend(self.ext.into_iter().cloned());
        out.sort();
        out.dedup();
        out
    }
}
