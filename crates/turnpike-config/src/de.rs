//! The serde `Deserializer` over a [`Node`] tree, whose errors know which node they are about.
//!
//! Nodes listed in a "removed" set (by index path: entry index in a mapping, element index in
//! a sequence) are skipped, which is how error recovery re-runs deserialization without the
//! parts that already failed while keeping original indices.

use std::collections::HashSet;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, EnumAccess, IntoDeserializer, MapAccess, SeqAccess, Unexpected, VariantAccess, Visitor,
};

use crate::node::{Node, NodeKind, Path, PathSeg, redact, resolve_plain};
use crate::source::Span;

/// Struct name that makes [`NodeDe`] hand out a node's span and path (see [`crate::Spanned`]).
pub(crate) const SPANNED_NAME: &str = "$__turnpike_config_private_Spanned";
pub(crate) const SPANNED_SPAN: &str = "$__turnpike_config_private_span";
pub(crate) const SPANNED_PATH: &str = "$__turnpike_config_private_path";
pub(crate) const SPANNED_VALUE: &str = "$__turnpike_config_private_value";
pub(crate) const SPANNED_FIELDS: &[&str] = &[SPANNED_SPAN, SPANNED_PATH, SPANNED_VALUE];

/// Index paths of nodes to skip.
pub(crate) type Removed = HashSet<Vec<u32>>;

/// What kind of failure a [`DeError`] is, as far as recovery cares.
#[derive(Debug, Clone)]
pub(crate) enum ErrKind {
    UnknownField { field: String, expected: &'static [&'static str] },
    UnknownVariant { variant: String, expected: &'static [&'static str] },
    MissingField(&'static str),
    Other,
}

/// Which node an error is about.
#[derive(Debug, Clone)]
pub(crate) struct Loc {
    /// Path shown to people.
    pub path: Path,
    /// Index path of the node recovery removes.
    pub idx: Vec<u32>,
    /// Where to point.
    pub span: Span,
    /// The error follows from an earlier removal below this node, so it is not reported.
    pub consequence: bool,
}

/// A deserialization error; `loc` is filled in by the innermost node the error passes through.
#[derive(Debug, Clone)]
pub(crate) struct DeError {
    pub kind: ErrKind,
    pub message: String,
    pub loc: Option<Box<Loc>>,
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError { kind: ErrKind::Other, message: msg.to_string(), loc: None }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let message = if expected.is_empty() {
            format!("unknown field `{field}`, there are no fields")
        } else {
            format!("unknown field `{field}`, expected {}", one_of(expected))
        };
        DeError { kind: ErrKind::UnknownField { field: field.to_owned(), expected }, message, loc: None }
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let message = if expected.is_empty() {
            format!("unknown variant `{variant}`, there are no variants")
        } else {
            format!("unknown variant `{variant}`, expected {}", one_of(expected))
        };
        DeError { kind: ErrKind::UnknownVariant { variant: variant.to_owned(), expected }, message, loc: None }
    }

    fn missing_field(field: &'static str) -> Self {
        DeError { kind: ErrKind::MissingField(field), message: format!("missing field `{field}`"), loc: None }
    }
}

fn idx_child(idx: &[u32], i: usize) -> Vec<u32> {
    let mut v = Vec::with_capacity(idx.len() + 1);
    v.extend_from_slice(idx);
    v.push(u32::try_from(i).unwrap_or(u32::MAX));
    v
}

/// Deserializes one node. Cheap to clone (the path and index path are copied).
#[derive(Clone)]
pub(crate) struct NodeDe<'a> {
    pub node: &'a Node,
    pub removed: &'a Removed,
    pub path: Path,
    pub idx: Vec<u32>,
}

impl<'a> NodeDe<'a> {
    pub fn root(node: &'a Node, removed: &'a Removed) -> Self {
        NodeDe { node, removed, path: Path::root(), idx: Vec::new() }
    }

