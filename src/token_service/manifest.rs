//! The key manifest: `keys.json` in the keys directory lists each signing
//! key with the time it starts signing. Every state of a key follows from
//! those times, the token lifetime and the clock skew, so the manifest is
//! the whole rotation state and is never rewritten by the gateway except to
//! create a first key.
//!
//! Keys are ordered by `signs_from`. At time `now` a key is
//! - `next` while `now < signs_from`: published, not signing;
//! - `active` from `signs_from` until its successor's `signs_from`;
//! - `retiring` after that, until every token it signed has expired:
//!   published for `token_ttl + clock_skew + 1s` after it stopped signing;
//! - `expired` after that: no longer published, and `rotate-keys` deletes it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The manifest's file name inside the keys directory.
pub const MANIFEST: &str = "keys.json";
const VERSION: u32 = 1;

/// One signing key as the manifest lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyEntry {
    /// RFC 7638 thumbprint of the public key.
    pub kid: String,
    /// `ES256` or `EdDSA`.
    pub algorithm: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds from which the key signs new tokens.
    pub signs_from: u64,
    /// Whether the key file is encrypted with the keys passphrase.
    #[serde(default)]
    pub encrypted: bool,
}

impl KeyEntry {
    /// Returns the key file's name: `<kid>.pem`.
    pub fn file_name(&self) -> String {
        format!("{}.pem", self.kid)
    }
}

/// The contents of `keys.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub version: u32,
    pub keys: Vec<KeyEntry>,
}

impl Default for Manifest {
    fn default() -> Self {
        Manifest {
            version: VERSION,
            keys: Vec::new(),
        }
    }
}

/// The stage of a key's life at some time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Next,
    Active,
    /// Stopped signing at the given unix second; still published.
    Retiring {
        stopped_at: u64,
    },
    Expired,
}

impl KeyState {
    /// Returns whether the key is in the JWKS and trusted by the gateway.
    pub fn is_published(&self) -> bool {
        !matches!(self, KeyState::Expired)
    }
}

/// Returns how long a retired key stays published after it stopped
/// signing, in seconds.
pub fn retention(token_ttl: Duration, clock_skew: Duration) -> u64 {
    // One more second because `exp` is rounded down to whole seconds.
    token_ttl.as_secs() + u64::from(token_ttl.subsec_nanos() > 0) + clock_skew.as_secs() + 1
}

impl Manifest {
    /// Sorts the keys by `signs_from`, oldest first.
    pub fn sort(&mut self) {
        self.keys.sort_by(|a, b| {
            (a.signs_from, a.created_at, &a.kid).cmp(&(b.signs_from, b.created_at, &b.kid))
        });
    }

    /// Returns the state of each key at `now`, in manifest order (which
    /// [`Manifest::sort`] makes `signs_from` order). `retention` is from
    /// [`retention`].
    pub fn states(&self, now: u64, retention: u64) -> Vec<KeyState> {
        let mut sorted: Vec<usize> = (0..self.keys.len()).collect();
        sorted.sort_by_key(|&i| (self.keys[i].signs_from, self.keys[i].created_at));
        let mut states = vec![KeyState::Expired; self.keys.len()];
        for (position, &index) in sorted.iter().enumerate() {
            let key = &self.keys[index];
            let successor = sorted
                .get(position + 1)
                .map(|&next| self.keys[next].signs_from);
            states[index] = match successor {
                _ if now < key.signs_from => KeyState::Next,
                Some(stopped_at) if stopped_at <= now => {
                    if now < stopped_at.saturating_add(retention) {
                        KeyState::Retiring { stopped_at }
                    } else {
                        KeyState::Expired
                    }
                }
                _ => KeyState::Active,
            };
        }
        states
    }

    /// Returns the index of the key that signs at `now`, if any.
    pub fn active(&self, now: u64, retention: u64) -> Option<usize> {
        self.states(now, retention)
            .iter()
            .position(|state| *state == KeyState::Active)
    }

    /// Removes the expired keys and returns them.
    pub fn remove_expired(&mut self, now: u64, retention: u64) -> Vec<KeyEntry> {
        let states = self.states(now, retention);
        let mut removed = Vec::new();
        let mut kept = Vec::new();
        for (entry, state) in self.keys.drain(..).zip(states) {
            if state == KeyState::Expired {
                removed.push(entry);
            } else {
                kept.push(entry);
            }
        }
        self.keys = kept;
        removed
    }
}

/// Returns the manifest's path in a keys directory.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(MANIFEST)
}

