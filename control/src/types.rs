//! Values parsed at the edge: once one exists, it is valid.

use std::fmt;

use crate::{Error, ErrorCode, Result};

/// A lower-cased email address of a plausible shape (`local@domain.tld`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Email> {
        // ASCII case only: Unicode lowercasing folds look-alikes into ASCII (the Kelvin sign
        // U+212A becomes `k`), so `\u{212A}ate@x.io` would become another person's address.
        let s = raw.trim().to_ascii_lowercase();
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

/// A display name (of a user, an organisation, a key or a device): trimmed, 1..=100
/// characters, and nothing that shows other than it reads ([`check_visible_text`]).
pub fn parse_name(field: &'static str, raw: &str) -> Result<String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(Error::validation(field, "must not be empty"));
    }
    if s.chars().count() > 100 {
        return Err(Error::validation(field, "must be at most 100 characters"));
    }
    check_visible_text(field, s)?;
    Ok(s.to_string())
}

/// Refuses, with 422 `invisible_characters`, text holding characters that make it display
/// other than it reads: bidirectional embeddings, overrides and isolates (which reorder what
/// follows, so `evil\u{202E}gpj.exe` shows as `evilexe.jpg`), zero-width characters and marks
/// (which make two different names look the same), the byte-order mark, and every other
/// control character. Every place that takes a name checks it here, so one list decides.
pub fn check_visible_text(field: &'static str, s: &str) -> Result<()> {
    match s.chars().find(|c| is_invisible(*c)) {
        None => Ok(()),
        Some(c) => Err(Error::Validation {
            field,
            message: format!(
                "must not contain invisible or direction-changing characters (found U+{:04X})",
                u32::from(c)
            ),
            code: ErrorCode::InvisibleCharacters,
        }),
    }
}

fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'                     // Arabic letter mark
            | '\u{200B}'..='\u{200F}'      // zero-width space, joiners; LRM, RLM
            | '\u{202A}'..='\u{202E}'      // embeddings and overrides
            | '\u{2060}'..='\u{2064}'      // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}'      // isolates
            | '\u{FEFF}' // byte-order mark, zero-width no-break space
        )
}

/// An organisation's id given from outside (a path, a body), read once the caller may ask at
/// all: text not shaped like one names no organisation, and answers as an unknown one does
/// (404), before any query runs.
pub fn org_id(text: &str) -> Result<iocloud_db::ids::OrgId> {
    iocloud_db::ids::OrgId::parse(text).ok_or(Error::NotFound("organization"))
}

/// A device's id given from outside (a path), read the same way as [`org_id`]: text not
/// shaped like one names no device and answers 404 before any query runs.
pub fn device_id(text: &str) -> Result<iocloud_db::ids::DeviceId> {
    iocloud_db::ids::DeviceId::parse(text).ok_or(Error::NotFound("device"))
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
            "ada@\u{212A}ey.io",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
        // A look-alike stays itself: it is not folded into the ASCII address it resembles.
        assert_ne!(
            Email::parse("\u{212A}ate@x.io").unwrap().as_str(),
            "kate@x.io"
        );
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
        assert_eq!(
            parse_name("name", "Zürich GPU 東京").unwrap(),
            "Zürich GPU 東京"
        );
        for c in [
            '\u{202A}', '\u{202E}', '\u{2066}', '\u{2069}', '\u{200B}', '\u{200F}', '\u{2060}',
            '\u{FEFF}', '\u{7}', '\u{85}',
        ] {
            let err = parse_name("name", &format!("evil{c}gpj.exe")).unwrap_err();
            assert_eq!(
                err.code(),
                ErrorCode::InvisibleCharacters,
                "U+{:04X}",
                u32::from(c)
            );
        }
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
