//! API keys of consumers: consumers and their keys (declared in the config or in consumer files), keys kept only as
//! SHA-256 digests and compared in constant time, read from a header or (opt-in) a query parameter.
//!
//! A reload compiles a new [`ConsumerSet`]; a key left out of it is refused from the next request on, since the
//! compiled policies of the new snapshot hold only the new set.

mod config;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use turnpike_config::{ConfigError, Node, SourceMap};
use turnpike_core::{Consumer, Identity, IdentitySource};

pub use config::{ApiKeyConfig, ConsumerConfig, KeyConfig, Secret};

use super::token::{percent_decode, strip_query_param};
use super::{AuthFailure, AuthInput, Presented};
use crate::ConfigIssue;

/// The longest API key accepted (bytes); longer ones are refused before hashing.
pub const MAX_KEY_LEN: usize = 256;

/// A SHA-256 digest.
type Digest = [u8; 32];

/// Every consumer, with its keys indexed by their SHA-256 digest and its identity built once.
#[derive(Default)]
pub struct ConsumerSet {
    consumers: HashMap<Arc<str>, Arc<Consumer>>,
    /// The first 8 bytes of a key's digest -> (the whole digest, the identity). The map finds the candidates; the
    /// whole digest is then compared in constant time.
    keys: HashMap<u64, Vec<(Digest, Arc<Identity>)>>,
    key_count: usize,
}

impl fmt::Debug for ConsumerSet {
    // Consumer ids only: never the digests.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<&str> = self.consumers.keys().map(|id| &**id).collect();
        ids.sort_unstable();
        f.debug_struct("ConsumerSet").field("consumers", &ids).field("keys", &self.key_count).finish()
    }
}

/// Where a consumer was declared, for issues.
enum Origin<'a> {
    /// In the config's `consumers`.
    Inline,
    /// In `consumer_files[index]`.
    File { index: usize, root: &'a Node, sources: &'a SourceMap },
}

impl Origin<'_> {
    /// An issue about consumer `ci` (labelled `label`), at `rest` below it (`keys[1].sha256`, or empty).
    fn issue(&self, ci: usize, label: &str, rest: &[turnpike_config::PathSeg], message: &str) -> ConfigIssue {
        match self {
            Origin::Inline => {
                let mut path = format!("consumers[{label}]");
                for seg in rest {
                    match seg {
                        turnpike_config::PathSeg::Key(k) => {
                            path.push('.');
                            path.push_str(k);
                        }
                        turnpike_config::PathSeg::Index(i) => path.push_str(&format!("[{i}]")),
                    }
                }
                ConfigIssue::new(path, message)
            }
            Origin::File { index, root, sources } => {
                let mut path = turnpike_config::Path::root().index(ci);
                for seg in rest {
                    path.push(seg.clone());
                }
                file_issue(*index, &ConfigError::at(root, &path, message), sources)
            }
        }
    }

    fn describe(&self, ci: usize, label: &str) -> String {
        match self {
            Origin::Inline => format!("consumers[{label}]"),
            Origin::File { index, root, sources } => {
                let error = ConfigError::at(root, &turnpike_config::Path::root().index(ci), "");
                match error.location(sources) {
                    Some(at) => at,
                    None => format!("consumer_files[{index}]"),
                }
            }
        }
    }
}

