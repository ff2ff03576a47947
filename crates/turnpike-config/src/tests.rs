//! Tests of the whole loading pipeline, one module per behaviour area.

mod deserialize;
mod files;
mod parsing;
mod render;
mod substitution;
mod units;

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::{ByteSize, ConfigError, Duration, Loaded, Spanned, load_str};

/// A small config shaped like the gateway's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    upstreams: BTreeMap<String, Upstream>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Route {
    id: Spanned<String>,
    upstream: Spanned<String>,
    #[serde(default)]
    timeout: Option<Duration>,
    #[serde(default, rename = "match")]
    matcher: Option<Match>,
    #[serde(default)]
    policies: Vec<Policy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Match {
    path: String,
    #[serde(default)]
    methods: Vec<Method>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "UPPERCASE")]
enum Method {
    Get,
    Post,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Upstream {
    endpoints: Vec<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    max_body: Option<ByteSize>,
}

/// Externally tagged: `cors`, `rate_limit: {..}`, `headers: {..}`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Policy {
    Cors,
    RateLimit { requests: u32, per: Duration },
    Headers(BTreeMap<String, String>),
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn load<T: DeserializeOwned>(text: &str) -> Loaded<T> {
    load_str("config.yaml", text, FsPath::new("."), &no_env)
}

fn load_env<T: DeserializeOwned>(text: &str, vars: &[(&str, &str)]) -> Loaded<T> {
    let vars: BTreeMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    load_str("config.yaml", text, FsPath::new("."), &|name| vars.get(name).cloned())
}

/// `line:col path: message` for each error, for compact assertions.
fn brief(errors: &[ConfigError]) -> Vec<String> {
    errors
        .iter()
        .map(|e| match e.span {
            Some(s) => format!("{}:{} {}: {}", s.line, s.col, e.path, e.message),
            None => format!("- {}: {}", e.path, e.message),
        })
        .collect()
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("turnpike-config-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
