//! The control socket: a Unix socket, reachable only from this machine (mode 0600), through which
//! `turnpike reload` asks a running gateway to reload and gets the outcome back.
//!
//! Protocol: the client writes one command line (`reload`); the gateway answers one JSON line
//! (`{"ok":true,"generation":3}` or `{"ok":false,"error":"...","errors":[...]}`) and closes.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

use crate::gateway::{GatewayHandle, ReloadError};

/// The control socket a gateway started with `config` listens on unless told otherwise: in `$XDG_RUNTIME_DIR`
/// (else the temp dir), named after the config file's absolute path, so `turnpike reload -c FILE` finds the
/// gateway running `FILE`.
pub fn default_path(config: &Path) -> PathBuf {
    let absolute = std::fs::canonicalize(config).unwrap_or_else(|_| config.to_path_buf());
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    absolute.hash(&mut hasher);
    let dir = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    dir.join(format!("turnpike-{:016x}.sock", hasher.finish()))
}

/// Starts serving the control socket at `path` on the current runtime. A stale socket file left by a process that
/// is gone is replaced; a live one (another gateway runs the same config) is an error.
pub async fn serve(path: PathBuf, handle: GatewayHandle) -> std::io::Result<JoinHandle<()>> {
    if path.exists() {
        if UnixStream::connect(&path).await.is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("another gateway already listens on {}", path.display()),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    let weak = handle.downgrade();
    drop(handle);
    Ok(tokio::spawn(async move {
        let _cleanup = RemoveOnDrop(path);
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let Some(handle) = GatewayHandle::upgrade(&weak) else { return };
            tokio::spawn(answer(stream, handle));
        }
    }))
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

async fn answer(stream: UnixStream, handle: GatewayHandle) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    // A command is one short line; a peer that sends more is cut off.
    let mut reader = BufReader::new(read.take(1024));
    let reply = match tokio::time::timeout(std::time::Duration::from_secs(5), reader.read_line(&mut line)).await {
        Ok(Ok(_)) => match line.trim() {
            "reload" => {
                let outcome = tokio::task::spawn_blocking(move || handle.reload()).await;
                match outcome {
                    Ok(Ok(generation)) => serde_json::json!({ "ok": true, "generation": generation }),
                    Ok(Err(ReloadError::Config(report))) => serde_json::json!({
                        "ok": false,
                        "error": report.to_string(),
                        "errors": report.to_json(),
                    }),
                    Ok(Err(other)) => serde_json::json!({ "ok": false, "error": other.to_string() }),
                    Err(_) => serde_json::json!({ "ok": false, "error": "reload task failed" }),
                }
            }
            "status" => {
                let status = handle.reload_status();
                serde_json::json!({
                    "ok": true,
                    "generation": status.generation,
                    "reloads_succeeded": status.succeeded,
                    "reloads_failed": status.failed,
                    "last_error": status.last_error,
                })
            }
            other => serde_json::json!({ "ok": false, "error": format!("unknown command `{other}`") }),
        },
        _ => return,
    };
    let mut bytes = serde_json::to_vec(&reply).unwrap_or_default();
    bytes.push(b'\n');
    let _ = write.write_all(&bytes).await;
}

/// Sends `command` to the gateway listening on `path` and returns its answer.
pub async fn request(path: &Path, command: &str) -> std::io::Result<serde_json::Value> {
    let mut stream = UnixStream::connect(path).await?;
    stream.write_all(format!("{command}\n").as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await?;
    serde_json::from_str(&line).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}