    fn child(&self, node: &'a Node, seg: PathSeg, i: usize) -> NodeDe<'a> {
        let mut path = self.path.clone();
        path.push(seg);
        NodeDe { node, removed: self.removed, path, idx: idx_child(&self.idx, i) }
    }

    fn is_removed(&self, i: usize) -> bool {
        !self.removed.is_empty() && self.removed.contains(&idx_child(&self.idx, i))
    }

    /// Whether a failure of this container can be blamed on children dropped earlier: a
    /// sequence that lost elements (a tuple now too short), or a mapping that lost every entry
    /// (an enum `{variant: value}` whose value failed). A mapping with entries left is not
    /// excused, so a real error there is never hidden.
    fn lost_children_explain_failure(&self) -> bool {
        match &self.node.kind {
            NodeKind::Seq(items) => (0..items.len()).any(|i| self.is_removed(i)),
            NodeKind::Map(entries) => !entries.is_empty() && (0..entries.len()).all(|i| self.is_removed(i)),
            _ => false,
        }
    }

    fn live_entries(&self) -> impl Iterator<Item = (usize, &'a (Node, Node))> + '_ {
        let entries: &'a [(Node, Node)] = match &self.node.kind {
            NodeKind::Map(entries) => entries,
            _ => &[],
        };
        entries.iter().enumerate().filter(|(i, _)| !self.is_removed(*i))
    }

    /// Gives an error that does not know its node yet this node (or, for an unknown field or
    /// variant found in buffered content, the entry it names), and redacts secrets.
    fn attach<T>(&self, result: Result<T, DeError>) -> Result<T, DeError> {
        result.map_err(|mut e| {
            if e.loc.is_none() {
                self.locate(&mut e);
            }
            e
        })
    }

    fn locate_err(&self, mut e: DeError) -> DeError {
        if e.loc.is_none() {
            self.locate(&mut e);
        }
        e
    }

    fn locate(&self, e: &mut DeError) {
        let mut secrets = Vec::new();
        self.node.collect_secrets(&mut secrets);
        if !secrets.is_empty() {
            e.message = redact(&e.message, &secrets);
        }
        // Internally tagged enums and `flatten` buffer a mapping before deserializing it, so
        // their unknown-field / unknown-variant errors surface at the mapping: find the entry.
        match &e.kind {
            ErrKind::UnknownField { field, .. } => {
                if let Some((i, (key, _))) = self.live_entries().find(|(_, (k, _))| k.as_str() == Some(field.as_str()))
                {
                    e.loc = Some(Box::new(Loc {
                        path: self.path.clone().key(field.clone()),
                        idx: idx_child(&self.idx, i),
                        span: key.span,
                        consequence: false,
                    }));
                    return;
                }
            }
            ErrKind::UnknownVariant { variant, .. } => {
                if let Some((_, (key, value))) =
                    self.live_entries().find(|(_, (_, v))| v.as_str() == Some(variant.as_str()))
                {
                    e.loc = Some(Box::new(Loc {
                        path: self.path.clone().key(key.as_str().unwrap_or_default()),
                        idx: self.idx.clone(),
                        span: value.span,
                        consequence: false,
                    }));
                    return;
                }
            }
            ErrKind::MissingField(_) | ErrKind::Other => {}
        }
        let consequence = matches!(e.kind, ErrKind::Other) && self.lost_children_explain_failure();
        e.loc =
            Some(Box::new(Loc { path: self.path.clone(), idx: self.idx.clone(), span: self.node.span, consequence }));
    }

    fn unexpected(&self) -> Unexpected<'a> {
        match &self.node.kind {
            NodeKind::Null => Unexpected::Other("null"),
            NodeKind::Bool(b) => Unexpected::Bool(*b),
            NodeKind::Int(i) => Unexpected::Signed(*i),
            NodeKind::Float(f) => Unexpected::Float(*f),
            NodeKind::Str(s, _) => Unexpected::Str(s),
            NodeKind::Seq(_) => Unexpected::Seq,
            NodeKind::Map(_) => Unexpected::Map,
        }
    }

    fn invalid_type(&self, expected: &dyn de::Expected) -> DeError {
        de::Error::invalid_type(self.unexpected(), expected)
    }