/// Reads the manifest, or `None` when the directory has none yet.
pub fn load(dir: &Path) -> Result<Option<Manifest>, String> {
    let path = path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    let mut manifest: Manifest = serde_json::from_str(&text)
        .map_err(|error| format!("{} is not a valid key manifest: {error}", path.display()))?;
    if manifest.version != VERSION {
        return Err(format!(
            "{} has version {}, expected {VERSION}",
            path.display(),
            manifest.version
        ));
    }
    manifest.sort();
    Ok(Some(manifest))
}

/// Writes the manifest atomically: a temporary file in the same directory,
/// flushed to disk, then renamed over the old one, so a reader sees the old
/// or the new manifest and never a part.
pub fn save(dir: &Path, manifest: &Manifest) -> Result<(), String> {
    let text = serde_json::to_string_pretty(manifest).expect("a manifest serializes");
    write_atomically(&path(dir), text.as_bytes())
}

/// Writes a file atomically with owner-only permissions.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = private_file(&temporary)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    written.map_err(|error| {
        let _ = std::fs::remove_file(&temporary);
        format!("cannot write {}: {error}", path.display())
    })
}

fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kid: &str, signs_from: u64) -> KeyEntry {
        KeyEntry {
            kid: kid.into(),
            algorithm: "ES256".into(),
            created_at: signs_from.saturating_sub(100),
            signs_from,
            encrypted: false,
        }
    }

    fn manifest(keys: &[(&str, u64)]) -> Manifest {
        let mut manifest = Manifest {
            version: VERSION,
            keys: keys.iter().map(|(kid, at)| entry(kid, *at)).collect(),
        };
        manifest.sort();
        manifest
    }

    #[test]
    fn key_states_through_a_rotation() {
        // Key a signs from 1000, key b from 2000; retention is 400s.
        let keys = manifest(&[("b", 2000), ("a", 1000)]);
        let retention = 400;
        // (description, now, state of a, state of b)
        let cases = [
            (
                "a alone before b is due",
                1500,
                KeyState::Active,
                KeyState::Next,
            ),
            (
                "b published a second before it signs",
                1999,
                KeyState::Active,
                KeyState::Next,
            ),
            (
                "b signs, a retires",
                2000,
                KeyState::Retiring { stopped_at: 2000 },
                KeyState::Active,
            ),
            (
                "a still published a second before retention ends",
                2399,
                KeyState::Retiring { stopped_at: 2000 },
                KeyState::Active,
            ),
            (
                "a expired after retention",
                2400,
                KeyState::Expired,
                KeyState::Active,
            ),
        ];
        for (description, now, a, b) in cases {
            let states = keys.states(now, retention);
            assert_eq!(keys.keys[0].kid, "a");
            assert_eq!(states, vec![a, b], "{description}");
        }
    }

    #[test]
    fn only_one_key_is_active() {
        let keys = manifest(&[("a", 1000), ("b", 2000), ("c", 3000)]);

        assert_eq!(keys.active(999, 60), None);
        assert_eq!(keys.active(1000, 60), Some(0));
        assert_eq!(keys.active(2500, 60), Some(1));
        assert_eq!(keys.active(9999, 60), Some(2));
    }

    #[test]
    fn expired_keys_removed() {
        let mut keys = manifest(&[("a", 1000), ("b", 2000), ("c", 3000)]);

        let removed = keys.remove_expired(3100, 60);

        let removed: Vec<_> = removed.iter().map(|e| e.kid.as_str()).collect();
        let kept: Vec<_> = keys.keys.iter().map(|e| e.kid.as_str()).collect();
        assert_eq!(removed, vec!["a", "b"]);
        assert_eq!(kept, vec!["c"]);
    }

    #[test]
    fn retention_covers_ttl_skew_and_rounding() {
        assert_eq!(
            retention(Duration::from_secs(300), Duration::from_secs(30)),
            331
        );
        assert_eq!(retention(Duration::from_millis(1500), Duration::ZERO), 3);
    }

    #[test]
    fn manifest_saved_and_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let keys = manifest(&[("b", 2000), ("a", 1000)]);

        assert_eq!(load(dir.path()).unwrap(), None);
        save(dir.path(), &keys).unwrap();

        assert_eq!(load(dir.path()).unwrap(), Some(keys));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from(MANIFEST)]);
    }

    #[test]
    fn other_manifest_version_rejected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(path(dir.path()), r#"{"version": 2, "keys": []}"#).unwrap();

        let error = load(dir.path()).unwrap_err();

        assert!(error.ends_with("has version 2, expected 1"), "{error}");
    }
}
