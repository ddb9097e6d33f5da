//! The List Handles body decoder (what our client reads from Azure Files or any server).
//! Invariant beyond "no panic": whatever it accepts, our encoder writes back as a body it
//! accepts again, with the same handles in the same order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use share_hygiene::protocol::{ServiceVersion, decode_list, encode_list};

fuzz_target!(|body: &[u8]| {
    let Ok(list) = decode_list(body) else { return };
    let mut out = Vec::new();
    encode_list(
        &mut out,
        ServiceVersion::DEFAULT,
        list.marker.as_deref(),
        list.max_results,
        &list.handles,
        list.next_marker.as_ref(),
    );
    let again = decode_list(&out).expect("our own encoding decodes");
    assert_eq!(again.handles.len(), list.handles.len());
    for (a, b) in again.handles.iter().zip(&list.handles) {
        assert_eq!(a.handle_id, b.handle_id);
        assert_eq!(a.open_time, b.open_time);
    }
});
