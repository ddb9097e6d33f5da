//! Credentials as users write them (flags, environment, Secrets): connection strings, SAS
//! tokens, account keys, and endpoint and share URLs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use share_hygiene::auth::{AccountKey, ConnectionString, SasToken, parse_query};
use share_hygiene::handles::client::{Endpoint, ShareUrl};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = ConnectionString::parse(text);
    let _ = SasToken::new(text);
    let _ = AccountKey::from_base64(text);
    let _ = parse_query(text);
    if let Ok(e) = Endpoint::parse(text) {
        let _ = e.resource_url("share", "a/b c");
    }
    if let Ok(u) = ShareUrl::parse(text) {
        let _ = u.endpoint.resource_url(&u.share, &u.path);
    }
});
