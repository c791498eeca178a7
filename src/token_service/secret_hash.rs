//! Client secrets as the configuration stores them: a PBKDF2-HMAC-SHA256
//! hash in the PHC string format,
//! `$pbkdf2-sha256$i=<iterations>$<salt>$<hash>` (salt and hash in base64
//! without padding), so a copy of the configuration does not reveal a
//! secret.

use std::fmt;
use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

/// Iterations of new hashes. The secrets `hash-secret` generates carry 256
/// random bits and need no stretching; the count protects secrets that
/// people chose themselves.
pub const ITERATIONS: u32 = 100_000;
/// Minimum and maximum iterations of a configured hash.
const MIN_ITERATIONS: u32 = 10_000;
const MAX_ITERATIONS: u32 = 10_000_000;
const SALT_BYTES: usize = 16;
const HASH_BYTES: usize = 32;
const PREFIX: &str = "$pbkdf2-sha256$i=";

/// A parsed client secret hash. `Debug` shows the iteration count only.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretHash")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl SecretHash {
    /// Parses the PHC string. The error names what was expected and never
    /// contains the input, which may be a plain secret written by mistake.
    pub fn parse(text: &[u8]) -> Result<SecretHash, &'static str> {
        const EXPECTED: &str = "a hash of the form $pbkdf2-sha256$i=<iterations>$<salt>$<hash>";
        let text = std::str::from_utf8(text).map_err(|_| EXPECTED)?.trim();
        let rest = text.strip_prefix(PREFIX).ok_or(EXPECTED)?;
        let mut parts = rest.split('$');
        let (Some(iterations), Some(salt), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(EXPECTED);
        };
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .filter(|i| (MIN_ITERATIONS..=MAX_ITERATIONS).contains(i))
            .and_then(NonZeroU32::new)
            .ok_or("a hash with 10000 to 10000000 iterations")?;
        let salt = STANDARD_NO_PAD.decode(salt).map_err(|_| EXPECTED)?;
        let hash = STANDARD_NO_PAD.decode(hash).map_err(|_| EXPECTED)?;
        if salt.len() < SALT_BYTES || hash.len() != HASH_BYTES {
            return Err("a hash with a salt of at least 16 bytes and a 32-byte hash");
        }
        Ok(SecretHash {
            iterations,
            salt,
            hash,
        })
    }

    /// Hashes a secret with a fresh random salt.
    pub fn create(secret: &[u8], iterations: u32) -> SecretHash {
        let mut salt = vec![0u8; SALT_BYTES];
        SystemRandom::new()
            .fill(&mut salt)
            .expect("the system random source works");
        let iterations = NonZeroU32::new(iterations.max(1)).unwrap();
        let mut hash = vec![0u8; HASH_BYTES];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            secret,
            &mut hash,
        );
        SecretHash {
            iterations,
            salt,
            hash,
        }
    }

    /// Checks a presented secret in constant time.
    pub fn verify(&self, secret: &[u8]) -> bool {
        pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            self.iterations,
            &self.salt,
            secret,
            &self.hash,
        )
        .is_ok()
    }

    /// Returns the PHC string to store.
    pub fn to_phc(&self) -> String {
        format!(
            "{PREFIX}{}${}${}",
            self.iterations,
            STANDARD_NO_PAD.encode(&self.salt),
            STANDARD_NO_PAD.encode(&self.hash)
        )
    }
}

/// Generates a client secret of 32 random bytes, base64url without padding
/// (43 characters).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_round_trip_verifies_only_the_secret() {
        let hash = SecretHash::create(b"client-secret-1", MIN_ITERATIONS);
        let parsed = SecretHash::parse(hash.to_phc().as_bytes()).unwrap();

        assert_eq!(parsed, hash);
        assert!(parsed.verify(b"client-secret-1"));
        assert!(!parsed.verify(b"client-secret-2"));
        assert!(!parsed.verify(b""));
    }

    #[test]
    fn malformed_hashes_rejected_without_echo() {
        let good = SecretHash::create(b"s", MIN_ITERATIONS).to_phc();
        let salt_and_hash = good.split_once("i=10000$").unwrap().1.to_string();
        // (description, text)
        let cases = [
            ("plain secret", "correct-horse-battery-staple".to_string()),
            (
                "other algorithm",
                good.replace("pbkdf2-sha256", "pbkdf2-sha1"),
            ),
            (
                "too few iterations",
                format!("{PREFIX}1000${salt_and_hash}"),
            ),
            ("missing hash", good.rsplit_once('$').unwrap().0.to_string()),
            ("extra field", format!("{good}$x")),
            (
                "short salt",
                format!("{PREFIX}10000$AAAA${}", good.rsplit_once('$').unwrap().1),
            ),
        ];
        for (description, text) in cases {
            let error = SecretHash::parse(text.as_bytes()).unwrap_err();
            assert!(
                !error.contains(&text),
                "{description}: the error echoes the input"
            );
        }
    }

    #[test]
    fn debug_hides_salt_and_hash() {
        let hash = SecretHash::create(b"s", MIN_ITERATIONS);
        let printed = format!("{hash:?}");
        assert_eq!(printed, "SecretHash { iterations: 10000, .. }");
    }
}
