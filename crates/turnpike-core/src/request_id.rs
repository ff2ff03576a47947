//! `RequestId`: the id that follows a request through logs, errors and upstreams.

use std::cell::Cell;
use std::hash::{BuildHasher, RandomState};

use http::HeaderValue;

/// A request id, ready to be sent as a header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

/// The longest request id accepted from a client.
pub const MAX_LEN: usize = 128;

impl RequestId {
    /// A new random id in UUID version 4 form (`8-4-4-4-12` lowercase hex).
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&random_u64().to_be_bytes());
        bytes[8..].copy_from_slice(&random_u64().to_be_bytes());
        // Version 4, variant 10xx, as RFC 9562 lays out.
        bytes[6] = (bytes[6] & 0x0F) | 0x40;
        bytes[8] = (bytes[8] & 0x3F) | 0x80;
        let mut out = [b'-'; 36];
        // Byte i of the id goes to text position POS[i]; the dashes stay where they are.
        const POS: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for (byte, pos) in bytes.iter().zip(POS) {
            out[pos] = HEX[usize::from(byte >> 4)];
            out[pos + 1] = HEX[usize::from(byte & 0xF)];
        }
        // Every byte is ASCII hex or '-', so this cannot fail; fall back to a fixed id rather than panic.
        Self(HeaderValue::from_bytes(&out).unwrap_or(HeaderValue::from_static("00000000-0000-4000-8000-000000000000")))
    }

    /// Accepts an id sent by a trusted client if it is short and made of safe characters
    /// (letters, digits and `-_.:@/+=`); anything else is replaced by a generated id.
    pub fn accept(value: &HeaderValue) -> Option<Self> {
        let bytes = value.as_bytes();
        let ok = !bytes.is_empty()
            && bytes.len() <= MAX_LEN
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:@/+=".contains(b));
        ok.then(|| Self(value.clone()))
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The id as text (always ASCII).
    pub fn as_str(&self) -> &str {
        // Both constructors admit ASCII only: the UTF-8 check (with its ASCII fast path) never fails, and costs
        // less than `HeaderValue::to_str`'s byte-by-byte one.
        std::str::from_utf8(self.0.as_bytes()).unwrap_or("")
    }

    /// The id's bytes (ASCII), unchecked.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(RandomState::new().hash_one(std::thread::current().id()) | 1);
}

/// wyrand: fast, good enough for ids that must be unique, not secret (request, trace and span ids).
pub fn random_u64() -> u64 {
    RNG.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_uuid_v4_shaped_and_distinct() {
        let a = RequestId::generate();
        let b = RequestId::generate();
        assert_ne!(a, b);
        let s = a.as_str();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn accepts_safe_client_ids_and_refuses_others() {
        assert!(RequestId::accept(&HeaderValue::from_static("abc-123_x.y")).is_some());
        assert!(RequestId::accept(&HeaderValue::from_static("has space")).is_none());
        assert!(RequestId::accept(&HeaderValue::from_static("")).is_none());
        let long = "a".repeat(MAX_LEN + 1);
        assert!(RequestId::accept(&HeaderValue::from_str(&long).unwrap()).is_none());
    }
}
