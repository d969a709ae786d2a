//! Any bytes POSTed to /mcp first pass the envelope check: it must never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = vmcp_gateway::server::envelope::check(data);
});
