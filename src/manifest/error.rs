//! Errors of reading and validating a manifest, with the source text so that the CLI can point
//! at the offending line.

use miette::{Diagnostic, NamedSource, SourceSpan};
use std::path::PathBuf;
use thiserror::Error;

/// A manifest that could not be read, parsed or validated.
#[derive(Debug, Error, Diagnostic)]
pub enum ManifestError {
    /// The file could not be read.
    #[error("cannot read manifest `{}`", path.display())]
    #[diagnostic(code(kdgrid::manifest::read))]
    Read {
        /// The manifest path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// One or more problems, each located in the source.
    #[error("invalid manifest `{}`{}: {} problem{}", path.display(), profile.as_ref().map(|p| format!(" with profile `{p}`")).unwrap_or_default(), problems.len(), if problems.len() == 1 { "" } else { "s" })]
    #[diagnostic(code(kdgrid::manifest::invalid))]
    Invalid {
        /// The manifest path.
        path: PathBuf,
        /// The profile applied, if any.
        profile: Option<String>,
        /// The manifest text, for rendering (shared: keeps the error small).
        #[source_code]
        src: std::sync::Arc<NamedSource<String>>,
        /// Every problem found.
        #[related]
        problems: Vec<Problem>,
    },
}

/// Warnings about a valid manifest, rendered like errors but not failing.
#[derive(Debug, Error, Diagnostic)]
#[error("manifest `{}`{}: {} warning{}", path.display(), profile.as_ref().map(|p| format!(" with profile `{p}`")).unwrap_or_default(), warnings.len(), if warnings.len() == 1 { "" } else { "s" })]
#[diagnostic(code(kdgrid::manifest::warning), severity(Warning))]
pub struct ManifestWarnings {
    /// The manifest path.
    pub path: PathBuf,
    /// The profile applied, if any.
    pub profile: Option<String>,
    /// The manifest text, for rendering.
    #[source_code]
    pub src: NamedSource<String>,
    /// Every warning.
    #[related]
    pub warnings: Vec<Warning>,
}

/// A [`Problem`] that does not fail validation.
#[derive(Debug, Error, Clone)]
#[error(transparent)]
pub struct Warning(pub Problem);

impl Diagnostic for Warning {
    fn severity(&self) -> Option<miette::Severity> {
        Some(miette::Severity::Warning)
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.0.help()
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        self.0.labels()
    }
}

/// One located problem in a manifest.
#[derive(Debug, Error, Diagnostic, Clone)]
#[error("{message}")]
pub struct Problem {
    /// What is wrong, lowercase, literals in backticks.
    pub message: String,
    /// Where in the source the problem is.
    #[label("{label}")]
    pub span: Option<SourceSpan>,
    /// Short text under the caret.
    pub label: String,
    /// A suggestion, e.g. a did-you-mean.
    #[help]
    pub help: Option<String>,
    /// `file:line:column` of the span, for plain-text output and scripts.
    pub location: String,
}

impl ManifestError {
    /// Problems in this error (empty for I/O errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ManifestError::Invalid { problems, .. } => problems,
            ManifestError::Read { .. } => &[],
        }
    }
}

/// Collects problems of one manifest, computing line and column from byte spans.
pub(crate) struct Problems<'a> {
    path: &'a std::path::Path,
    /// The profile applied, named in the error.
    pub(crate) profile: Option<String>,
    text: &'a str,
    list: Vec<Problem>,
}

impl<'a> Problems<'a> {
    pub(crate) fn new(path: &'a std::path::Path, text: &'a str) -> Self {
        Self {
            path,
            profile: None,
            text,
            list: Vec::new(),
        }
    }

    /// Records a problem at `span` (a byte range of the manifest text).
    pub(crate) fn push(
        &mut self,
        span: Option<std::ops::Range<usize>>,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        let message = message.into();
        let (line, col) = span
            .as_ref()
            .map(|s| line_col(self.text, s.start))
            .unwrap_or((1, 1));
        let label = span
            .as_ref()
            .and_then(|s| self.text.get(s.clone()))
            .map(|t| t.lines().next().unwrap_or("").to_string())
            .filter(|t| !t.is_empty())
            .map(|t| format!("here: {}", truncate(&t, 60)))
            .unwrap_or_else(|| "here".into());
        self.list.push(Problem {
            location: format!("{}:{line}:{col}", self.path.display()),
            message,
            span: span.map(|s| SourceSpan::from(s.start..s.end.max(s.start))),
            label,
            help,
        });
    }

    /// The problems collected, for warnings that do not fail.
    pub(crate) fn into_list(self) -> Vec<Problem> {
        self.list
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Turns the collected problems into an error, or `Ok(())` when there are none.
    pub(crate) fn finish(self) -> Result<(), ManifestError> {
        if self.list.is_empty() {
            return Ok(());
        }
        let mut list = self.list;
        // In reading order, whichever check found them.
        list.sort_by_key(|p| p.span.map_or(0, |s| s.offset()));
        Err(ManifestError::Invalid {
            path: self.path.to_path_buf(),
            profile: self.profile,
            src: std::sync::Arc::new(NamedSource::new(
                self.path.display().to_string(),
                self.text.to_string(),
            )),
            problems: list,
        })
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

/// 1-based line and column of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
