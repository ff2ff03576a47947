//! The rule language of `authorize.rules`: a small expression language over the request and the identity
//! (`claims.tenant == header.x-tenant`), parsed once when the config is compiled and evaluated per request.
//!
//! The parser is hand-written and total: any text gives a [`Rule`] or a [`RuleError`] with a column, never a
//! panic; length ([`MAX_RULE_LEN`]) and nesting ([`MAX_DEPTH`]) are bounded, so evaluation recursion is too.
//! Evaluation borrows from the request and the identity; a comparison of a claim or header with a literal does not
//! allocate. The language is documented for users in `docs/authorization.md`; the grammar:
//!
//! ```text
//! rule     = or
//! or       = and { "||" and }
//! and      = cmp { "&&" cmp }
//! cmp      = unary [ ("==" | "!=" | "<" | "<=" | ">" | ">=" | "in" | "not" "in" | "contains") unary
//!                  | "matches" string | "exists" ]
//! unary    = "!" unary | primary
//! primary  = "(" or ")" | operand | string | number | "true" | "false" | "null" | list
//! operand  = "claims" segment { segment } | "header" segment | "query" segment
//!          | "identity" "." ("subject" | "consumer" | "plan" | "roles" | "scopes" | "source")
//!          | "method" | "path" | "client_ip"
//! segment  = "." name | "[" (string | integer) "]"        name = 1*( ALPHA / DIGIT / "_" / "-" / ":" )
//! list     = "[" [ item { "," item } [","] ] "]"           item = string | number | true | false | null | bare word
//! ```

use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use http::HeaderName;
use regex::{Regex, RegexBuilder};
use serde_json::{Map, Value};

use super::AuthzInput;

/// The longest rule accepted, in bytes.
pub const MAX_RULE_LEN: usize = 4096;
/// The deepest nesting accepted (parentheses and `!`).
pub const MAX_DEPTH: usize = 32;
/// The compiled size limit of one `matches` regex.
const REGEX_SIZE_LIMIT: usize = 256 * 1024;

/// Why a rule does not compile: the column (1-based, in characters) in the rule text and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// Where, in characters from 1.
    pub column: usize,
    /// What is wrong, lowercase.
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column, self.message)
    }
}

impl std::error::Error for RuleError {}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    expr: Expr,
}

impl Rule {
    /// Whether the rule holds for this request: its value is the boolean `true`.
    pub fn evaluate(&self, input: &AuthzInput<'_>) -> bool {
        matches!(eval(&self.expr, input), Val::Bool(true))
    }
}