    /// The node as a scalar of another kind: substituted strings are resolved again (a quoted
    /// `"${env:PORT}"` may still be read as a number); other strings are not.
    fn resolved(&self) -> NodeKind {
        match &self.node.kind {
            NodeKind::Str(s, _) if self.node.substituted => resolve_plain(s).unwrap_or_else(|_| self.node.kind.clone()),
            other => other.clone(),
        }
    }

    fn int<'de, V, T>(
        &self,
        visitor: V,
        name: &str,
        visit: impl FnOnce(V, T) -> Result<V::Value, DeError>,
    ) -> Result<V::Value, DeError>
    where
        V: Visitor<'de>,
        T: TryFrom<i64>,
    {
        let result = match self.resolved() {
            NodeKind::Int(i) => match T::try_from(i) {
                Ok(v) => visit(visitor, v),
                Err(_) => Err(de::Error::custom(format_args!("value {i} out of range for {name}"))),
            },
            _ => Err(self.invalid_type(&visitor)),
        };
        self.attach(result)
    }

    fn visit_seq_node<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            NodeKind::Seq(items) => visitor.visit_seq(SeqAcc { de: &self, items, pos: 0 }),
            _ => Err(self.invalid_type(&visitor)),
        };
        self.attach(result)
    }

    fn visit_map_node<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            NodeKind::Map(entries) => visitor.visit_map(MapAcc { de: &self, entries, pos: 0, current: None }),
            _ => Err(self.invalid_type(&visitor)),
        };
        self.attach(result)
    }
}

macro_rules! int_methods {
    ($($method:ident => $visit:ident: $ty:ty,)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                self.int::<V, $ty>(visitor, stringify!($ty), |v, n| v.$visit(n))
            }
        )*
    };
}

