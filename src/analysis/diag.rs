//! User-facing diagnostics: a code, a severity, a primary span with a label, secondary spans (such
//! as the call sites of a block), notes and a help line. Rendered rustc-style through `ariadne`, or
//! as JSON objects. Compiler bugs are not diagnostics; they are `InternalError`s or panics.

use super::codes::Code;
use crate::front::ast::Span;
use ariadne::{Config, IndexType, Label, Report, ReportKind, Source};
use serde::Serialize;

/// Whether a diagnostic fails a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The network cannot be built or run.
    Error,
    /// A likely mistake; fails a check only under `--deny-warnings`.
    Warning,
}

/// A user-facing problem with a `.cnn` file (or its weights), pointing into the source.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The code (`E0105`), which `cnnc explain` describes.
    pub code: Code,
    /// One line naming the op and, for shape errors, both shapes.
    pub message: String,
    /// The primary span, underlined.
    pub span: Span,
    /// The text under the primary span.
    pub label: String,
    /// Further spans with their labels (the call sites of a block instance, a first definition).
    pub secondary: Vec<(Span, String)>,
    /// Notes printed after the source.
    pub notes: Vec<String>,
    /// How to fix it, when a fix is known.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error with `code` at `span`.
    pub fn error(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: message.into(),
            span,
            label: String::new(),
            secondary: Vec::new(),
            notes: Vec::new(),
            help: None,
        }
    }

    /// A warning with `code` at `span`.
    pub fn warning(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, span, message) }
    }

    /// Sets the text under the primary span.
    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    /// Sets the help line.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Adds a note.
    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    /// Adds a secondary span with its label.
    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.secondary.push((span, label.into()));
        self
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders the diagnostic the way rustc does: header with code, `file:line:col`, the source
    /// lines with the spans underlined, then notes and help.
    pub fn render(&self, file_name: &str, source: &str, color: bool) -> String {
        let kind = match self.severity {
            Severity::Error => ReportKind::Error,
            Severity::Warning => ReportKind::Warning,
        };
        let clamp = |s: Span| {
            let end = s.end.min(source.len());
            let start = s.start.min(end);
            // A zero-width span (end of file) still needs something to point at.
            if start == end { start..(end + 1).min(source.len().max(start)) } else { start..end }
        };
        let primary = clamp(self.span);
        let config = Config::default().with_index_type(IndexType::Byte).with_color(color);
        let mut report = Report::build(kind, (file_name, primary.clone()))
            .with_code(self.code)
            .with_message(&self.message)
            .with_config(config);
        let label = if self.label.is_empty() { "here".to_string() } else { self.label.clone() };
        // ariadne starts a new snippet whenever a label lies above the previous one; adding the
        // labels in source order keeps them all in one snippet, as rustc shows them.
        let mut labels = vec![(primary, label)];
        labels.extend(self.secondary.iter().map(|(span, text)| (clamp(*span), text.clone())));
        labels.sort_by_key(|(range, _)| range.start);
        for (range, text) in labels {
            report.add_label(Label::new((file_name, range)).with_message(text));
        }
        for note in &self.notes {
            report.add_note(note);
        }
        if let Some(help) = &self.help {
            report.add_help(help);
        }
        let mut out = Vec::new();
        let written = report.finish().write((file_name, Source::from(source)), &mut out);
        match written {
            Ok(()) => String::from_utf8_lossy(&out).into_owned(),
            // ariadne only fails on I/O, which a Vec never raises; keep a plain fallback anyway.
            Err(_) => {
                let (line, col) = LineIndex::new(source).line_col(self.span.start);
                format!("{:?}[{}]: {}\n  --> {file_name}:{line}:{col}\n", kind, self.code, self.message)
            }
        }
    }

    /// The JSON object of `--json` output: severity, code, message, line, column, label, notes, help.
    pub fn to_json(&self, index: &LineIndex) -> serde_json::Value {
        let (line, column) = index.line_col(self.span.start);
        serde_json::json!({
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "line": line,
            "column": column,
            "label": self.label,
            "notes": self.notes,
            "help": self.help,
        })
    }
}

/// Maps byte offsets to 1-based line and column (columns count characters, as editors do).
pub struct LineIndex<'a> {
    source: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    /// Indexes the line starts of `source`.
    pub fn new(source: &'a str) -> LineIndex<'a> {
        // Lines end at `\n`, `\r\n` or a lone `\r`, as the grammar's NEWLINE has it.
        let mut line_starts = vec![0];
        let bytes = source.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
                line_starts.push(i + 1);
            }
        }
        LineIndex { source, line_starts }
    }

    /// The 1-based line and column of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self.source.get(start..offset).map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }
}

/// Sorts diagnostics by position and removes exact repeats: an error inside a block reported
/// once per instance would otherwise print the same message nine times for GoogLeNet.
pub(crate) fn sort_and_dedup(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| (a.span, a.severity, a.code.as_str()).cmp(&(b.span, b.severity, b.code.as_str())));
    diags.dedup_by(|a, b| a.code == b.code && a.span == b.span && a.message == b.message);
}

/// The closest spelling among `candidates`, if one is close enough to be a plausible typo.
pub(crate) fn closest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|&(d, c)| d <= (c.len().max(word.len()) / 3).max(1) || c.starts_with(word))
        .min_by_key(|&(d, c)| (d, c.len()))
        .map(|(_, c)| c)
}

/// "did you mean `x`?" or nothing.
pub(crate) fn did_you_mean<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}
