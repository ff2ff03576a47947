//! Request path normalization: the canonical form routes are matched against (a security property).

use std::borrow::Cow;
use std::fmt;

/// Why a request path was rejected by [`normalize_path`]. Each case should be answered with `400
/// Bad Request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/` (this includes the empty path and the `*` of `OPTIONS *`).
    NotAbsolute,
    /// A `%` at byte offset `at` is not followed by two hex digits.
    InvalidEscape {
        /// Byte offset of the `%`.
        at: usize,
    },
    /// A raw control character (`0x00..=0x1F`, `0x7F`), space or backslash at byte offset `at`.
    ForbiddenByte {
        /// Byte offset of the byte.
        at: usize,
        /// The byte itself.
        byte: u8,
    },
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathError::NotAbsolute => f.write_str("path must start with `/`"),
            PathError::InvalidEscape { at } => write!(f, "invalid percent escape at byte {at}"),
            PathError::ForbiddenByte { at, byte } => {
                write!(f, "forbidden byte 0x{byte:02X} at byte {at}")
            }
        }
    }
}

impl std::error::Error for PathError {}

/// Normalizes a raw request path (no query string) into the form routes are matched against.
///
/// In order:
/// 1. The path must start with `/` ([`PathError::NotAbsolute`]). Raw control characters, spaces and
///    backslashes are rejected ([`PathError::ForbiddenByte`]): a backslash is a path separator for
///    some upstreams and not for others, so guessing would let a request be routed as one path and
///    served as another. Bytes `>= 0x80` pass unchanged.
/// 2. Percent escapes: every `%` must be followed by two hex digits ([`PathError::InvalidEscape`]).
///    Escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded; all others stay encoded
///    with uppercase hex, so `%2F` never creates a segment and `%00` never becomes a NUL.
/// 3. Repeated slashes collapse into one.
/// 4. Dot segments are removed as in RFC 3986 section 5.2.4 (`/a/./b` -> `/a/b`, `/public/../admin`
///    -> `/admin`, `/..` -> `/`). Decoding happens first, so `/%2e%2e/` is a dot segment too. A
///    path ending in `/`, `/.` or `/..` keeps a trailing slash.
///
/// Returns `Cow::Borrowed` (no allocation) when the path is already normal, which one pass over the
/// bytes decides.
pub fn normalize_path(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if scan(raw.as_bytes())? { Ok(Cow::Owned(rewrite(raw))) } else { Ok(Cow::Borrowed(raw)) }
}

/// Validates `b` and says whether it needs rewriting.
fn scan(b: &[u8]) -> Result<bool, PathError> {
    if b.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    let mut dirty = false;
    let mut seg_start = 1;
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'/' => {
                // An empty (`//`) or dot segment before this slash needs rewriting.
                dirty |= matches!(&b[seg_start..i], b"" | b"." | b"..");
                seg_start = i + 1;
            }
            b'%' => {
                let (Some(hi), Some(lo)) = (b.get(i + 1), b.get(i + 2)) else {
                    return Err(PathError::InvalidEscape { at: i });
                };
                let (Some(h), Some(l)) = (hex(*hi), hex(*lo)) else {
                    return Err(PathError::InvalidEscape { at: i });
                };
                dirty |= is_unreserved(h << 4 | l) || hi.is_ascii_lowercase() || lo.is_ascii_lowercase();
                i += 3;
                continue;
            }
            byte @ (0..=0x20 | 0x7F | b'\\') => {
                return Err(PathError::ForbiddenByte { at: i, byte });
            }
            _ => {}
        }
        i += 1;
    }
    dirty |= matches!(&b[seg_start..], b"." | b"..");
    Ok(dirty)
}

/// Rewrites a path `scan` accepted: decode and uppercase escapes, then collapse slashes and remove
/// dot segments.
fn rewrite(raw: &str) -> String {
    let b = raw.as_bytes();
    let mut decoded = String::with_capacity(raw.len());
    let mut run = 0;
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            i += 1;
            continue;
        }
        // `scan` guarantees two hex digits follow; every byte touched here is ASCII, so slicing
        // stays on boundaries.
        decoded.push_str(&raw[run..i]);
        let (h, l) = (hex(b[i + 1]).unwrap_or(0), hex(b[i + 2]).unwrap_or(0));
        let v = h << 4 | l;
        if is_unreserved(v) {
            decoded.push(char::from(v));
        } else {
            decoded.push('%');
            decoded.push(char::from(b[i + 1].to_ascii_uppercase()));
            decoded.push(char::from(b[i + 2].to_ascii_uppercase()));
        }
        i += 3;
        run = i;
    }
    decoded.push_str(&raw[run..]);

    let mut out = String::with_capacity(decoded.len());
    let mut trailing = false;
    let mut segments = decoded[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        match seg {
            "" | "." => trailing = last,
            ".." => {
                if let Some(p) = out.rfind('/') {
                    out.truncate(p);
                }
                trailing = last;
            }
            _ => {
                out.push('/');
                out.push_str(seg);
                trailing = false;
            }
        }
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    out
}

#[inline]
fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[inline]
fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~')
}
