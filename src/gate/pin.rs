//! The spoken PIN: its stored hash ([`PinHash`], Argon2id) and the
//! lockout's state ([`PinLock`]) that the caller persists.

use chrono::{DateTime, Utc};

/// A PIN stored as an Argon2id hash in the PHC string format
/// (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), made by `voicegate gate
/// hash-pin`. Argon2id is memory-hard: a stolen config file still gives a
/// 4-digit PIN away to an offline search (there are only 10,000), so the
/// lockout is what protects the voice path; the hash makes every guess cost
/// memory and time, and gives nothing to precomputed tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinHash {
    phc: String,
}

/// Why a stored PIN hash was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinHashError {
    /// The `salt$sha256hex` form of earlier versions.
    #[error(
        "this is the old SHA-256 PIN hash format, which is no longer accepted; make a new hash with `voicegate gate hash-pin`"
    )]
    OldFormat,
    /// Not an Argon2 PHC string.
    #[error("not an Argon2 PIN hash (\"$argon2id$...\"); make one with `voicegate gate hash-pin`")]
    Invalid,
}

impl PinHash {
    /// Hashes a PIN with a fresh random salt and the OWASP-recommended
    /// Argon2id parameters (19 MiB, 2 passes, 1 lane).
    pub fn new(pin: &str) -> PinHash {
        use argon2::password_hash::{PasswordHasher, SaltString};
        // 16 random bytes (UUID v4 draws them from the OS).
        let salt_bytes = *uuid::Uuid::new_v4().as_bytes();
        let phc = SaltString::encode_b64(&salt_bytes)
            .ok()
            .and_then(|salt| {
                argon2::Argon2::default()
                    .hash_password(pin.as_bytes(), &salt)
                    .ok()
                    .map(|h| h.to_string())
            })
            // Only reachable if argon2 rejected its own defaults.
            .unwrap_or_default();
        PinHash { phc }
    }

    /// Parses the PHC string stored in the config.
    pub fn parse(text: &str) -> Result<PinHash, PinHashError> {
        let text = text.trim();
        if let Some((salt, hash)) = text.split_once('$')
            && !salt.is_empty()
            && hash.len() == 64
            && hash.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(PinHashError::OldFormat);
        }
        let parsed =
            argon2::password_hash::PasswordHash::new(text).map_err(|_| PinHashError::Invalid)?;
        if !parsed.algorithm.as_str().starts_with("argon2") || parsed.hash.is_none() {
            return Err(PinHashError::Invalid);
        }
        Ok(PinHash {
            phc: text.to_string(),
        })
    }

    /// True if `pin` is the PIN (argon2 compares in constant time).
    pub fn verify(&self, pin: &str) -> bool {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        PasswordHash::new(&self.phc).is_ok_and(|hash| {
            argon2::Argon2::default()
                .verify_password(pin.as_bytes(), &hash)
                .is_ok()
        })
    }
}

impl std::fmt::Display for PinHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.phc)
    }
}

/// The PIN lockout's state, for the caller to persist across restarts
/// (the gate itself does no I/O).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PinLock {
    /// Wrong PINs since the last right one (or the last lock).
    pub failures: u32,
    /// High-stakes actions are refused until then.
    pub locked_until: Option<DateTime<Utc>>,
}
