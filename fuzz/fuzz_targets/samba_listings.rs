//! All three tools' output at once (`smbstatus -L -f`, `net rpc file`, `smbstatus -p --json`)
//! with the shares of a `testparm -s` text, parsed and joined into one snapshot, then walked
//! as a listing and a close would walk it. The input holds the four texts separated by lines
//! of `====`, in that order: testparm, locks, netfile, sessions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use share_hygiene::handles::samba::fuzzing;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split("\n====\n");
    let testparm = parts.next().unwrap_or("");
    let locks = parts.next().unwrap_or("");
    let netfile = parts.next().unwrap_or("");
    let sessions = parts.next().unwrap_or("{}");
    let _ = fuzzing::listings(
        testparm,
        locks.as_bytes(),
        netfile.as_bytes(),
        sessions.as_bytes(),
    );
});
