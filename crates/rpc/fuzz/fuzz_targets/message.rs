//! The message parser on arbitrary text: it returns a message or an error, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = dotdo_rpc::parse_message(text);
    }
});
