//! Cursor pagination of the catalogue's lists. Cursors are opaque to
//! clients; inside they are an offset.

use rmcp::model::ErrorData;

const PREFIX: &str = "o";

/// One page of `items` starting at `cursor`, and the cursor of the next page.
pub fn page<T: Clone>(
    items: &[T],
    cursor: Option<&str>,
    size: usize,
) -> Result<(Vec<T>, Option<String>), ErrorData> {
    let start = match cursor {
        None => 0,
        Some(cursor) => cursor
            .strip_prefix(PREFIX)
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|&n| n <= items.len())
            .ok_or_else(|| ErrorData::invalid_params("invalid or expired cursor", None))?,
    };
    let end = start.saturating_add(size.max(1)).min(items.len());
    let next = (end < items.len()).then(|| format!("{PREFIX}{end}"));
    Ok((items[start..end].to_vec(), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_every_item_exactly_once() {
        let items: Vec<u32> = (0..25).collect();
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let (chunk, next) = page(&items, cursor.as_deref(), 10).expect("valid cursor");
            seen.extend(chunk);
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, items);
    }

    #[test]
    fn rejects_foreign_cursors() {
        let items = [1, 2, 3];
        for bad in ["", "x", "o-1", "o99", "o1.5"] {
            assert!(page(&items, Some(bad), 2).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn empty_list_has_no_next_page() {
        let (chunk, next) = page::<u8>(&[], None, 10).expect("valid");
        assert!(chunk.is_empty() && next.is_none());
    }
}
