//! Object identity: a 32-byte id, derived from (namespace, name) or random.

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// Longest object name, in bytes (SPEC §1).
pub const MAX_NAME_BYTES: usize = 1024;

/// The identity of an object within its namespace, shown as 64 lower-case hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 32]);

impl ObjectId {
    /// The id of the object called `name` in `namespace`: the same inputs give the same id on
    /// every node and every run (like `idFromName`).
    pub fn from_name(namespace: &str, name: &str) -> ObjectId {
        let mut h = Sha256::new();
        h.update(b"dotdo/object-id/v1\0");
        h.update((namespace.len() as u64).to_be_bytes());
        h.update(namespace.as_bytes());
        h.update(name.as_bytes());
        ObjectId(h.finalize().into())
    }

    /// A fresh random id (like `newUniqueId`).
    pub fn unique() -> ObjectId {
        ObjectId(rand::random())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn from_bytes(bytes: [u8; 32]) -> ObjectId {
        ObjectId(bytes)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", &self.to_hex()[..12])
    }
}

/// The text was not 64 hex characters.
#[derive(Debug, thiserror::Error)]
#[error("an object id is 64 hexadecimal characters")]
pub struct InvalidObjectId;

impl FromStr for ObjectId {
    type Err = InvalidObjectId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| InvalidObjectId)?;
        Ok(ObjectId(out))
    }
}

/// Checks a namespace: 1–64 characters of `[a-z0-9_-]`, starting with a letter or digit.
pub fn valid_namespace(ns: &str) -> bool {
    !ns.is_empty()
        && ns.len() <= 64
        && ns.as_bytes()[0].is_ascii_alphanumeric()
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Checks an object name: any non-empty UTF-8 string up to 1 KiB.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_NAME_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_from_names_are_stable_and_distinct() {
        let a = ObjectId::from_name("do", "acme");
        assert_eq!(a, ObjectId::from_name("do", "acme"));
        assert_ne!(a, ObjectId::from_name("do", "acme2"));
        assert_ne!(a, ObjectId::from_name("d", "oacme"));
        assert_eq!(a.to_hex().len(), 64);
        assert_eq!(a.to_hex().parse::<ObjectId>().unwrap(), a);
        assert_ne!(ObjectId::unique(), ObjectId::unique());
        assert!("xyz".parse::<ObjectId>().is_err());
    }

    #[test]
    fn namespace_rules() {
        assert!(valid_namespace("do"));
        assert!(valid_namespace("counter-v2"));
        assert!(!valid_namespace("Do"));
        assert!(!valid_namespace("_x"));
        assert!(!valid_namespace(""));
        assert!(valid_name(&"n".repeat(1024)));
        assert!(!valid_name(&"n".repeat(1025)));
    }
}
