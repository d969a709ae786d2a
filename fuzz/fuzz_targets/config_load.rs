//! Any text given as a config file yields a config or located errors, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = vmcp_config::load_str(text, "fuzz.yaml");
    }
});
