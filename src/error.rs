//! The errors a command can end with, and their exit codes.

use crate::spec::error::SpecErrors;

/// An error that ends a command. Each variant carries the value it is about.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Spec(SpecErrors),

    #[error(
        "Cannot connect to database server\n  url: {url}\n  caused by: {}\nVerify database host, port, and credentials.",
        indent(reason)
    )]
    Connect { url: String, reason: String },

    #[error(
        "Cannot connect to Redis server {url}\n  caused by: {reason}\nVerify the Redis URL and credentials."
    )]
    RedisConnect { url: String, reason: String },

    #[error("{context}\n  caused by: {source}")]
    Query {
        context: String,
        source: diesel::result::Error,
    },

    #[error("{message}")]
    Redis { message: String },

    #[error("{message}{}", hint.as_ref().map(|hint| format!("\n  hint: {hint}")).unwrap_or_default())]
    Other {
        message: String,
        hint: Option<String>,
    },

    /// The user declined or interrupted a prompt.
    #[error("{0}")]
    Aborted(String),
}

impl Error {
    pub fn other(message: impl Into<String>) -> Error {
        Error::Other {
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(message: impl Into<String>, hint: impl Into<String>) -> Error {
        Error::Other {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn query(context: impl Into<String>) -> impl FnOnce(diesel::result::Error) -> Error {
        let context = context.into();
        move |source| Error::Query { context, source }
    }

    /// Returns the process exit code: 130 for an interrupted prompt, 1 for
    /// everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Aborted(_) => 130,
            _ => 1,
        }
    }
}

impl From<SpecErrors> for Error {
    fn from(errors: SpecErrors) -> Error {
        Error::Spec(errors)
    }
}

/// Indents the continuation lines of a server message under `caused by:`.
fn indent(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n    ")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
