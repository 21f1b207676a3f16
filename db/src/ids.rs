//! Opaque, prefixed, time-ordered ids (`org_01j…`): logs and support tickets show what an id is,
//! and ordering by id is ordering by creation, which cursor pagination relies on.

use rand::Rng;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// The last id's time and random part in this process (see [`new_id`]).
static LAST: std::sync::Mutex<(i64, u128)> = std::sync::Mutex::new((0, 0));

const RANDOM_BITS: u32 = 80;

/// A new id: `prefix_` + 10 base-32 characters of milliseconds since the epoch + 16 random ones.
/// Within a process ids only grow: one made in the same millisecond as the last (or while the
/// clock stepped back) takes the last one's time and random part plus one, so two events
/// written one after the other always list in that order.
pub fn new_id(prefix: &str) -> String {
    let now = crate::time::now_micros() / 1000;
    let fresh: u128 = rand::rng().random::<u128>() >> (128 - RANDOM_BITS);
    let (millis, random) = {
        let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
        let next = if now > last.0 || last.1 + 1 >= 1 << RANDOM_BITS {
            (now.max(last.0 + i64::from(last.0 >= now)), fresh)
        } else {
            (last.0, last.1 + 1)
        };
        *last = next;
        next
    };
    let mut out = String::with_capacity(prefix.len() + 27);
    out.push_str(prefix);
    out.push('_');
    for i in (0..10).rev() {
        out.push(ALPHABET[((millis >> (i * 5)) & 31) as usize] as char);
    }
    for i in (0..16).rev() {
        out.push(ALPHABET[((random >> (i * 5)) & 31) as usize] as char);
    }
    out
}

/// True when `s` looks like an id with this prefix. Used to reject garbage before it reaches SQL.
pub fn is_valid(prefix: &str, s: &str) -> bool {
    s.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|body| body.len() == 26 && body.bytes().all(|b| ALPHABET.contains(&b)))
}

/// Declares an id type: a `String` of one prefix's shape, so an organisation's id cannot be
/// handed where a cluster's is expected.
///
/// `parse` is for text from outside (a path, an argument): it answers `None` for anything not
/// shaped like an id of this kind, which the edge turns into 404 before a query runs. Ids read
/// back from storage decode without a check (they were made here), as do those made by `new`.
/// The type reads as `&str` (`Deref`), binds and decodes in SQL as the text it wraps, and
/// serialises as that text.
#[macro_export]
macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident = $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new id of this kind.
            pub fn new() -> Self {
                $name($crate::ids::new_id($prefix))
            }

            /// `text` as an id of this kind, when it is shaped like one.
            pub fn parse(text: &str) -> Option<Self> {
                $crate::ids::is_valid($prefix, text).then(|| $name(text.to_string()))
            }

            /// An id this process stored or was told by a trusted source (a signed token, a
            /// row): not checked again.
            pub fn trusted(text: impl Into<String>) -> Self {
                $name(text.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                &self.0 == other
            }
        }
    };
}

typed_id!(
    /// An organisation's id (`org_…`).
    OrgId = "org"
);
typed_id!(
    /// A user's id (`usr_…`).
    UserId = "usr"
);
typed_id!(
    /// A cluster's id (`clu_…`).
    ClusterId = "clu"
);
typed_id!(
    /// A device's id (`dev_…`).
    DeviceId = "dev"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_ids_parse_only_their_own_kind() {
        let org = OrgId::new();
        assert_eq!(OrgId::parse(&org), Some(org.clone()));
        assert_eq!(
            ClusterId::parse(&org),
            None,
            "an organisation's id is not a cluster's"
        );
        assert_eq!(OrgId::parse("org_1"), None, "not shaped like an id");
        assert_eq!(OrgId::parse("org_' OR 1=1 --"), None);
        assert_eq!(org, org.to_string());
        assert_eq!(serde_json::to_string(&org).unwrap(), format!("\"{org}\""));
    }

    #[test]
    fn ids_are_prefixed_unique_and_ordered() {
        let a = new_id("org");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id("org");
        assert!(a.starts_with("org_") && a.len() == 30);
        assert!(is_valid("org", &a));
        assert!(!is_valid("usr", &a));
        assert!(!is_valid("org", "org_../../etc"));
        assert!(a < b, "later ids sort after earlier ones");
    }

    #[test]
    fn ids_made_in_the_same_millisecond_keep_their_order() {
        let ids: Vec<String> = (0..10_000).map(|_| new_id("evt")).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids.iter().all(|id| is_valid("evt", id)));
    }
}
