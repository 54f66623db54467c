//! Secrets: passwords and URLs with passwords. The plaintext lives only in
//! [`Secret`], which prints as `(sensitive)` and cannot be serialized.

use std::fmt;
use std::path::Path;

use super::model::SecretSource;

/// A secret value. `Debug` and `Display` print `(sensitive)`; there is no
/// `Serialize`, so a secret cannot reach a plan file or JSON output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Returns the plaintext, for building a SCRAM verifier, a Redis ACL rule
    /// or a child process's environment.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("(sensitive)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("(sensitive)")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.0.zeroize();
    }
}

/// Why a secret could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretProblem {
    /// The environment variable is unset or not valid Unicode.
    EnvUnset(String),
    /// The file could not be read.
    FileUnreadable { path: String, reason: String },
    /// The value is empty.
    Empty,
}

impl fmt::Display for SecretProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretProblem::EnvUnset(name) => {
                write!(formatter, "environment variable `{name}` is not set")
            }
            SecretProblem::FileUnreadable { path, reason } => {
                write!(formatter, "cannot read secret file `{path}`: {reason}")
            }
            SecretProblem::Empty => formatter.write_str("the secret is empty"),
        }
    }
}

/// Longest secret file read; a longer one (or a device such as /dev/zero)
/// is an error rather than a hang.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

fn read_limited(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "it is longer than {MAX_SECRET_FILE_BYTES} bytes"
        )));
    }
    Ok(text)
}

impl SecretSource {
    /// Reads the secret from its source; file paths are relative to `base_dir`.
    pub fn resolve(&self, base_dir: &Path) -> Result<Secret, SecretProblem> {
        let value = match self {
            SecretSource::Literal(value) => value.clone(),
            SecretSource::Env { env } => match std::env::var(env) {
                Ok(value) => value,
                Err(_) => return Err(SecretProblem::EnvUnset(env.clone())),
            },
            SecretSource::File { file } => {
                let path = base_dir.join(file);
                match read_limited(&path) {
                    Ok(value) => value
                        .strip_suffix('\n')
                        .unwrap_or(&value)
                        .trim_end_matches('\r')
                        .to_string(),
                    Err(error) => {
                        return Err(SecretProblem::FileUnreadable {
                            path: path.display().to_string(),
                            reason: error.to_string(),
                        });
                    }
                }
            }
        };
        if value.is_empty() {
            return Err(SecretProblem::Empty);
        }
        Ok(Secret(value))
    }

    /// Describes the source without its value, for plans and messages.
    pub fn describe(&self) -> String {
        match self {
            SecretSource::Literal(_) => "literal in the spec".to_string(),
            SecretSource::Env { env } => format!("env {env}"),
            SecretSource::File { file } => format!("file {file}"),
        }
    }

    pub fn is_literal(&self) -> bool {
        matches!(self, SecretSource::Literal(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_and_display_hide_value() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "(sensitive)");
        assert_eq!(format!("{secret}"), "(sensitive)");
        assert_eq!(secret.expose(), "hunter2");
    }

    #[test]
    fn unset_env_reported_by_name() {
        let source = SecretSource::Env {
            env: "TENANTCTL_TEST_SURELY_UNSET_VARIABLE".into(),
        };
        assert_eq!(
            source.resolve(Path::new(".")).unwrap_err(),
            SecretProblem::EnvUnset("TENANTCTL_TEST_SURELY_UNSET_VARIABLE".into())
        );
    }
}
