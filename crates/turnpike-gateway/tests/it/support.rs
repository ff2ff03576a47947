//! Helpers shared by the test modules.

use std::path::PathBuf;

/// A scratch directory (certificates, key files, consumer files), removed when dropped.
pub struct Dir(pub PathBuf);

impl Dir {
    /// `turnpike-<name>-<pid>` in the temporary directory, empty.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("turnpike-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// The path of `file` in it, as text for a config.
    pub fn path(&self, file: &str) -> String {
        self.0.join(file).display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
