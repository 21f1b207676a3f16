//! Cursor pagination. Ids sort by creation time, so a cursor is the last id seen, wrapped so
//! clients treat it as opaque.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::{Error, Result};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

#[derive(Clone, Debug, Default)]
pub struct PageRequest {
    /// Only items after this id.
    pub after: Option<String>,
    pub limit: u32,
}

impl PageRequest {
    /// Parses the `cursor` and `limit` a client sent.
    pub fn parse(cursor: Option<&str>, limit: Option<u32>) -> Result<PageRequest> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 || limit > MAX_LIMIT {
            return Err(Error::validation(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let after = match cursor {
            None | Some("") => None,
            Some(c) => {
                let bad = || Error::validation("cursor", "is not a cursor this API issued");
                let bytes = URL_SAFE_NO_PAD.decode(c).map_err(|_| bad())?;
                let id = String::from_utf8(bytes).map_err(|_| bad())?;
                if id.is_empty()
                    || id.len() > 64
                    || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return Err(bad());
                }
                Some(id)
            }
        };
        Ok(PageRequest { after, limit })
    }

    /// The lower bound for `WHERE id > $n` (the empty string sorts before every id).
    pub fn after_id(&self) -> &str {
        self.after.as_deref().unwrap_or("")
    }

    /// Rows to fetch: one more than the page, to learn whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows ordered by id.
    pub fn from_rows(mut rows: Vec<T>, req: &PageRequest, id_of: impl Fn(&T) -> &str) -> Page<T> {
        let more = rows.len() > req.limit as usize;
        rows.truncate(req.limit as usize);
        let next_cursor = if more {
            rows.last().map(|r| URL_SAFE_NO_PAD.encode(id_of(r)))
        } else {
            None
        };
        Page {
            items: rows,
            next_cursor,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next_cursor: self.next_cursor,
        }
    }
}

// Every list answers with this one shape, named after what it lists (`MemberPage`,
// `ClusterPage`): async-graphql names a generic object through `TypeName`, so a new list needs
// no name of its own here.
#[cfg(feature = "graphql")]
/// One page of a list; pass `nextCursor` as `cursor` for the next.
#[async_graphql::Object(name_type)]
impl<T: async_graphql::OutputType> Page<T> {
    async fn items(&self) -> &[T] {
        &self.items
    }

    async fn next_cursor(&self) -> Option<&str> {
        self.next_cursor.as_deref()
    }
}

#[cfg(feature = "graphql")]
impl<T: async_graphql::OutputType> async_graphql::TypeName for Page<T> {
    fn type_name() -> std::borrow::Cow<'static, str> {
        format!("{}Page", T::type_name()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let req = PageRequest::parse(None, Some(2)).unwrap();
        let page = Page::from_rows(
            vec!["a_1".to_string(), "a_2".into(), "a_3".into()],
            &req,
            |s| s,
        );
        assert_eq!(page.items.len(), 2);
        let next = PageRequest::parse(page.next_cursor.as_deref(), Some(2)).unwrap();
        assert_eq!(next.after_id(), "a_2");
        assert!(PageRequest::parse(Some("!!"), None).is_err());
        assert!(PageRequest::parse(Some(&URL_SAFE_NO_PAD.encode("x' OR 1=1")), None).is_err());
        assert!(PageRequest::parse(None, Some(0)).is_err());
        assert!(PageRequest::parse(None, Some(1000)).is_err());
        let last = Page::from_rows(vec!["a_1".to_string()], &req, |s| s);
        assert!(last.next_cursor.is_none());
    }
}