/// An error found in `consumer_files[index]` as an issue whose message starts with `file:line:col`.
fn file_issue(index: usize, error: &ConfigError, sources: &SourceMap) -> ConfigIssue {
    let mut message = match error.location(sources) {
        Some(at) => format!("{at}: {}", error.message),
        None => error.message.clone(),
    };
    if !error.path.is_empty() {
        message.push_str(&format!(" (at {})", error.path));
    }
    ConfigIssue::new(format!("consumer_files[{index}]"), message)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// SHA-256 of `bytes`.
fn sha256(bytes: &[u8]) -> Digest {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// 64 hexadecimal digits (either case; `:` separators allowed) as a digest.
pub(crate) fn parse_hex_digest(text: &str) -> Option<Digest> {
    let digits: Vec<u8> = text.trim().bytes().filter(|&b| b != b':').collect();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        out[i] = u8::try_from(high << 4 | low).ok()?;
    }
    Some(out)
}

/// Compares two digests in time independent of where they differ.
fn constant_time_eq(a: &Digest, b: &Digest) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

fn bucket(digest: &Digest) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

impl ConsumerSet {
    /// Compiles the consumers declared in the config and those in `files` (each a YAML or JSON list of consumers,
    /// read now: a reload reads them again; relative paths are taken as given, so the gateway resolves them
    /// against the config's directory first).
    ///
    /// Issues: for inline consumers the path is `consumers[acme].keys[1].sha256`; for files it is
    /// `consumer_files[i]` and the message starts with `file:line:col`. Invalid keys and consumers are left out of
    /// the set; duplicate keys (in one consumer or across consumers) and duplicate ids are issues. No message
    /// contains a key or a digest.
    pub fn compile(configs: &[ConsumerConfig], files: &[PathBuf]) -> (ConsumerSet, Vec<ConfigIssue>) {
        let mut builder = Builder::default();
        builder.add_all(configs, &Origin::Inline);
        for (index, file) in files.iter().enumerate() {
            builder.add_file(index, file);
        }
        let Builder { set, issues, .. } = builder;
        (set, issues)
    }

    /// The consumer with `id`.
    pub fn get(&self, id: &str) -> Option<&Arc<Consumer>> {
        self.consumers.get(id)
    }

    /// How many consumers there are.
    pub fn len(&self) -> usize {
        self.consumers.len()
    }

    /// Whether there is no consumer.
    pub fn is_empty(&self) -> bool {
        self.consumers.is_empty()
    }

    /// How many keys there are, over all consumers.
    pub fn key_count(&self) -> usize {
        self.key_count
    }

    /// Every consumer, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Consumer>> {
        self.consumers.values()
    }

    /// The identity of the consumer owning the key with `digest`.
    fn lookup(&self, digest: &Digest) -> Option<&Arc<Identity>> {
        let candidates = self.keys.get(&bucket(digest))?;
        // Every candidate is compared, so the time does not tell which one matched.
        let mut found = None;
        for (stored, identity) in candidates {
            if constant_time_eq(stored, digest) {
                found = Some(identity);
            }
        }
        found
    }
}

#[derive(Default)]
struct Builder {
    set: ConsumerSet,
    issues: Vec<ConfigIssue>,
    /// Where each consumer id and each key digest was declared, for duplicate messages.
    ids: HashMap<String, String>,
    digests: HashMap<Digest, String>,
}

impl Builder {
    fn add_file(&mut self, index: usize, file: &Path) {
        let loaded = turnpike_config::load_path::<Vec<ConsumerConfig>>(file, &|name| std::env::var(name).ok());
        for error in &loaded.errors {
            self.issues.push(file_issue(index, error, &loaded.sources));
        }
        if let (Some(consumers), Some(root)) = (&loaded.value, &loaded.root) {
            self.add_all(consumers, &Origin::File { index, root, sources: &loaded.sources });
        }
    }

    fn add_all(&mut self, configs: &[ConsumerConfig], origin: &Origin<'_>) {
        for (ci, config) in configs.iter().enumerate() {
            self.add(ci, config, origin);
        }
    }

