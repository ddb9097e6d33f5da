//! Markers a client sends back (`marker` query parameter, `x-ms-marker` header). Any text must
//! be refused with a 400 unless this codec minted it for the same operation and target; what
//! it mints it opens again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use share_hygiene::handles::{MarkerCodec, MarkerKind};
use share_hygiene::protocol::{HandleId, Marker, Target};

fuzz_target!(|data: &[u8]| {
    let codec = MarkerCodec::new();
    let text = String::from_utf8_lossy(data);
    // The first line names the target, the rest is the marker.
    let (path, marker) = text.split_once('\n').unwrap_or(("dir", &text));
    let target = Target::directory("share", path, true);
    for kind in [MarkerKind::List, MarkerKind::Close] {
        if let Err(e) = codec.open(kind, &target, &Marker::new(marker)) {
            assert_eq!(e.status, 400);
        }
    }
    let id = HandleId(
        data.iter()
            .fold(0u64, |a, &b| a.rotate_left(8) ^ u64::from(b)),
    );
    let minted = codec.mint(MarkerKind::Close, &target, id);
    assert_eq!(codec.open(MarkerKind::Close, &target, &minted), Ok(id));
    assert!(codec.open(MarkerKind::List, &target, &minted).is_err());
});
