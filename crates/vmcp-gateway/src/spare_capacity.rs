//! Giving back the room a table grew into during a burst.
//!
//! A `HashMap` never shrinks by itself: after 5,000 sessions expire, every
//! per-session table still holds buckets for 5,000 entries, and that memory
//! stays live (so the allocator cannot return it). Tables that follow the
//! session count call [`release_spare_capacity`] after removals.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Capacity below which a table is never shrunk: small tables are cheap,
/// and shrinking them would only cost rehashing.
const FLOOR: usize = 64;

/// Shrinks `map` to twice its length once it is less than a quarter full.
///
/// The gap between the two factors keeps the cost amortised: after a shrink
/// the table must lose half its entries again (or grow back past the new
/// capacity, which is a normal doubling) before it is rehashed again.
pub fn release_spare_capacity<K, V, S>(map: &mut HashMap<K, V, S>)
where
    K: Eq + Hash,
    S: BuildHasher,
{
    if is_sparse(map.len(), map.capacity()) {
        map.shrink_to((map.len() * 2).max(FLOOR));
    }
}

/// Whether a table of `len` entries in room for `capacity` should shrink.
pub fn is_sparse(len: usize, capacity: usize) -> bool {
    capacity > FLOOR && len.saturating_mul(4) < capacity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_emptied_after_a_burst_gives_its_room_back() {
        let mut map: HashMap<u32, [u8; 64]> = (0..10_000).map(|i| (i, [0; 64])).collect();
        let grown = map.capacity();
        for i in 10..10_000 {
            map.remove(&i);
            release_spare_capacity(&mut map);
        }
        assert!(grown >= 10_000);
        assert!(
            map.capacity() <= 2 * FLOOR,
            "capacity {} after emptying",
            map.capacity()
        );
        assert_eq!(map.len(), 10);
    }

    #[test]
    fn small_or_busy_tables_are_left_alone() {
        assert!(!is_sparse(0, FLOOR));
        assert!(!is_sparse(300, 1024));
        assert!(is_sparse(200, 1024));
    }

    #[test]
    fn a_shrunk_table_must_lose_half_its_entries_before_the_next_shrink() {
        for len in (FLOOR..5_000).step_by(2) {
            // Right after a shrink the room is twice the length...
            let room = 2 * len;
            assert!(!is_sparse(len, room));
            // ...and it takes falling to a quarter of it (half the entries) to shrink again.
            assert!(!is_sparse(room / 4, room));
            assert!(is_sparse(room / 4 - 1, room));
        }
    }
}
