//! Reload on change: watches the config file (or directory) and reloads once edits have settled.
//!
//! The directory is watched rather than the file, so editors that save by writing a new file and renaming it over
//! the old one (and Kubernetes' symlink swaps of mounted ConfigMaps) are seen too.

use std::path::{Path, PathBuf};
use std::sync::Weak;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::gateway::{Gateway, GatewayHandle};

/// How long the files must stay quiet before a reload: one save often arrives as several events.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

pub(crate) fn spawn(path: PathBuf, handle: GatewayHandle) -> notify::Result<JoinHandle<()>> {
    let gateway: Weak<Gateway> = handle.downgrade();
    drop(handle);
    let (tx, mut rx) = mpsc::channel::<()>(16);
    let watched_dir =
        if path.is_dir() { path.clone() } else { path.parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf) };
    let watched_dir = if watched_dir.as_os_str().is_empty() { PathBuf::from(".") } else { watched_dir };
    let file_name = (!path.is_dir()).then(|| path.file_name().map(|n| n.to_os_string())).flatten();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_) | EventKind::Other) {
            return;
        }
        let relevant = event.paths.iter().any(|p| match &file_name {
            Some(name) => p.file_name() == Some(name.as_os_str()),
            None => matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")),
        });
        if relevant {
            // A full queue means a reload is already due: dropping the event loses nothing.
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(&watched_dir, RecursiveMode::NonRecursive)?;
    Ok(tokio::spawn(async move {
        let _watcher = watcher;
        while rx.recv().await.is_some() {
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_quiet) => break,
                }
            }
            let Some(handle) = GatewayHandle::upgrade(&gateway) else { return };
            tracing::info!("config changed on disk; reloading");
            let _ = tokio::task::spawn_blocking(move || handle.reload()).await;
        }
    }))
}
