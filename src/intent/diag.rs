//! Diagnostics: a problem in an intent file, with where it is and a caret.
//!
//! Rendered like a compiler's:
//!
//! ```text
//! error: template: '(' is never closed
//!   --> intents/en/alarms.yaml:12:22
//!    |
//! 12 |           - "set an alarm (for {time}"
//!    |                           ^
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use super::yaml::Pos;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; the files still load.
    Warning,
    /// The definition it is in is left out.
    Error,
}

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (characters).
    pub col: usize,
    /// What is wrong.
    pub message: String,
    /// The source line, for the caret display.
    #[serde(skip)]
    pub line_text: String,
}

impl Diagnostic {
    /// Makes a diagnostic, taking the source line from `source`.
    pub fn new(severity: Severity, file: &Path, source: &str, pos: Pos, message: String) -> Self {
        let line_text = source
            .lines()
            .nth(pos.line.saturating_sub(1))
            .unwrap_or("")
            .to_string();
        Diagnostic {
            severity,
            file: file.to_path_buf(),
            line: pos.line.max(1),
            col: pos.col.max(1),
            message,
            line_text,
        }
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let number = self.line.to_string();
        let gutter = " ".repeat(number.len());
        writeln!(f, "{label}: {}", self.message)?;
        writeln!(
            f,
            "{gutter}--> {}:{}:{}",
            self.file.display(),
            self.line,
            self.col
        )?;
        if !self.line_text.is_empty() {
            // Tabs are shown as single spaces so the caret lines up.
            let shown: String = self
                .line_text
                .chars()
                .map(|c| if c == '\t' { ' ' } else { c })
                .collect();
            let caret_pad = " ".repeat(self.col.saturating_sub(1).min(shown.chars().count()));
            writeln!(f, "{gutter} |")?;
            writeln!(f, "{number} | {shown}")?;
            write!(f, "{gutter} | {caret_pad}^")?;
        }
        Ok(())
    }
}
