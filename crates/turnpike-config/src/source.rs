//! Source files and positions: the text every loaded file had, so errors can quote it.

use std::path::{Path as FsPath, PathBuf};

/// Identifies one file in a [`SourceMap`].
///
/// Ids are only meaningful for the map that handed them out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId(pub u32);

/// A region of a source file. Lines and columns are 1-based and count characters, not bytes.
///
/// `end_line`/`end_col` are exclusive. For a scalar that fits on one line they mark the end of its
/// text; for anything else (collections, multi-line scalars) the span covers one character.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span {
    /// The file the region is in.
    pub file: FileId,
    /// First line (1-based).
    pub line: u32,
    /// First column (1-based, in characters).
    pub col: u32,
    /// Line of the end (1-based).
    pub end_line: u32,
    /// Column just past the end (1-based, in characters).
    pub end_col: u32,
}

impl Span {
    /// A one-character span at `line:col`.
    pub fn point(file: FileId, line: u32, col: u32) -> Self {
        Span { file, line, col, end_line: line, end_col: col + 1 }
    }

    /// Number of characters to underline when the span is shown under its line: the span's
    /// width when it ends on the same line, else 1.
    pub fn width(&self) -> u32 {
        if self.end_line == self.line && self.end_col > self.col { self.end_col - self.col } else { 1 }
    }
}

struct SourceFile {
    name: String,
    text: String,
    base_dir: PathBuf,
    line_starts: Vec<usize>,
}

/// Every file that was read for one load: its display name, full text and the directory that
/// relative `${file:..}` references in it are resolved against.
#[derive(Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl std::fmt::Debug for SourceMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.files.iter().map(|file| &file.name)).finish()
    }
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file and returns its id. A leading byte-order mark is dropped from `text`.
    pub fn add(&mut self, name: impl Into<String>, text: impl Into<String>, base_dir: impl Into<PathBuf>) -> FileId {
        let mut text: String = text.into();
        if text.starts_with('\u{feff}') {
            text.drain(..'\u{feff}'.len_utf8());
        }
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        let id = FileId(u32::try_from(self.files.len()).unwrap_or(u32::MAX));
        self.files.push(SourceFile { name: name.into(), text, base_dir: base_dir.into(), line_starts });
        id
    }

    /// The display name of a file (the path as it was given), or `"<unknown>"` for a foreign id.
    pub fn name(&self, id: FileId) -> &str {
        self.file(id).map_or("<unknown>", |f| f.name.as_str())
    }

    /// The full text of a file (without byte-order mark).
    pub fn text(&self, id: FileId) -> Option<&str> {
        self.file(id).map(|f| f.text.as_str())
    }

    /// The directory `${file:..}` paths in this file are relative to.
    pub fn base_dir(&self, id: FileId) -> Option<&FsPath> {
        self.file(id).map(|f| f.base_dir.as_path())
    }

    /// Line `n` (1-based) of a file without its line terminator, or `None` past the end.
    pub fn line(&self, id: FileId, n: u32) -> Option<&str> {
        let file = self.file(id)?;
        let idx = usize::try_from(n).ok()?.checked_sub(1)?;
        let start = *file.line_starts.get(idx)?;
        let end = file.line_starts.get(idx + 1).map_or(file.text.len(), |next| next - 1);
        if start > file.text.len() || (start == file.text.len() && idx > 0 && end <= start) {
            return None;
        }
        let line = &file.text[start..end.max(start)];
        Some(line.strip_suffix('\r').unwrap_or(line))
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether no file was added.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Ids of all files, in the order they were added.
    pub fn ids(&self) -> impl Iterator<Item = FileId> + '_ {
        (0..self.files.len()).map(|i| FileId(u32::try_from(i).unwrap_or(u32::MAX)))
    }

    fn file(&self, id: FileId) -> Option<&SourceFile> {
        self.files.get(usize::try_from(id.0).ok()?)
    }
}
