//! `testparm -s` output: the shares a Samba server exports.
#![no_main]

use libfuzzer_sys::fuzz_target;
use share_hygiene::handles::samba::fuzzing;

fuzz_target!(|data: &[u8]| {
    let _ = fuzzing::testparm(&String::from_utf8_lossy(data));
});
