//! User-facing diagnostics: a code, a severity, a primary span with a label, secondary spans (such
//! as the call sites of a block), notes and a help line. Rendered rustc-style through `ariadne`, or
//! as JSON objects. Compiler bugs are not diagnostics; they are `InternalError`s or panics.

use crate::ast::Span;
use ariadne::{Config, IndexType, Label, Report, ReportKind, Source};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub span: Span,
    pub label: String,
    pub secondary: Vec<(Span, String)>,
    pub notes: Vec<String>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn error(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
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

    pub fn warning(code: &'static str, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, span, message) }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.label = label.into();
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    pub fn with_secondary(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.secondary.push((span, label.into()));
        self
    }

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
    pub fn new(source: &'a str) -> LineIndex<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { source, line_starts }
    }

    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.source.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let col = self.source.get(start..offset).map_or(offset - start, |s| s.chars().count());
        (line + 1, col + 1)
    }

    /// The text of the 1-based line `line`, without its newline.
    pub fn line_text(&self, line: usize) -> &'a str {
        let start = self.line_starts.get(line.wrapping_sub(1)).copied().unwrap_or(0);
        let end = self.line_starts.get(line).map_or(self.source.len(), |e| e - 1);
        self.source.get(start..end.max(start)).unwrap_or("").trim_end_matches('\r')
    }
}

/// Sorts diagnostics by position and removes exact repeats: an error inside a block reported
/// once per instance would otherwise print the same message nine times for GoogLeNet.
pub fn sort_and_dedup(diags: &mut Vec<Diagnostic>) {
    diags.sort_by(|a, b| (a.span, a.severity, a.code).cmp(&(b.span, b.severity, b.code)));
    diags.dedup_by(|a, b| a.code == b.code && a.span == b.span && a.message == b.message);
}

/// The closest spelling among `candidates`, if one is close enough to be a plausible typo.
pub fn closest<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|&(d, c)| d <= (c.len().max(word.len()) / 3).max(1) || c.starts_with(word))
        .min_by_key(|&(d, c)| (d, c.len()))
        .map(|(_, c)| c)
}

/// "did you mean `x`?" or nothing.
pub fn did_you_mean<'c>(word: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}
