use std::fmt;

/// A database or Redis URL. Its `Debug` and `Display` mask the password, so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The URL with its secret, for handing to a driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn redacted(&self) -> String {
        let s = &self.0;
        let Some(scheme_end) = s.find("://") else {
            return s.clone();
        };
        let rest = &s[scheme_end + 3..];
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => format!(
                "{}://{}:***{}",
                &s[..scheme_end],
                &authority[..colon],
                &rest[at..]
            ),
            _ => s.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({:?})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords() {
        let u = DatabaseUrl::new("postgres://app:s3cret@db.example:5432/iocloud");
        assert_eq!(u.redacted(), "postgres://app:***@db.example:5432/iocloud");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert!(!format!("{u}").contains("s3cret"));
        let plain = DatabaseUrl::new("sqlite://data/iocloud.db");
        assert_eq!(plain.redacted(), "sqlite://data/iocloud.db");
        let user_only = DatabaseUrl::new("redis://user@127.0.0.1/");
        assert_eq!(user_only.redacted(), "redis://user@127.0.0.1/");
    }
}
