//! Values parsed at the edge: once one exists, it is valid.

use std::fmt;

use crate::{Error, Result};

/// A lower-cased email address of a plausible shape (`local@domain.tld`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email> {
        let s = raw.trim().to_lowercase();
        let bad = || Error::validation("email", "is not a valid email address");
        if s.len() > 254 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = s.split_once('@').ok_or_else(bad)?;
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(bad());
        }
        Ok(Email(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A password that meets the policy. Its `Debug` never shows it.
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 10;
    pub const MAX_CHARS: usize = 256;

    pub fn parse(raw: &str) -> Result<Password> {
        let n = raw.chars().count();
        if n < Self::MIN_CHARS {
            return Err(Error::validation(
                "password",
                format!("must be at least {} characters", Self::MIN_CHARS),
            ));
        }
        if n > Self::MAX_CHARS {
            return Err(Error::validation(
                "password",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        if raw.chars().all(|c| c == raw.chars().next().unwrap_or(' ')) {
            return Err(Error::validation(
                "password",
                "must not be one repeated character",
            ));
        }
        Ok(Password(raw.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// A display name (of a user, an organisation or a key): trimmed, 1..=100 characters, no
/// control characters.
pub fn parse_name(field: &'static str, raw: &str) -> Result<String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(Error::validation(field, "must not be empty"));
    }
    if s.chars().count() > 100 {
        return Err(Error::validation(field, "must be at most 100 characters"));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::validation(
            field,
            "must not contain control characters",
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse(" Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@x.io",
            "ada@localhost",
            "a b@x.io",
            "a@x..io",
            "a@-x.io",
            "a@b@c.io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("aaaaaaaaaaaa").is_err());
        assert!(Password::parse(&"x".repeat(300)).is_err());
        let p = Password::parse("correct horse battery").unwrap();
        assert_eq!(format!("{p:?}"), "Password(***)");
    }

    #[test]
    fn names() {
        assert_eq!(parse_name("name", "  Acme  ").unwrap(), "Acme");
        assert!(parse_name("name", "   ").is_err());
        assert!(parse_name("name", "a\u{0}b").is_err());
        assert!(parse_name("name", &"n".repeat(101)).is_err());
    }

    proptest! {
        #[test]
        fn every_simple_address_parses(local in "[a-z0-9._+]{1,20}", host in "[a-z0-9]{1,20}", tld in "[a-z]{2,6}") {
            let raw = format!("{local}@{host}.{tld}");
            let parsed = Email::parse(&raw).unwrap();
            prop_assert_eq!(parsed.as_str(), raw.as_str());
        }
    }
}