    fn add(&mut self, ci: usize, config: &ConsumerConfig, origin: &Origin<'_>) {
        use turnpike_config::PathSeg::{Index, Key};
        let label = if valid_id(&config.id) { config.id.clone() } else { ci.to_string() };
        if !valid_id(&config.id) {
            let message = "a consumer id is 1 to 128 letters, digits, `.`, `_` or `-`";
            self.issues.push(origin.issue(ci, &label, &[Key("id".into())], message));
            return;
        }
        let here = origin.describe(ci, &label);
        if let Some(first) = self.ids.get(&config.id) {
            let message = format!("consumer `{}` is already declared ({first})", config.id);
            self.issues.push(origin.issue(ci, &label, &[Key("id".into())], &message));
            return;
        }
        self.ids.insert(config.id.clone(), here.clone());

        let consumer = Arc::new(Consumer {
            id: Arc::from(config.id.as_str()),
            name: Arc::from(config.name.as_deref().unwrap_or(&config.id)),
            plan: config.plan.as_deref().map(Arc::from),
            roles: config.roles.iter().map(|r| Arc::from(r.as_str())).collect(),
            metadata: config.metadata.clone(),
        });
        let mut identity = Identity::new(IdentitySource::ApiKey, Some(consumer.id.clone()));
        identity.plan = consumer.plan.clone();
        identity.roles = consumer.roles.clone();
        identity.consumer = Some(consumer.clone());
        let identity = Arc::new(identity);

        for (ki, key) in config.keys.iter().enumerate() {
            let at = |field: Option<&str>| {
                let mut rest = vec![Key("keys".into()), Index(ki)];
                rest.extend(field.map(|f| Key(f.into())));
                rest
            };
            let digest = match (&key.sha256, &key.key) {
                (Some(hex), None) => match parse_hex_digest(hex) {
                    Some(digest) => digest,
                    None => {
                        // The value is not quoted: a key pasted here by mistake must not end up in a log.
                        let message = "`sha256` must be 64 hexadecimal digits (the SHA-256 digest of the key)";
                        self.issues.push(origin.issue(ci, &label, &at(Some("sha256")), message));
                        continue;
                    }
                },
                (None, Some(secret)) => {
                    let text = secret.expose();
                    if text.is_empty() || text.len() > MAX_KEY_LEN {
                        let message = format!("`key` must be 1 to {MAX_KEY_LEN} bytes long");
                        self.issues.push(origin.issue(ci, &label, &at(Some("key")), &message));
                        continue;
                    }
                    sha256(text.as_bytes())
                }
                _ => {
                    let message = "give exactly one of `sha256` and `key`";
                    self.issues.push(origin.issue(ci, &label, &at(None), message));
                    continue;
                }
            };
            let key_here = match origin {
                Origin::Inline => format!("{here}.keys[{ki}]"),
                Origin::File { .. } => format!("{here}, key {ki}"),
            };
            if let Some(first) = self.digests.get(&digest) {
                let message = format!("the same key is already declared ({first})");
                self.issues.push(origin.issue(ci, &label, &at(None), &message));
                continue;
            }
            self.digests.insert(digest, key_here);
            self.set.keys.entry(bucket(&digest)).or_default().push((digest, identity.clone()));
            self.set.key_count += 1;
        }
        self.set.consumers.insert(consumer.id.clone(), consumer);
    }
}

/// A key found in a request: only its digest is kept (the key itself is never stored, logged or formatted), and
/// where it was, for [`ApiKeyAuth::strip`].
#[derive(Clone, PartialEq, Eq)]
pub struct PresentedKey {
    digest: Digest,
    in_header: bool,
    in_query: bool,
}

impl fmt::Debug for PresentedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresentedKey")
            .field("in_header", &self.in_header)
            .field("in_query", &self.in_query)
            .finish_non_exhaustive()
    }
}

/// The compiled `api_key` authentication of a route.
pub struct ApiKeyAuth {
    header: http::HeaderName,
    query: Option<String>,
    forward_key: bool,
    consumers: Arc<ConsumerSet>,
}

impl fmt::Debug for ApiKeyAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyAuth")
            .field("header", &self.header)
            .field("query", &self.query)
            .field("forward_key", &self.forward_key)
            .field("consumers", &self.consumers.len())
            .finish()
    }
}

