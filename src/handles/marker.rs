//! Markers our stores mint: opaque to clients, tamper-evident, bound to one listing.
//!
//! A marker carries the last handle id a page returned (stores list in handle-id order, so
//! resuming after it never skips or repeats a handle that stays open) and a MAC over that id,
//! the operation and the target, keyed by a secret of this store instance. A marker that was
//! forged, edited, minted by another instance (a restart), or used for another target or
//! operation fails the MAC and is refused with a 400.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::protocol::{HandleId, Marker, StorageError, Target};

const VERSION: u8 = 1;
const MAC_LEN: usize = 12;
const PAYLOAD_LEN: usize = 2 + 8 + MAC_LEN;

/// Which operation a marker continues.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkerKind {
    /// List Handles' `NextMarker`.
    List = b'L' as isize,
    /// Force Close Handles' `x-ms-marker`.
    Close = b'C' as isize,
}

/// Mints and opens markers with a per-instance secret.
pub struct MarkerCodec {
    secret: [u8; 32],
}

impl Default for MarkerCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl MarkerCodec {
    /// A codec with a fresh random secret.
    pub fn new() -> Self {
        use rand::RngCore;
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        Self { secret }
    }

    /// The HMAC over what a marker binds: its kind, the last handle, the share, the path and
    /// the recursion.
    fn mac(&self, kind: MarkerKind, target: &Target, last: HandleId) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(&[VERSION, kind as u8]);
        mac.update(&last.0.to_be_bytes());
        mac.update(target.share.as_bytes());
        mac.update(&[0]);
        mac.update(target.path.as_bytes());
        mac.update(&[0, u8::from(target.is_recursive())]);
        mac
    }

    /// A marker that resumes `kind` on `target` after handle `last`.
    pub fn mint(&self, kind: MarkerKind, target: &Target, last: HandleId) -> Marker {
        let mut payload = Vec::with_capacity(PAYLOAD_LEN);
        payload.extend_from_slice(&[VERSION, kind as u8]);
        payload.extend_from_slice(&last.0.to_be_bytes());
        let full = self.mac(kind, target, last).finalize().into_bytes();
        payload.extend_from_slice(&full[..MAC_LEN]);
        let body = URL_SAFE_NO_PAD.encode(payload);
        // The service's markers look like `1!<length>!<payload>`; ours do too.
        Marker::new(format!("1!{}!{body}", body.len()))
    }

    /// The handle id a marker resumes after, or a 400 naming the marker.
    pub fn open(
        &self,
        kind: MarkerKind,
        target: &Target,
        marker: &Marker,
    ) -> Result<HandleId, StorageError> {
        let refuse = |why: &str| StorageError::invalid_query("marker", marker.as_str(), why);
        let mut parts = marker.as_str().splitn(3, '!');
        let (Some("1"), Some(len), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(refuse("The marker was not issued by this service."));
        };
        if len.parse::<usize>().ok() != Some(body.len()) {
            return Err(refuse("The marker was not issued by this service."));
        }
        let payload = URL_SAFE_NO_PAD
            .decode(body)
            .ok()
            .filter(|p| p.len() == PAYLOAD_LEN && p[0] == VERSION)
            .ok_or_else(|| refuse("The marker was not issued by this service."))?;
        let last = HandleId(u64::from_be_bytes(
            payload[2..10].try_into().expect("8 bytes"),
        ));
        // verify_truncated_left compares in constant time: a marker's MAC must not be
        // guessable byte by byte from how fast the refusal comes.
        if payload[1] != kind as u8
            || self
                .mac(kind, target, last)
                .verify_truncated_left(&payload[10..])
                .is_err()
        {
            return Err(refuse(
                "The marker is stale or belongs to another request: it was issued for another path, operation or service instance.",
            ));
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_misuse() {
        let codec = MarkerCodec::new();
        let dir = Target::directory("s", "a", true);
        let m = codec.mint(MarkerKind::List, &dir, HandleId(42));
        assert!(m.as_str().starts_with("1!"));
        assert_eq!(codec.open(MarkerKind::List, &dir, &m), Ok(HandleId(42)));

        let other_path = Target::directory("s", "b", true);
        let shallow = Target::directory("s", "a", false);
        assert!(codec.open(MarkerKind::List, &other_path, &m).is_err());
        assert!(codec.open(MarkerKind::List, &shallow, &m).is_err());
        assert!(codec.open(MarkerKind::Close, &dir, &m).is_err());
        assert!(
            MarkerCodec::new().open(MarkerKind::List, &dir, &m).is_err(),
            "another instance"
        );
        for forged in [
            "",
            "garbage",
            "1!3!abc",
            "2!30!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            let err = codec
                .open(MarkerKind::List, &dir, &Marker::new(forged))
                .unwrap_err();
            assert_eq!(err.status, 400);
            assert_eq!(err.detail("QueryParameterName"), Some("marker"));
        }
    }
}
