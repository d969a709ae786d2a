//! Paging through a backend's lists, bounded: a backend that always answers
//! with a `nextCursor`, or with ever more items, is cut off with a clear,
//! sanitized reason instead of being paged without end.

use std::borrow::Cow;
use std::future::Future;

use rmcp::service::ServiceError;

/// Most pages read of one list.
pub const MAX_PAGES: usize = 100;
/// Most items accepted in one list.
pub const MAX_ITEMS: usize = 10_000;

/// Which list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listed {
    /// `tools/list`.
    Tools,
    /// `prompts/list`.
    Prompts,
    /// `resources/list`.
    Resources,
    /// `resources/templates/list`.
    ResourceTemplates,
}

impl Listed {
    fn as_str(self) -> &'static str {
        match self {
            Self::Tools => "tools",
            Self::Prompts => "prompts",
            Self::Resources => "resources",
            Self::ResourceTemplates => "resource templates",
        }
    }
}

/// Why listing a backend's capabilities failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// The request failed or its answer was not a valid list.
    #[error("listing {0} failed")]
    Failed(&'static str, #[source] ServiceError),
    /// More than [`MAX_PAGES`] pages.
    #[error("the {0} list has more than {MAX_PAGES} pages")]
    TooManyPages(&'static str),
    /// More than [`MAX_ITEMS`] items.
    #[error("the {0} list has more than {MAX_ITEMS} items")]
    TooManyItems(&'static str),
    /// Listing took longer than the call timeout.
    #[error("listing capabilities timed out")]
    TimedOut,
}

impl ListError {
    /// Sanitized reason for status: no addresses, no backend text.
    pub fn reason(&self) -> Cow<'static, str> {
        match self {
            Self::Failed(..) => "listing capabilities failed".into(),
            other => other.to_string().into(),
        }
    }

    /// The underlying error, for the log only.
    pub fn detail(&self) -> Option<String> {
        match self {
            Self::Failed(_, err) => Some(err.to_string()),
            _ => None,
        }
    }
}

/// Reads every page of `list`; `fetch(cursor)` returns one page and the
/// next cursor.
pub async fn all<T, F, Fut>(list: Listed, mut fetch: F) -> Result<Vec<T>, ListError>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<String>), ServiceError>>,
{
    let name = list.as_str();
    let mut items = Vec::new();
    let mut cursor = None;
    for _ in 0..MAX_PAGES {
        let (page, next) = fetch(cursor)
            .await
            .map_err(|err| ListError::Failed(name, err))?;
        if items.len().saturating_add(page.len()) > MAX_ITEMS {
            return Err(ListError::TooManyItems(name));
        }
        items.extend(page);
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(items),
        }
    }
    Err(ListError::TooManyPages(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pages_until_no_cursor() {
        let mut calls = 0;
        let items = all(Listed::Tools, |cursor| {
            calls += 1;
            let page = match cursor.as_deref() {
                None => (vec![1, 2], Some("a".to_string())),
                Some("a") => (vec![3], None),
                Some(other) => panic!("unexpected cursor {other}"),
            };
            async move { Ok::<_, ServiceError>(page) }
        })
        .await
        .expect("listed");
        assert_eq!(items, [1, 2, 3]);
        assert_eq!(calls, 2);
    }

    #[tokio::test]
    async fn an_endless_cursor_stops_at_the_page_cap() {
        let mut calls = 0;
        let err = all(Listed::Tools, |_| {
            calls += 1;
            async { Ok::<_, ServiceError>((vec![0u8], Some("again".to_string()))) }
        })
        .await
        .expect_err("capped");
        assert!(matches!(err, ListError::TooManyPages("tools")), "{err:?}");
        assert_eq!(calls, MAX_PAGES);
        assert_eq!(err.reason(), "the tools list has more than 100 pages");
    }

    #[tokio::test]
    async fn too_many_items_stop_early() {
        let err = all(Listed::Prompts, |_| async {
            Ok::<_, ServiceError>((vec![0u8; 4000], Some("more".to_string())))
        })
        .await
        .expect_err("capped");
        assert_eq!(err.reason(), "the prompts list has more than 10000 items");
    }
}
