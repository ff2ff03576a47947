//! `Spanned<T>`: a config value that remembers where it was written, for semantic checks.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde::{Serialize, Serializer};

use crate::de::{SPANNED_FIELDS, SPANNED_NAME, SPANNED_PATH, SPANNED_SPAN, SPANNED_VALUE};
use crate::node::{Path, PathSeg};
use crate::source::{FileId, Span};

/// A value with the span and path of the node it was read from, so a later semantic check can
/// report `routes[orders].upstream: unknown upstream` at the right line.
///
/// `path` uses original sequence indices (see [`Path`]); render it with
/// [`crate::Node::display_path`] or build an error with [`crate::ConfigError::at`].
///
/// Only this crate's deserializer can produce a `Spanned` (deserializing one from another
/// format fails), and not inside internally tagged or untagged enums or `#[serde(flatten)]`
/// fields, which serde buffers without positions. Serializes, compares and hashes as `T`
/// alone; its JSON schema is `T`'s.
#[derive(Clone, Debug)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it is in the document tree.
    pub path: Path,
    /// Where it is in the source.
    pub span: Span,
}

impl<T> Spanned<T> {
    /// Wraps a value with no known position (root path, default span), e.g. for defaults and
    /// tests.
    pub fn unspanned(value: T) -> Self {
        Spanned { value, path: Path::root(), span: Span::default() }
    }

    /// The value, dropping the position.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> Deref for Spanned<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for Spanned<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for Spanned<T> {}

impl<T: std::hash::Hash> std::hash::Hash for Spanned<T> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.value.hash(state);
    }
}

impl<T: fmt::Display> fmt::Display for Spanned<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.value.fmt(f)
    }
}

impl<T: Serialize> Serialize for Spanned<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(serializer)
    }
}

impl<T: JsonSchema> JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// Path segments arrive as strings (keys) or integers (indices).
struct SegRepr(PathSeg);

impl<'de> Deserialize<'de> for SegRepr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SegVisitor;
        impl Visitor<'_> for SegVisitor {
            type Value = SegRepr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path segment")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SegRepr, E> {
                Ok(SegRepr(PathSeg::Key(v.to_owned())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<SegRepr, E> {
                Ok(SegRepr(PathSeg::Index(usize::try_from(v).unwrap_or(usize::MAX))))
            }
        }
        deserializer.deserialize_any(SegVisitor)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpannedVisitor<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> Visitor<'de> for SpannedVisitor<T> {
            type Value = Spanned<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value read by turnpike-config (Spanned only works with its loader)")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spanned<T>, A::Error> {
                let mut span = None;
                let mut path = None;
                let mut value = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        SPANNED_SPAN => {
                            let (file, line, col, end_line, end_col) = map.next_value()?;
                            span = Some(Span { file: FileId(file), line, col, end_line, end_col });
                        }
                        SPANNED_PATH => {
                            let segs: Vec<SegRepr> = map.next_value()?;
                            path = Some(Path::from(segs.into_iter().map(|s| s.0).collect::<Vec<_>>()));
                        }
                        SPANNED_VALUE => value = Some(map.next_value()?),
                        _ => {
                            return Err(de::Error::custom(
                                "Spanned values can only be read by the turnpike-config loader",
                            ));
                        }
                    }
                }
                match (value, path, span) {
                    (Some(value), Some(path), Some(span)) => Ok(Spanned { value, path, span }),
                    _ => Err(de::Error::custom("Spanned values can only be read by the turnpike-config loader")),
                }
            }
        }

        deserializer.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, SpannedVisitor(PhantomData))
    }
}
