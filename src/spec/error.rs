//! Errors found in a spec file, each with the file, line and column.

use std::fmt;

use super::load::Position;

/// One problem in a spec file.
#[derive(Debug, Clone)]
pub struct SpecError {
    pub origin: String,
    pub position: Option<Position>,
    pub message: String,
    /// Lines printed after the location, such as `  hint: ...`.
    pub notes: Vec<String>,
}

impl SpecError {
    /// Builds an error that points at a line and column of the file.
    pub fn at(origin: &str, position: Position, message: impl Into<String>) -> SpecError {
        SpecError {
            origin: origin.to_string(),
            position: Some(position),
            message: message.into(),
            notes: Vec::new(),
        }
    }

    /// Builds an error about the file as a whole.
    pub fn plain(origin: &str, message: impl Into<String>) -> SpecError {
        SpecError {
            origin: origin.to_string(),
            position: None,
            message: message.into(),
            notes: Vec::new(),
        }
    }

    /// Adds a `hint:` line that tells the user what to do next.
    pub fn with_hint(mut self, hint: impl Into<String>) -> SpecError {
        self.notes.push(format!("  hint: {}", hint.into()));
        self
    }

    /// Adds a line printed as it is.
    pub fn with_note(mut self, note: impl Into<String>) -> SpecError {
        self.notes.push(note.into());
        self
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Error: {}\n  --> {}", self.message, self.origin)?;
        if let Some(position) = self.position {
            write!(formatter, ":{}:{}", position.line, position.column)?;
        }
        for note in &self.notes {
            write!(formatter, "\n{note}")?;
        }
        Ok(())
    }
}

/// Every problem found in one spec file, in file order.
#[derive(Debug, Clone, Default)]
pub struct SpecErrors(pub Vec<SpecError>);

impl From<SpecError> for SpecErrors {
    fn from(error: SpecError) -> SpecErrors {
        SpecErrors(vec![error])
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(formatter)?;
            }
            write!(formatter, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}