/// Compiles one rule.
pub fn parse_rule(text: &str) -> Result<Rule, RuleError> {
    let mut p = Parser { text, pos: 0, depth: 0 };
    if text.len() > MAX_RULE_LEN {
        let mut cut = MAX_RULE_LEN;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        return Err(p.error_at(cut, format!("the rule is longer than {MAX_RULE_LEN} bytes")));
    }
    p.skip_ws();
    if p.at_end() {
        return Err(p.error("the rule is empty"));
    }
    let expr = p.parse_or()?;
    p.skip_ws();
    match p.peek() {
        None => Ok(Rule { expr }),
        Some(')') => Err(p.error("`)` without a matching `(`")),
        Some('&' | '|') => Err(p.error("expected `&&` or `||`")),
        Some(c) => Err(p.error(format!("unexpected `{c}`: expected `&&`, `||` or the end of the rule"))),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Syntax tree

#[derive(Debug, Clone)]
enum Expr {
    Operand(Operand),
    Lit(Lit),
    List(Box<[Lit]>),
    Not(Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Compare(CmpOp, Box<Expr>, Box<Expr>),
    /// `needle in haystack`, `needle not in haystack` and `haystack contains needle`.
    In {
        negated: bool,
        needle: Box<Expr>,
        haystack: Box<Expr>,
    },
    Matches(Box<Expr>, Regex),
    /// `x exists` and `x != null`.
    Exists(Box<Expr>),
    /// `x == null`.
    IsNull(Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
enum Lit {
    Null,
    Bool(bool),
    Num(Num),
    Str(Box<str>),
}

impl Lit {
    fn val(&self) -> Val<'_> {
        match self {
            Lit::Null => Val::Null,
            Lit::Bool(b) => Val::Bool(*b),
            Lit::Num(n) => Val::Num(*n),
            Lit::Str(s) => Val::Str(Cow::Borrowed(s)),
        }
    }
}

#[derive(Debug, Clone)]
enum Operand {
    /// `joined`, for a path of several dotted names only, is that path looked up first as one top-level claim
    /// (as the claim mapping does).
    Claim {
        joined: Option<Box<str>>,
        segments: Box<[Segment]>,
    },
    Header(HeaderName),
    Query(Box<str>),
    Identity(IdentityField),
    Method,
    Path,
    ClientIp,
}

#[derive(Debug, Clone)]
struct Segment {
    name: Box<str>,
    /// Written `.name` (not `["name"]` or `[0]`).
    dotted: bool,
    /// The array index this segment also stands for (`claims.groups.0`, `claims.groups[0]`).
    index: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
enum IdentityField {
    Subject,
    Consumer,
    Plan,
    Roles,
    Scopes,
    Source,
}

// ---------------------------------------------------------------------------------------------------------------
// Values

/// A number: integers exactly (any JSON integer fits), others as `f64`.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn from_json(n: &serde_json::Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::Int(i128::from(i))
        } else if let Some(u) = n.as_u64() {
            Num::Int(i128::from(u))
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn compare(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }

    /// Calls `f` with the number's text: integers in decimal (`42`), a float with an integral value below 2^53
    /// as an integer (`42.0` is `42`), other floats in Rust's shortest round-trip form (`0.5`).
    fn with_text<R>(self, f: impl FnOnce(&str) -> R) -> R {
        let int = match self {
            Num::Int(i) => Some(i),
            #[allow(clippy::cast_possible_truncation)]
            Num::Float(x) if x.is_finite() && x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 => Some(x as i128),
            Num::Float(_) => None,
        };
        match int {
            Some(i) => {
                let mut buf = StackText::default();
                let _ = write!(buf, "{i}");
                f(buf.as_str())
            }
            None => f(&self.as_f64().to_string()),
        }
    }
}

/// A small text buffer on the stack, for integers (at most 40 characters).
struct StackText {
    buf: [u8; 48],
    len: usize,
}

impl Default for StackText {
    fn default() -> Self {
        Self { buf: [0; 48], len: 0 }
    }
}

impl StackText {
    fn as_str(&self) -> &str {
        std::str::from_utf8(self.buf.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

impl fmt::Write for StackText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// The value of an expression, borrowed from the rule and the request where possible.
#[derive(Debug, Clone)]
enum Val<'a> {
    Null,
    Bool(bool),
    Num(Num),
    Str(Cow<'a, str>),
    /// A JSON array or object from the claims.
    Json(&'a Value),
    /// Roles or scopes.
    Strs(&'a [Arc<str>]),
    /// A list literal.
    List(&'a [Lit]),
}

impl<'a> Val<'a> {
    fn from_json(v: &'a Value) -> Val<'a> {
        match v {
            Value::Null => Val::Null,
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => Val::Num(Num::from_json(n)),
            Value::String(s) => Val::Str(Cow::Borrowed(s)),
            Value::Array(_) | Value::Object(_) => Val::Json(v),
        }
    }

    fn opt_str(s: Option<&'a str>) -> Val<'a> {
        s.map_or(Val::Null, |s| Val::Str(Cow::Borrowed(s)))
    }

    fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    fn is_true(&self) -> bool {
        matches!(self, Val::Bool(true))
    }

    /// The number of items, if this is a list.
    fn list_len(&self) -> Option<usize> {
        match self {
            Val::Json(Value::Array(items)) => Some(items.len()),
            Val::Strs(items) => Some(items.len()),
            Val::List(items) => Some(items.len()),
            _ => None,
        }
    }

    fn item(&self, i: usize) -> Val<'a> {
        match self {
            Val::Json(Value::Array(items)) => items.get(i).map_or(Val::Null, Val::from_json),
            Val::Strs(items) => Val::opt_str(items.get(i).map(|s| &**s)),
            Val::List(items) => items.get(i).map_or(Val::Null, Lit::val),
            _ => Val::Null,
        }
    }

    /// Calls `f` with the value's text if it is a string or a number.
    fn with_text<R>(&self, f: impl FnOnce(&str) -> R) -> Option<R> {
        match self {
            Val::Str(s) => Some(f(s)),
            Val::Num(n) => Some(n.with_text(f)),
            _ => None,
        }
    }
}

/// Equality: same kind and value; numbers numerically; a number and a string by text; lists item by item;
/// objects as JSON.
fn equal(a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Null, Val::Null) => true,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Num(x), Val::Num(y)) => x.compare(*y) == Some(Ordering::Equal),
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Num(n), Val::Str(s)) | (Val::Str(s), Val::Num(n)) => n.with_text(|t| t == s.as_ref()),
        (Val::Json(Value::Object(x)), Val::Json(Value::Object(y))) => x == y,
        _ => match (a.list_len(), b.list_len()) {
            (Some(n), Some(m)) => n == m && (0..n).all(|i| equal(&a.item(i), &b.item(i))),
            _ => false,
        },
    }
}

/// Order: numbers numerically, strings by their bytes (lexically), a number and a string numerically if the string
/// is a number; otherwise none.
fn order(a: &Val<'_>, b: &Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::Num(x), Val::Num(y)) => x.compare(*y),
        (Val::Str(x), Val::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Val::Num(x), Val::Str(y)) => x.compare(parse_number(y)?),
        (Val::Str(x), Val::Num(y)) => parse_number(x)?.compare(*y),
        _ => None,
    }
}

/// `needle in haystack`: list membership, or a substring of a string. `None` when the haystack is neither.
fn member(needle: &Val<'_>, haystack: &Val<'_>) -> Option<bool> {
    if let Some(n) = haystack.list_len() {
        return Some((0..n).any(|i| equal(&haystack.item(i), needle)));
    }
    match haystack {
        Val::Str(h) => Some(needle.with_text(|n| h.contains(n)).unwrap_or(false)),
        _ => None,
    }
}

fn eval<'a>(expr: &'a Expr, input: &AuthzInput<'a>) -> Val<'a> {
    match expr {
        Expr::Operand(op) => operand(op, input),
        Expr::Lit(lit) => lit.val(),
        Expr::List(items) => Val::List(items),
        Expr::Not(e) => Val::Bool(!eval(e, input).is_true()),
        Expr::And(items) => Val::Bool(items.iter().all(|e| eval(e, input).is_true())),
        Expr::Or(items) => Val::Bool(items.iter().any(|e| eval(e, input).is_true())),
        Expr::Compare(op, l, r) => {
            let (l, r) = (eval(l, input), eval(r, input));
            if l.is_null() || r.is_null() {
                return Val::Bool(false);
            }
            Val::Bool(match op {
                CmpOp::Eq => equal(&l, &r),
                CmpOp::Ne => !equal(&l, &r),
                CmpOp::Lt => order(&l, &r) == Some(Ordering::Less),
                CmpOp::Le => matches!(order(&l, &r), Some(Ordering::Less | Ordering::Equal)),
                CmpOp::Gt => order(&l, &r) == Some(Ordering::Greater),
                CmpOp::Ge => matches!(order(&l, &r), Some(Ordering::Greater | Ordering::Equal)),
            })
        }
        Expr::In { negated, needle, haystack } => {
            let (n, h) = (eval(needle, input), eval(haystack, input));
            if n.is_null() || h.is_null() {
                return Val::Bool(false);
            }
            Val::Bool(member(&n, &h).is_some_and(|found| found != *negated))
        }
        Expr::Matches(e, re) => Val::Bool(eval(e, input).with_text(|t| re.is_match(t)).unwrap_or(false)),
        Expr::Exists(e) => Val::Bool(!eval(e, input).is_null()),
        Expr::IsNull(e) => Val::Bool(eval(e, input).is_null()),
    }
}

fn operand<'a>(op: &'a Operand, input: &AuthzInput<'a>) -> Val<'a> {
    let identity = input.identity;
    match op {
        Operand::Claim { joined, segments } => {
            let claims = identity.and_then(|id| id.claims.as_deref());
            claims.and_then(|c| claim(c, joined.as_deref(), segments)).map_or(Val::Null, Val::from_json)
        }
        Operand::Header(name) => {
            Val::opt_str(input.headers.get(name).and_then(|v| std::str::from_utf8(v.as_bytes()).ok()))
        }
        Operand::Query(name) => query_param(input.uri.query(), name).map_or(Val::Null, Val::Str),
        Operand::Identity(field) => {
            let Some(id) = identity else { return Val::Null };
            match field {
                IdentityField::Subject => Val::opt_str(id.subject.as_deref()),
                IdentityField::Consumer => Val::opt_str(id.consumer.as_ref().map(|c| &*c.id)),
                IdentityField::Plan => Val::opt_str(id.plan.as_deref()),
                IdentityField::Roles => Val::Strs(&id.roles),
                IdentityField::Scopes => Val::Strs(&id.scopes),
                IdentityField::Source => Val::Str(Cow::Borrowed(id.source.as_str())),
            }
        }
        Operand::Method => Val::Str(Cow::Borrowed(input.method.as_str())),
        Operand::Path => Val::Str(Cow::Borrowed(input.uri.path())),
        Operand::ClientIp => Val::Str(Cow::Owned(input.client_ip.to_string())),
    }
}

/// The claim at a path: for `claims.a.b`, a top-level claim named `"a.b"` first, then the nested walk; a segment
/// that is a number also indexes arrays.
fn claim<'a>(claims: &'a Map<String, Value>, joined: Option<&str>, segments: &[Segment]) -> Option<&'a Value> {
    if let Some(joined) = joined
        && let Some(v) = claims.get(joined)
    {
        return Some(v);
    }
    let (first, rest) = segments.split_first()?;
    let mut value = claims.get(&*first.name)?;
    for seg in rest {
        value = match value {
            Value::Object(map) => map.get(&*seg.name)?,
            Value::Array(items) => items.get(seg.index?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The first value of query parameter `name`, decoded (`%XX`, `+` as space; invalid UTF-8 replaced).
pub(crate) fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode_component(k) == name).then(|| decode_component(v))
    })
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space, `%XX` a byte; a `%` not followed by
/// two hex digits stays as it is; invalid UTF-8 is replaced. Borrows when there is nothing to decode.
pub(crate) fn decode_component(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) if hex.is_some_and(|h| h.bytes().all(|c| c.is_ascii_hexdigit())) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// A number in JSON syntax (`-12`, `0.5`, `1e3`; no leading zeros, no `+`, no spaces).
fn parse_number(s: &str) -> Option<Num> {
    let b = s.as_bytes();
    let digits = |mut i: usize| {
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i > start).then_some(i)
    };
    let mut i = usize::from(b.first() == Some(&b'-'));
    i = match b.get(i) {
        Some(b'0') => i + 1,
        Some(b'1'..=b'9') => digits(i)?,
        _ => return None,
    };
    let mut float = false;
    if b.get(i) == Some(&b'.') {
        float = true;
        i = digits(i + 1)?;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        float = true;
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(i)?;
    }
    if i != b.len() {
        return None;
    }
    if !float && let Ok(n) = s.parse::<i128>() {
        return Some(Num::Int(n));
    }
    s.parse::<f64>().ok().filter(|f| f.is_finite()).map(Num::Float)
}

// ---------------------------------------------------------------------------------------------------------------
// Parser

/// What a parsed unary expression was, for the checks that keep surprising precedence out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// `!x` without parentheses around it.
    Not,
    /// `claims.x`, `header.y`, ...
    Operand,
    /// Anything else.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Cmp(CmpOp),
    In,
    NotIn,
    Contains,
    Matches,
    Exists,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Cmp(CmpOp::Eq) => "==",
            Op::Cmp(CmpOp::Ne) => "!=",
            Op::Cmp(CmpOp::Lt) => "<",
            Op::Cmp(CmpOp::Le) => "<=",
            Op::Cmp(CmpOp::Gt) => ">",
            Op::Cmp(CmpOp::Ge) => ">=",
            Op::In => "in",
            Op::NotIn => "not in",
            Op::Contains => "contains",
            Op::Matches => "matches",
            Op::Exists => "exists",
        }
    }
}

struct Parser<'t> {
    text: &'t str,
    /// Byte offset, always at a character boundary.
    pos: usize,
    depth: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_segment_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':')
}

