//! The error a plugin returns across the boundary: `PluginError` and its `ErrorKind`.

use std::fmt;

use abi_stable::{std_types::RString, StableAbi};

/// What kind of failure a [`PluginError`] reports.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The input in the context was missing or malformed.
    InvalidInput,
    /// Something the plugin looked for does not exist.
    NotFound,
    /// The call's context was cancelled.
    Cancelled,
    /// The call's deadline passed.
    DeadlineExceeded,
    /// The plugin panicked; the panic was caught inside the plugin.
    Panicked,
    /// The plugin does not support what was asked (for example an unknown label).
    Unsupported,
    /// Any other failure.
    Other,
}

impl ErrorKind {
    /// A short, stable, snake_case name for the kind, as used in logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::DeadlineExceeded => "deadline_exceeded",
            ErrorKind::Panicked => "panicked",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Other => "other",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error a plugin call returns: a kind and a message.
///
/// Any `std::error::Error` converts into it (with kind [`ErrorKind::Other`], and the messages
/// of its sources joined by `: `), so `?` works in plugin code; [`ResultExt::kind`] picks
/// another kind. For that reason `PluginError` itself does not implement
/// `std::error::Error`; hosts wrap it in their own error type.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    /// What kind of failure this is.
    pub kind: ErrorKind,
    /// A human-readable description.
    pub message: RString,
}

impl PluginError {
    /// Creates an error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        PluginError {
            kind,
            message: RString::from(message.into()),
        }
    }

    /// Shorthand for `PluginError::new(ErrorKind::InvalidInput, message)`.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for `PluginError::new(ErrorKind::NotFound, message)`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for `PluginError::new(ErrorKind::Unsupported, message)`.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }

    /// Shorthand for `PluginError::new(ErrorKind::Other, message)`.
    pub fn other(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, message)
    }

    /// The message as a `&str`.
    pub fn message(&self) -> &str {
        self.message.as_str()
    }

    /// The same error with `context: ` before its message.
    pub fn context(self, context: &str) -> Self {
        PluginError {
            kind: self.kind,
            message: RString::from(format!("{context}: {}", self.message)),
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl<E: std::error::Error> From<E> for PluginError {
    fn from(err: E) -> Self {
        let mut message = err.to_string();
        let mut source = err.source();
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        PluginError::new(ErrorKind::Other, message)
    }
}

/// Attaches an [`ErrorKind`] to a failure, so `?` returns it with that kind instead of
/// [`ErrorKind::Other`]:
///
/// ```
/// use plugin_abi::{ErrorKind, PluginError, ResultExt};
///
/// fn port(text: &str) -> Result<u16, PluginError> {
///     let port = text.parse::<u16>().kind(ErrorKind::InvalidInput)?;
///     Ok(port)
/// }
/// let err = port("http").unwrap_err();
/// assert_eq!(err.kind, ErrorKind::InvalidInput);
/// assert_eq!(err.message(), "invalid digit found in string");
/// ```
pub trait ResultExt<T> {
    /// The error, converted to a [`PluginError`] of `kind` (its message and its sources'
    /// messages kept, joined by `: `).
    fn kind(self, kind: ErrorKind) -> Result<T, PluginError>;

    /// The error, converted to a [`PluginError`] whose message starts with `context`.
    fn context(self, context: &str) -> Result<T, PluginError>;
}

impl<T, E: std::error::Error> ResultExt<T> for Result<T, E> {
    fn kind(self, kind: ErrorKind) -> Result<T, PluginError> {
        self.map_err(|err| PluginError {
            kind,
            ..PluginError::from(err)
        })
    }

    fn context(self, context: &str) -> Result<T, PluginError> {
        self.map_err(|err| PluginError::from(err).context(context))
    }
}

impl<T> ResultExt<T> for Result<T, PluginError> {
    fn kind(self, kind: ErrorKind) -> Result<T, PluginError> {
        self.map_err(|err| PluginError { kind, ..err })
    }

    fn context(self, context: &str) -> Result<T, PluginError> {
        self.map_err(|err| err.context(context))
    }
}
