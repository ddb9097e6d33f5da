//! `net rpc file` (NetFileEnum) text, parsed and joined with a fixed `smbstatus -L` listing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use share_hygiene::handles::samba::fuzzing;

const TESTPARM: &str = "[data]\n\tpath = /srv/data\n";
const LOCKS: &[u8] = b"Locked files:\n\
Pid          User(ID)   DenyMode   Access      R/W        Oplock           SharePath   Name   Time\n\
------------------------------------------------------------------------------------------------\n\
16476        1001       DENY_NONE  0x120089    RDONLY     LEASE(RWH)       /srv/data   a.txt   Sat Nov 21 05:50:09 2026\n\
16476        1001       DENY_NONE  0x81        RDONLY     NONE             /srv/data   .   Sat Nov 21 05:50:09 2026\n";

fuzz_target!(|netfile: &[u8]| {
    let _ = fuzzing::listings(TESTPARM, LOCKS, netfile, b"{}");
});
