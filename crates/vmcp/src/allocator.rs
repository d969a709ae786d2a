//! The process's allocator: jemalloc, with its background purging thread.
//!
//! After a burst (thousands of sessions that then expire, large requests)
//! memory must go back to the system. glibc's allocator keeps freed memory in
//! its per-thread arenas: RSS stayed at its peak after 5,000 sessions expired
//! and grew with each further round (fragmentation). jemalloc returns unused
//! pages after `dirty_decay_ms` (10 s); its background thread does so even in
//! arenas that see no further allocations, which is the idle gateway's case.
//! Numbers: BENCHMARKS.md, "Hardening (issue 9)".

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Starts jemalloc's background purging; without it memory still returns,
/// but only from arenas that are in use again.
pub fn enable_background_purging() {
    if let Err(err) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::debug!("jemalloc background purging unavailable: {err}");
    }
}