fn is_bare_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, ',' | '[' | ']' | '(' | ')' | '"' | '\'')
}

impl<'t> Parser<'t> {
    fn rest(&self) -> &'t str {
        self.text.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// The run of characters from the current position that satisfy `f`, without consuming it.
    fn run(&self, f: impl Fn(char) -> bool) -> &'t str {
        let rest = self.rest();
        let end = rest.char_indices().find(|&(_, c)| !f(c)).map_or(rest.len(), |(i, _)| i);
        rest.get(..end).unwrap_or("")
    }

    fn take(&mut self, f: impl Fn(char) -> bool) -> &'t str {
        let run = self.run(f);
        self.pos += run.len();
        run
    }

    fn column(&self, pos: usize) -> usize {
        self.text.get(..pos).map_or(1, |t| t.chars().count() + 1)
    }

    fn error_at(&self, pos: usize, message: impl Into<String>) -> RuleError {
        RuleError { column: self.column(pos), message: message.into() }
    }

    fn error(&self, message: impl Into<String>) -> RuleError {
        self.error_at(self.pos, message)
    }

    fn enter(&mut self) -> Result<(), RuleError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("the rule is nested too deeply (at most {MAX_DEPTH} levels)")));
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Expr, RuleError> {
        let mut items = vec![self.parse_and()?];
        loop {
            self.skip_ws();
            if !self.eat("||") {
                break;
            }
            items.push(self.parse_and()?);
        }
        Ok(if items.len() == 1 { items.swap_remove(0) } else { Expr::Or(items) })
    }

    fn parse_and(&mut self) -> Result<Expr, RuleError> {
        let mut items = vec![self.parse_cmp()?];
        loop {
            self.skip_ws();
            if !self.eat("&&") {
                break;
            }
            items.push(self.parse_cmp()?);
        }
        Ok(if items.len() == 1 { items.swap_remove(0) } else { Expr::And(items) })
    }

    /// The comparison operator at the current position (after white space), and its length.
    fn peek_op(&self) -> Option<(Op, usize)> {
        let rest = self.rest();
        for (sym, op) in [
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
            ("<=", CmpOp::Le),
            (">=", CmpOp::Ge),
            ("<", CmpOp::Lt),
            (">", CmpOp::Gt),
        ] {
            if rest.starts_with(sym) {
                return Some((Op::Cmp(op), sym.len()));
            }
        }
        let word = self.run(is_word_char);
        let op = match word {
            "in" => Op::In,
            "contains" => Op::Contains,
            "matches" => Op::Matches,
            "exists" => Op::Exists,
            "not" => {
                let after = rest.get(word.len()..).unwrap_or("");
                let trimmed = after.trim_start();
                let gap = after.len() - trimmed.len();
                let next = trimmed.get(..trimmed.find(|c| !is_word_char(c)).unwrap_or(trimmed.len()));
                return (gap > 0 && next == Some("in")).then_some((Op::NotIn, word.len() + gap + 2));
            }
            _ => return None,
        };
        Some((op, word.len()))
    }

    fn parse_cmp(&mut self) -> Result<Expr, RuleError> {
        self.skip_ws();
        let start = self.pos;
        let (left, shape) = self.parse_unary()?;
        self.skip_ws();
        let op_pos = self.pos;
        let Some((op, len)) = self.peek_op() else {
            if self.rest().starts_with('=') {
                return Err(self.error("use `==` to compare"));
            }
            if self.rest().starts_with("not") && self.run(is_word_char) == "not" {
                return Err(self.error("expected `not in`"));
            }
            return Ok(left);
        };
        if shape == Shape::Not {
            return Err(self.error_at(
                start,
                format!(
                    "`!` binds tighter than `{}`: put what it negates in parentheses, `!(...)`, or write `(!x)` to \
                     compare the negation",
                    op.name()
                ),
            ));
        }
        self.pos += len;
        let expr = match op {
            Op::Exists => {
                if shape != Shape::Operand {
                    return Err(self.error_at(op_pos, "`exists` follows a value such as `claims.email`"));
                }
                Expr::Exists(Box::new(left))
            }
            Op::Matches => {
                self.skip_ws();
                let re_pos = self.pos;
                let pattern = match self.peek() {
                    Some(q @ ('"' | '\'')) => self.parse_string(q)?,
                    _ => return Err(self.error("`matches` is followed by a quoted regular expression")),
                };
                reject_null_literal(&left, op).map_err(|m| self.error_at(start, m))?;
                Expr::Matches(Box::new(left), compile_regex(&pattern).map_err(|m| self.error_at(re_pos, m))?)
            }
            Op::Cmp(cmp) => {
                let right_pos = self.skip_ws_pos();
                let (right, _) = self.parse_unary()?;
                match (cmp, is_null_literal(&left), is_null_literal(&right)) {
                    (CmpOp::Eq | CmpOp::Ne, true, true) => Expr::Lit(Lit::Bool(cmp == CmpOp::Eq)),
                    (CmpOp::Eq, true, false) => Expr::IsNull(Box::new(right)),
                    (CmpOp::Eq, false, true) => Expr::IsNull(Box::new(left)),
                    (CmpOp::Ne, true, false) => Expr::Exists(Box::new(right)),
                    (CmpOp::Ne, false, true) => Expr::Exists(Box::new(left)),
                    (_, true, _) => return Err(self.error_at(start, null_message(op))),
                    (_, _, true) => return Err(self.error_at(right_pos, null_message(op))),
                    _ => Expr::Compare(cmp, Box::new(left), Box::new(right)),
                }
            }
            Op::In | Op::NotIn | Op::Contains => {
                let right_pos = self.skip_ws_pos();
                let (right, _) = self.parse_unary()?;
                reject_null_literal(&left, op).map_err(|m| self.error_at(start, m))?;
                reject_null_literal(&right, op).map_err(|m| self.error_at(right_pos, m))?;
                let (needle, haystack) = if op == Op::Contains { (right, left) } else { (left, right) };
                Expr::In { negated: op == Op::NotIn, needle: Box::new(needle), haystack: Box::new(haystack) }
            }
        };
        self.skip_ws();
        if let Some((next, _)) = self.peek_op() {
            return Err(self.error(format!(
                "comparisons do not chain: join them with `&&` or `||`, or use parentheses (found `{}`)",
                next.name()
            )));
        }
        Ok(expr)
    }

    fn skip_ws_pos(&mut self) -> usize {
        self.skip_ws();
        self.pos
    }

    fn parse_unary(&mut self) -> Result<(Expr, Shape), RuleError> {
        self.skip_ws();
        self.enter()?;
        let result = if self.rest().starts_with('!') && !self.rest().starts_with("!=") {
            self.bump();
            let (inner, _) = self.parse_unary()?;
            (Expr::Not(Box::new(inner)), Shape::Not)
        } else {
            self.parse_primary()?
        };
        self.depth -= 1;
        Ok(result)
    }

    fn parse_primary(&mut self) -> Result<(Expr, Shape), RuleError> {
        self.skip_ws();
        let start = self.pos;
        let Some(c) = self.peek() else {
            return Err(self.error("expected a value, found the end of the rule"));
        };
        match c {
            '(' => {
                self.bump();
                let inner = self.parse_or()?;
                self.skip_ws();
                if !self.eat(")") {
                    return Err(match self.peek() {
                        None => self.error_at(start, "this `(` is not closed"),
                        Some(c) => self.error(format!("expected `)`, found `{c}`")),
                    });
                }
                Ok((inner, Shape::Other))
            }
            '[' => Ok((self.parse_list()?, Shape::Other)),
            '"' | '\'' => Ok((Expr::Lit(Lit::Str(self.parse_string(c)?.into())), Shape::Other)),
            '-' | '0'..='9' => {
                let text = self.take(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'));
                match parse_number(text) {
                    Some(n) => Ok((Expr::Lit(Lit::Num(n)), Shape::Other)),
                    None => Err(self.error_at(start, format!("`{text}` is not a number"))),
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' => self.parse_word(),
            '=' | '<' | '>' | '&' | '|' => Err(self.error(format!("expected a value before `{c}`"))),
            ')' => Err(self.error("expected a value before `)`")),
            c => Err(self.error(format!("unexpected `{c}`"))),
        }
    }

    fn parse_word(&mut self) -> Result<(Expr, Shape), RuleError> {
        let start = self.pos;
        let word = self.take(is_word_char);
        let operand = match word {
            "true" => return Ok((Expr::Lit(Lit::Bool(true)), Shape::Other)),
            "false" => return Ok((Expr::Lit(Lit::Bool(false)), Shape::Other)),
            "null" => return Ok((Expr::Lit(Lit::Null), Shape::Other)),
            "claims" => {
                let segments = self.parse_segments(word, usize::MAX)?;
                let joined = (segments.len() > 1 && segments.iter().all(|s| s.dotted))
                    .then(|| segments.iter().map(|s| &*s.name).collect::<Vec<_>>().join(".").into());
                Operand::Claim { joined, segments: segments.into() }
            }
            "header" => {
                let name_pos = self.pos;
                let seg = self.parse_one_segment(word)?;
                match HeaderName::from_bytes(seg.name.to_ascii_lowercase().as_bytes()) {
                    Ok(name) => Operand::Header(name),
                    Err(_) => return Err(self.error_at(name_pos, format!("`{}` is not a header name", seg.name))),
                }
            }
            "query" => Operand::Query(self.parse_one_segment(word)?.name),
            "identity" => {
                let name_pos = self.pos;
                let seg = self.parse_one_segment(word)?;
                Operand::Identity(match &*seg.name {
                    "subject" => IdentityField::Subject,
                    "consumer" => IdentityField::Consumer,
                    "plan" => IdentityField::Plan,
                    "roles" => IdentityField::Roles,
                    "scopes" => IdentityField::Scopes,
                    "source" => IdentityField::Source,
                    other => {
                        return Err(self.error_at(
                            name_pos,
                            format!(
                                "unknown identity field `{other}`: one of subject, consumer, plan, roles, scopes, \
                                 source (token claims are `claims.<name>`)"
                            ),
                        ));
                    }
                })
            }
            "method" | "path" | "client_ip" => {
                if matches!(self.peek(), Some('.' | '[')) {
                    return Err(self.error(format!("`{word}` has no fields")));
                }
                match word {
                    "method" => Operand::Method,
                    "path" => Operand::Path,
                    _ => Operand::ClientIp,
                }
            }
            "in" | "not" | "contains" | "matches" | "exists" => {
                return Err(self.error_at(start, format!("expected a value before `{word}`")));
            }
            other => {
                let hint = if matches!(self.peek(), Some('.')) {
                    "operands are claims.<name>, header.<name>, query.<name>, identity.<field>, method, path, \
                     client_ip"
                } else {
                    "quote strings (\"gold\"); bare words are strings only inside lists ([gold, silver])"
                };
                return Err(self.error_at(start, format!("unknown name `{other}`: {hint}")));
            }
        };
        Ok((Expr::Operand(operand), Shape::Operand))
    }

    fn parse_one_segment(&mut self, word: &str) -> Result<Segment, RuleError> {
        let pos = self.pos;
        self.parse_segments(word, 1)?.pop().ok_or_else(|| self.error_at(pos, format!("`{word}` needs a name")))
    }

    /// `.name` and `["name"]` / `[0]` segments after `word`: at least one, at most `max`.
    fn parse_segments(&mut self, word: &str, max: usize) -> Result<Vec<Segment>, RuleError> {
        let mut segments = Vec::new();
        loop {
            let seg_pos = self.pos;
            let segment = match self.peek() {
                Some('.') => {
                    self.bump();
                    let name = self.take(is_segment_char);
                    if name.is_empty() {
                        return Err(self.error("expected a name after `.`"));
                    }
                    Segment { name: name.into(), dotted: true, index: name.parse().ok() }
                }
                Some('[') => {
                    self.bump();
                    self.skip_ws();
                    let segment = match self.peek() {
                        Some(q @ ('"' | '\'')) => {
                            Segment { name: self.parse_string(q)?.into(), dotted: false, index: None }
                        }
                        Some('0'..='9') => {
                            let digits = self.take(|c| c.is_ascii_digit());
                            let index = digits.parse().map_err(|_| self.error_at(seg_pos, "index out of range"))?;
                            Segment { name: digits.into(), dotted: false, index: Some(index) }
                        }
                        _ => return Err(self.error("expected a quoted name or an index inside `[...]`")),
                    };
                    self.skip_ws();
                    if !self.eat("]") {
                        return Err(self.error("expected `]`"));
                    }
                    segment
                }
                _ => break,
            };
            if segments.len() == max {
                return Err(self.error_at(seg_pos, format!("`{word}` takes one name")));
            }
            segments.push(segment);
        }
        if segments.is_empty() {
            let example = match word {
                "claims" => "claims.sub",
                "header" => "header.x-tenant",
                "query" => "query.page",
                _ => "identity.roles",
            };
            return Err(self.error(format!("`{word}` needs a name, as in `{example}`")));
        }
        Ok(segments)
    }

    fn parse_list(&mut self) -> Result<Expr, RuleError> {
        let start = self.pos;
        self.bump();
        let mut items = Vec::new();
        loop {
            self.skip_ws();
            if self.eat("]") {
                break;
            }
            let item_pos = self.pos;
            let item = match self.peek() {
                None => return Err(self.error_at(start, "this `[` is not closed")),
                Some(q @ ('"' | '\'')) => Lit::Str(self.parse_string(q)?.into()),
                Some('[') => return Err(self.error("lists do not nest")),
                Some(',') => return Err(self.error("expected a list item before `,`")),
                Some(c @ ('(' | ')')) => return Err(self.error(format!("unexpected `{c}` in a list"))),
                Some(_) => match self.take(is_bare_char) {
                    "true" => Lit::Bool(true),
                    "false" => Lit::Bool(false),
                    "null" => Lit::Null,
                    word => parse_number(word).map_or_else(|| Lit::Str(word.into()), Lit::Num),
                },
            };
            items.push(item);
            self.skip_ws();
            if self.eat(",") {
                continue;
            }
            if self.eat("]") {
                break;
            }
            return Err(match self.peek() {
                None => self.error_at(start, "this `[` is not closed"),
                Some(_) => self.error_at(item_pos, "expected `,` or `]` after this list item"),
            });
        }
        Ok(Expr::List(items.into()))
    }

    /// A quoted string starting at the current position (at `quote`).
    fn parse_string(&mut self, quote: char) -> Result<String, RuleError> {
        let start = self.pos;
        self.bump();
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(self.error_at(start, "this string is not closed"));
            };
            if c == quote {
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let esc_pos = self.pos - 1;
            match self.bump() {
                None => return Err(self.error_at(start, "this string is not closed")),
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(c @ ('\\' | '"' | '\'')) => out.push(c),
                Some('u') => {
                    let bad = |p: &Self| p.error_at(esc_pos, "expected `\\u{...}` with 1 to 6 hex digits");
                    if !self.eat("{") {
                        return Err(bad(self));
                    }
                    let hex = self.take(|c| c.is_ascii_hexdigit());
                    if hex.is_empty() || hex.len() > 6 || !self.eat("}") {
                        return Err(bad(self));
                    }
                    match u32::from_str_radix(hex, 16).ok().and_then(char::from_u32) {
                        Some(ch) => out.push(ch),
                        None => return Err(self.error_at(esc_pos, format!("`\\u{{{hex}}}` is not a character"))),
                    }
                }
                // Any other escape is kept as written, so regular expressions read naturally: "\d+".
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
            }
        }
    }
}

fn is_null_literal(e: &Expr) -> bool {
    matches!(e, Expr::Lit(Lit::Null))
}

fn null_message(op: Op) -> String {
    format!("`{}` with null is never true: null compares only with `==` and `!=`", op.name())
}

fn reject_null_literal(e: &Expr, op: Op) -> Result<(), String> {
    if is_null_literal(e) { Err(null_message(op)) } else { Ok(()) }
}

/// Compiles a `matches` pattern to an anchored, size-limited regex.
fn compile_regex(pattern: &str) -> Result<Regex, String> {
    let build = |p: &str| RegexBuilder::new(p).size_limit(REGEX_SIZE_LIMIT).dfa_size_limit(REGEX_SIZE_LIMIT).build();
    // Checked alone first: a valid pattern has balanced groups, so wrapping it cannot change what it means.
    build(pattern).map_err(regex_message)?;
    build(&format!("^(?:{pattern})$")).map_err(regex_message)
}

fn regex_message(e: regex::Error) -> String {
    let text = e.to_string();
    let detail = text.lines().find_map(|l| l.strip_prefix("error: ")).unwrap_or(&text).trim().to_string();
    format!("invalid regular expression: {}", detail.replace('\n', " "))
}
