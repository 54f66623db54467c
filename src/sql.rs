//! The only places where names and values become SQL text: identifier and
//! literal quoting, and the SCRAM-SHA-256 verifier of a role password.

use crate::spec::secret::Secret;

/// Quotes an SQL identifier: wraps it in double quotes and doubles any double
/// quote inside, so the server reads exactly the given name.
pub fn quote_ident(name: &str) -> String {
    let mut quoted = String::with_capacity(name.len() + 2);
    quoted.push('"');
    for character in name.chars() {
        if character == '"' {
            quoted.push('"');
        }
        quoted.push(character);
    }
    quoted.push('"');
    quoted
}

/// Quotes an SQL string literal: wraps it in single quotes and doubles any
/// single quote inside. With `standard_conforming_strings` on (the default
/// since PostgreSQL 9.1) backslashes are not special; a string that holds one
/// is written as an escape string (`E'...'`) with the backslash doubled, so
/// it reads the same under either setting.
pub fn quote_literal(value: &str) -> String {
    let has_backslash = value.contains('\\');
    let mut quoted = String::with_capacity(value.len() + 3);
    if has_backslash {
        quoted.push('E');
    }
    quoted.push('\'');
    for character in value.chars() {
        match character {
            '\'' => quoted.push_str("''"),
            '\\' => quoted.push_str("\\\\"),
            '\0' => {}
            other => quoted.push(other),
        }
    }
    quoted.push('\'');
    quoted
}

/// Builds the SCRAM-SHA-256 verifier of a password, so `CREATE ROLE ...
/// PASSWORD` sends the verifier and never the plaintext to the server.
pub fn scram_verifier(password: &Secret) -> String {
    postgres_protocol::password::scram_sha_256(password.expose().as_bytes())
}

/// Checks a password against a SCRAM-SHA-256 verifier read from `pg_authid`.
pub fn scram_matches(password: &Secret, verifier: &str) -> bool {
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};

    // Format: SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (RFC 5803).
    let Some(rest) = verifier.strip_prefix("SCRAM-SHA-256$") else {
        return false;
    };
    let Some((params, keys)) = rest.split_once('$') else {
        return false;
    };
    let Some((iterations, salt)) = params.split_once(':') else {
        return false;
    };
    let Some((stored_key, _server_key)) = keys.split_once(':') else {
        return false;
    };
    let engine = base64::engine::general_purpose::STANDARD;
    let (Ok(iterations), Ok(salt), Ok(stored_key)) = (
        iterations.parse::<u32>(),
        engine.decode(salt),
        engine.decode(stored_key),
    ) else {
        return false;
    };
    let normalized = stringprep::saslprep(password.expose())
        .map(|text| text.into_owned())
        .unwrap_or_else(|_| password.expose().to_string());
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(normalized.as_bytes(), &salt, iterations, &mut salted);
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(&salted).expect("HMAC takes any key length");
    mac.update(b"Client Key");
    let client_key = mac.finalize().into_bytes();
    Sha256::digest(client_key).as_slice() == stored_key.as_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifier_quotes_doubled() {
        assert_eq!(quote_ident("acme"), "\"acme\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn literal_quotes_and_backslashes() {
        assert_eq!(quote_literal("x'y"), "'x''y'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
    }

    #[test]
    fn scram_verifier_round_trip() {
        let password = Secret::new("correct horse");
        let verifier = scram_verifier(&password);
        assert!(verifier.starts_with("SCRAM-SHA-256$"));
        assert!(!verifier.contains("correct horse"));
        assert!(scram_matches(&password, &verifier));
        assert!(!scram_matches(&Secret::new("wrong"), &verifier));
    }
}
