//! `smbstatus -L -f` text, parsed and joined as the Samba store does on every listing. File
//! names come from any client that can create files, and may hold newlines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use share_hygiene::handles::samba::fuzzing;

const TESTPARM: &str = "[data]\n\tpath = /srv/data\n[spaced]\n\tpath = /srv/da   ta\n";

fuzz_target!(|locks: &[u8]| {
    let _ = fuzzing::listings(TESTPARM, locks, b"", b"{}");
});