impl<'de, 'a> de::Deserializer<'de> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Bool(b) => visitor.visit_bool(*b),
            NodeKind::Int(i) => visitor.visit_i64(*i),
            NodeKind::Float(f) => visitor.visit_f64(*f),
            NodeKind::Str(s, _) => visitor.visit_str(s),
            NodeKind::Seq(_) => return self.visit_seq_node(visitor),
            NodeKind::Map(_) => return self.visit_map_node(visitor),
        };
        self.attach(result)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match self.resolved() {
            NodeKind::Bool(b) => visitor.visit_bool(b),
            _ => Err(self.invalid_type(&visitor)),
        };
        self.attach(result)
    }

    int_methods! {
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_i128 => visit_i128: i128,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_u128 => visit_u128: u128,
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match self.resolved() {
            NodeKind::Float(f) => visitor.visit_f64(f),
            NodeKind::Int(i) => visitor.visit_f64(i as f64),
            _ => Err(self.invalid_type(&visitor)),
        };
        self.attach(result)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match self.node.scalar_text() {
            Some(text) if text.chars().count() == 1 => match text.chars().next() {
                Some(c) => visitor.visit_char(c),
                None => Err(self.invalid_type(&visitor)),
            },
            _ => Err(self.invalid_type(&visitor)),
        };
        self.attach(result)
    }

    /// Strings, and plain scalars read as written (`2`, `true`, `0x1F` as text).
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match (&self.node.kind, self.node.scalar_text()) {
            (NodeKind::Str(s, _), _) => visitor.visit_str(s),
            (_, Some(text)) => visitor.visit_str(&text),
            (_, None) => Err(self.invalid_type(&visitor)),
        };
        self.attach(result)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if matches!(self.node.kind, NodeKind::Null) {
            let result = visitor.visit_none();
            return self.attach(result);
        }
        let this = self.clone();
        let result = visitor.visit_some(self);
        this.attach(result)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let result = match self.node.kind {
            NodeKind::Null => visitor.visit_unit(),
            _ => Err(self.invalid_type(&visitor)),
        };
        self.attach(result)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        let this = self.clone();
        let result = visitor.visit_newtype_struct(self);
        this.attach(result)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_seq_node(visitor)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.visit_seq_node(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.visit_seq_node(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.visit_map_node(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        if name == SPANNED_NAME {
            let this = self.clone();
            let result = visitor.visit_map(SpannedAcc { de: self, state: 0 });
            return this.attach(result);
        }
        self.visit_map_node(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let result = match &self.node.kind {
            NodeKind::Str(s, _) => visitor.visit_enum(StrEnum { variant: s }),
            NodeKind::Map(_) => {
                let live: Vec<(usize, &'a (Node, Node))> = self.live_entries().collect();
                match live.as_slice() {
                    [(i, (key, value))] => visitor.visit_enum(MapEnum { de: &self, key, value, index: *i }),
                    _ => Err(de::Error::custom(format_args!(
                        "expected a mapping with a single key (the variant of `{name}`), found {} keys",
                        live.len()
                    ))),
                }
            }
            _ => Err(de::Error::custom(format_args!(
                "invalid type: {}, expected `{name}`: a variant name, or a mapping with a single key",
                self.unexpected()
            ))),
        };
        self.attach(result)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqAcc<'a, 'b> {
    de: &'b NodeDe<'a>,
    items: &'a [Node],
    pos: usize,
}

impl<'de> SeqAccess<'de> for SeqAcc<'_, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        while let Some(item) = self.items.get(self.pos) {
            let i = self.pos;
            self.pos += 1;
            if self.de.is_removed(i) {
                continue;
            }
            // Errors raised after the element's own deserializer returned (serde's buffered
            // enums) still belong to the element.
            return seed
                .deserialize(self.de.child(item, PathSeg::Index(i), i))
                .map(Some)
                .map_err(|e| self.de.child(item, PathSeg::Index(i), i).locate_err(e));
        }
        Ok(None)
    }
}

struct MapAcc<'a, 'b> {
    de: &'b NodeDe<'a>,
    entries: &'a [(Node, Node)],
    pos: usize,
    current: Option<usize>,
}

impl<'de> MapAccess<'de> for MapAcc<'_, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        while let Some((key, _)) = self.entries.get(self.pos) {
            let i = self.pos;
            self.pos += 1;
            if self.de.is_removed(i) {
                continue;
            }
            self.current = Some(i);
            let text = key.as_str().unwrap_or_default();
            return seed.deserialize(KeyDe { text }).map(Some).map_err(|mut e| {
                if e.loc.is_none() {
                    e.loc = Some(Box::new(Loc {
                        path: self.de.path.clone().key(text),
                        idx: idx_child(&self.de.idx, i),
                        span: key.span,
                        consequence: false,
                    }));
                }
                e
            });
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((i, (key, value))) = self.current.take().and_then(|i| Some((i, self.entries.get(i)?))) else {
            return Err(de::Error::custom("value requested before key"));
        };
        let seg = || PathSeg::Key(key.as_str().unwrap_or_default().to_owned());
        seed.deserialize(self.de.child(value, seg(), i)).map_err(|e| self.de.child(value, seg(), i).locate_err(e))
    }
}

/// Deserializes a mapping key. Keys are strings; plain numeric or boolean keys can still be
/// read as numbers or booleans (`200:` into a `HashMap<u16, _>`).
struct KeyDe<'a> {
    text: &'a str,
}

macro_rules! key_int_methods {
    ($($method:ident => $visit:ident: $ty:ty,)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                match resolve_plain(self.text) {
                    Ok(NodeKind::Int(i)) => match <$ty>::try_from(i) {
                        Ok(n) => visitor.$visit(n),
                        Err(_) => Err(de::Error::custom(format_args!(
                            "key {i} out of range for {}", stringify!($ty)
                        ))),
                    },
                    _ => Err(de::Error::invalid_type(Unexpected::Str(self.text), &visitor)),
                }
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for KeyDe<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_str(self.text)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match resolve_plain(self.text) {
            Ok(NodeKind::Bool(b)) => visitor.visit_bool(b),
            _ => Err(de::Error::invalid_type(Unexpected::Str(self.text), &visitor)),
        }
    }

    key_int_methods! {
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_i128 => visit_i128: i128,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_u128 => visit_u128: u128,
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_enum(StrEnum { variant: self.text })
    }

    serde::forward_to_deserialize_any! {
        f32 f64 char str string bytes byte_buf unit unit_struct seq tuple tuple_struct map
        struct identifier ignored_any
    }
}