impl ApiKeyAuth {
    /// Compiles `config` against the snapshot's consumers. Issue paths: `header`, `query`.
    pub fn compile(config: &ApiKeyConfig, consumers: &Arc<ConsumerSet>) -> Result<ApiKeyAuth, Vec<ConfigIssue>> {
        let mut issues = Vec::new();
        let header = match http::HeaderName::from_bytes(config.header.to_ascii_lowercase().as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                issues.push(ConfigIssue::new("header", format!("`{}` is not a header name", config.header)));
                None
            }
        };
        if config.query.as_deref().is_some_and(str::is_empty) {
            issues.push(ConfigIssue::new("query", "the query parameter name is empty"));
        }
        match header {
            Some(header) if issues.is_empty() => Ok(ApiKeyAuth {
                header,
                query: config.query.clone(),
                forward_key: config.forward_key,
                consumers: consumers.clone(),
            }),
            _ => Err(issues),
        }
    }

    /// The header keys are read from.
    pub fn header_name(&self) -> &http::HeaderName {
        &self.header
    }

    /// The query parameter keys may be read from, if any: the gateway removes it from logged URLs too, including
    /// those of requests refused before [`ApiKeyAuth::strip`] runs.
    pub fn query_param(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// Looks for the key. A header given twice, a query parameter given twice with different values, a header
    /// and a query parameter that differ, an empty key and a key over [`MAX_KEY_LEN`] bytes are malformed.
    pub fn presented(&self, input: &AuthInput<'_>) -> Presented<PresentedKey> {
        let from_header = match self.read_header(input) {
            Presented::Absent => None,
            Presented::Present(key) => Some(key),
            Presented::Malformed(why) => return Presented::Malformed(why),
        };
        let from_query = match self.read_query(input) {
            Presented::Absent => None,
            Presented::Present(key) => Some(key),
            Presented::Malformed(why) => return Presented::Malformed(why),
        };
        let digest = match (&from_header, &from_query) {
            (None, None) => return Presented::Absent,
            (Some(h), Some(q)) if *h != q.as_bytes() => {
                return Presented::Malformed("different API keys in the header and the query");
            }
            (Some(key), _) => sha256(key),
            (None, Some(key)) => sha256(key.as_bytes()),
        };
        Presented::Present(PresentedKey { digest, in_header: from_header.is_some(), in_query: from_query.is_some() })
    }

    fn read_header<'a>(&self, input: &AuthInput<'a>) -> Presented<&'a [u8]> {
        let mut values = input.headers.get_all(&self.header).iter();
        let Some(value) = values.next() else { return Presented::Absent };
        if values.next().is_some() {
            return Presented::Malformed("API key header given twice");
        }
        let key = value.as_bytes().trim_ascii();
        match check_len(key.len()) {
            Ok(()) => Presented::Present(key),
            Err(why) => Presented::Malformed(why),
        }
    }

    fn read_query(&self, input: &AuthInput<'_>) -> Presented<String> {
        let (Some(param), Some(query)) = (&self.query, input.uri.query()) else { return Presented::Absent };
        let mut found: Option<String> = None;
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if percent_decode(k) != *param {
                continue;
            }
            if v.len() > MAX_KEY_LEN * 3 {
                return Presented::Malformed("API key too long");
            }
            let v = percent_decode(v);
            match &found {
                Some(existing) if *existing != v => return Presented::Malformed("API key query parameter given twice"),
                _ => found = Some(v),
            }
        }
        match found {
            None => Presented::Absent,
            Some(key) => match check_len(key.len()) {
                Ok(()) => Presented::Present(key),
                Err(why) => Presented::Malformed(why),
            },
        }
    }

    /// Checks a presented key: the consumer's identity (prebuilt, shared), or `Invalid` for an unknown or
    /// revoked key.
    pub fn verify(&self, key: &PresentedKey) -> Result<Arc<Identity>, AuthFailure> {
        self.consumers.lookup(&key.digest).cloned().ok_or(AuthFailure::Invalid("unknown API key"))
    }

    /// Removes the key from the request before it is forwarded: the query parameter always, the header unless
    /// `forward_key` is set.
    pub fn strip(&self, key: &PresentedKey, parts: &mut http::request::Parts) {
        if key.in_header && !self.forward_key {
            parts.headers.remove(&self.header);
        }
        if let Some(param) = &self.query
            && key.in_query
        {
            parts.uri = strip_query_param(&parts.uri, param);
        }
    }

    /// The `WWW-Authenticate` scheme of a refusal.
    pub fn challenge(&self) -> &'static str {
        "ApiKey"
    }
}

/// Whether a key of `len` bytes is acceptable, and why not.
fn check_len(len: usize) -> Result<(), &'static str> {
    match len {
        0 => Err("empty API key"),
        n if n > MAX_KEY_LEN => Err("API key too long"),
        _ => Ok(()),
    }
}
