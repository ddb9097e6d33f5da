//! Seed files (YAML) loaded into a memory store: parsing, then applying. Counts are capped
//! at 64 here so that a large but valid `count` (up to the store's bound of a million handles
//! an entry) spends the run on the parser, not the allocator; the bound itself has its own
//! regression tests (the memory store's unit tests, `tests/server_malformed.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use share_hygiene::handles::memory::{MemoryStore, Seed};

const COUNT_CAP: u32 = 64;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut seed) = Seed::from_yaml(text, "fuzz.yaml") else {
        return;
    };
    for share in &mut seed.shares {
        for h in &mut share.handles {
            h.count = h.count.map(|c| c.min(COUNT_CAP));
        }
    }
    let store = MemoryStore::new(100);
    let now = jiff::Timestamp::from_second(1_800_000_000).unwrap();
    let _ = seed.apply(&store, now);
});
