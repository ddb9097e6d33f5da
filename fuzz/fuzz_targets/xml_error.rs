//! The storage error body decoder (what our client reads on any non-2xx answer), with the
//! status taken from the first two bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use share_hygiene::protocol::decode_error;

fuzz_target!(|data: &[u8]| {
    let (status, body) = match data {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => (400, data),
    };
    if let Some(err) = decode_error(status, body) {
        let _ = err.to_string();
        let _ = err.is_transient();
    }
});