/// An enum written as a bare variant name.
struct StrEnum<'a> {
    variant: &'a str,
}

impl<'de> EnumAccess<'de> for StrEnum<'_> {
    type Error = DeError;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), DeError> {
        let value = seed.deserialize(KeyDe { text: self.variant })?;
        Ok((value, self))
    }
}

impl<'de> VariantAccess<'de> for StrEnum<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _seed: T) -> Result<T::Value, DeError> {
        Err(self.needs_value())
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, _v: V) -> Result<V::Value, DeError> {
        Err(self.needs_value())
    }

    fn struct_variant<V: Visitor<'de>>(self, _fields: &'static [&'static str], _v: V) -> Result<V::Value, DeError> {
        Err(self.needs_value())
    }
}

impl StrEnum<'_> {
    fn needs_value(&self) -> DeError {
        de::Error::custom(format_args!("variant `{0}` needs a value: write it as a mapping `{0}: ...`", self.variant))
    }
}

/// An enum written as a single-key mapping `variant: value`.
struct MapEnum<'a, 'b> {
    de: &'b NodeDe<'a>,
    key: &'a Node,
    value: &'a Node,
    index: usize,
}

impl<'de, 'a, 'b> EnumAccess<'de> for MapEnum<'a, 'b> {
    type Error = DeError;
    type Variant = NodeDe<'a>;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, NodeDe<'a>), DeError> {
        let text = self.key.as_str().unwrap_or_default();
        let variant = seed.deserialize(KeyDe { text }).map_err(|mut e| {
            if e.loc.is_none() {
                e.loc = Some(Box::new(Loc {
                    path: self.de.path.clone(),
                    idx: self.de.idx.clone(),
                    span: self.key.span,
                    consequence: false,
                }));
            }
            e
        })?;
        let value = self.de.child(self.value, PathSeg::Key(text.to_owned()), self.index);
        Ok((variant, value))
    }
}

impl<'de> VariantAccess<'de> for NodeDe<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.node.kind {
            NodeKind::Null => Ok(()),
            _ => {
                let result = Err(de::Error::custom("this variant takes no value"));
                self.attach(result)
            }
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        let this = self.clone();
        let result = seed.deserialize(self);
        this.attach(result)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.visit_seq_node(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.visit_map_node(visitor)
    }
}

/// Hands a [`crate::Spanned`] its span, path and value, in that order.
struct SpannedAcc<'a> {
    de: NodeDe<'a>,
    state: u8,
}

impl<'de> MapAccess<'de> for SpannedAcc<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        let Some(name) = SPANNED_FIELDS.get(usize::from(self.state)) else {
            return Ok(None);
        };
        seed.deserialize(KeyDe { text: name }).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let state = self.state;
        self.state += 1;
        match state {
            0 => {
                let s = self.de.node.span;
                let parts = [s.file.0, s.line, s.col, s.end_line, s.end_col];
                seed.deserialize(de::value::SeqDeserializer::new(parts.into_iter()))
            }
            1 => {
                let segs: Vec<SegDe> = self.de.path.segments().iter().map(|s| SegDe(s.clone())).collect();
                seed.deserialize(de::value::SeqDeserializer::new(segs.into_iter()))
            }
            _ => {
                let result = seed.deserialize(self.de.clone());
                self.de.attach(result)
            }
        }
    }
}

/// One path segment, handed to [`crate::Spanned`] as a string (key) or an integer (index).
pub(crate) struct SegDe(PathSeg);

impl<'de> IntoDeserializer<'de, DeError> for SegDe {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

impl<'de> de::Deserializer<'de> for SegDe {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            PathSeg::Key(k) => visitor.visit_string(k),
            PathSeg::Index(i) => visitor.visit_u64(u64::try_from(i).unwrap_or(u64::MAX)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}
