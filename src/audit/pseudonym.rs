//! Subject pseudonyms for audit records, erasable per subject.
//!
//! The pseudonym of a subject is HMAC-SHA256 under a random key of its own.
//! That key lives in `<directory>/<tenant>/<name>.key`, where `<name>` is
//! the hex HMAC-SHA256 of the subject under the tenant's random key in
//! `<directory>/<tenant>/tenant.key`. Neither file name nor content contains
//! the subject. Deleting a subject's key file (or the tenant's directory)
//! makes its past pseudonyms impossible to link to the subject again, while
//! the audit log, which holds only the pseudonyms, stays unchanged and its
//! chain still verifies. A subject seen again after that gets a new key and
//! so a new pseudonym.

use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::digest::{digest, SHA256};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Directory of requests without a tenant.
pub const DEFAULT_TENANT: &str = "_default";

/// Name of a tenant's key file inside its directory.
const TENANT_KEY_FILE: &str = "tenant.key";

/// Bytes of every random key.
const KEY_BYTES: usize = 32;

/// Subjects whose pseudonym is kept in memory. The cache is emptied when
/// full, so memory stays bounded whatever the number of subjects.
const MAX_CACHED_SUBJECTS: usize = 100_000;

/// Time a cached pseudonym is used before its key file is checked again.
/// It bounds how long a running gateway keeps using an erased key, and
/// spares the request path a `stat` per record.
pub const KEY_RECHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Pseudonyms of one key directory, with the pseudonyms and tenant keys
/// already read cached in memory.
pub struct Pseudonyms {
    directory: PathBuf,
    /// Pseudonym and key file by SHA-256 of tenant and subject, so the cache
    /// holds no subject in clear.
    subjects: Mutex<HashMap<[u8; 32], Cached>>,
    tenants: Mutex<HashMap<String, Arc<hmac::Key>>>,
    /// Time a cached pseudonym is used before its key file is checked
    /// again, [`KEY_RECHECK_INTERVAL`] unless a test sets another.
    recheck_interval: Duration,
    /// Serialises key creation inside this process. Creation is also safe
    /// across processes: a key file is linked into place only when absent.
    create: Mutex<()>,
}

#[derive(Clone)]
struct Cached {
    pseudonym: String,
    key_file: PathBuf,
    /// When `key_file` was last seen to exist.
    checked: Instant,
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pseudonyms")
            .field("directory", &self.directory)
            .finish_non_exhaustive()
    }
}

impl Pseudonyms {
    /// Uses the keys in `directory`, which is created on first use.
    pub fn new(directory: impl Into<PathBuf>) -> Pseudonyms {
        Pseudonyms {
            directory: directory.into(),
            subjects: Mutex::new(HashMap::new()),
            tenants: Mutex::new(HashMap::new()),
            recheck_interval: KEY_RECHECK_INTERVAL,
            create: Mutex::new(()),
        }
    }

    /// Sets the time a cached pseudonym is used before its key file is
    /// checked again.
    pub fn with_recheck_interval(mut self, interval: Duration) -> Pseudonyms {
        self.recheck_interval = interval;
        self
    }

    /// Returns the cached pseudonym of `subject` while its key file still
    /// exists, checked at most once per recheck interval with one
    /// `stat`. `None` means the caller must call [`Pseudonyms::pseudonym`].
    pub fn cached(&self, tenant: Option<&str>, subject: &str) -> Option<String> {
        let id = cache_id(tenant, subject);
        let key_file = {
            let subjects = lock(&self.subjects);
            let cached = subjects.get(&id)?;
            if cached.checked.elapsed() < self.recheck_interval {
                return Some(cached.pseudonym.clone());
            }
            cached.key_file.clone()
        };

        if key_file.exists() {
            let mut subjects = lock(&self.subjects);
            let cached = subjects.get_mut(&id)?;
            cached.checked = Instant::now();
            return Some(cached.pseudonym.clone());
        }

        // The key was erased: forget it, and the tenant key too, whose
        // directory may have gone with it.
        lock(&self.subjects).remove(&id);
        lock(&self.tenants).remove(tenant_name(tenant));
        None
    }

    /// Returns the pseudonym of `subject` in `tenant` (`None`: the
    /// [`DEFAULT_TENANT`]), creating the tenant and subject keys on first
    /// use. Blocks on file I/O and fsync when a key is read or created.
    pub fn pseudonym(&self, tenant: Option<&str>, subject: &str) -> io::Result<String> {
        if let Some(pseudonym) = self.cached(tenant, subject) {
            return Ok(pseudonym);
        }
        let tenant_dir = self.tenant_dir(tenant)?;
        let tenant_key = self.tenant_key(tenant, &tenant_dir)?;
        let key_file = tenant_dir.join(subject_file_name(&tenant_key, subject));
        let subject_key = {
            let _creating = lock(&self.create);
            read_or_create_key(&key_file)?
        };
        let key = hmac::Key::new(hmac::HMAC_SHA256, &subject_key);
        let pseudonym = hex::encode(hmac::sign(&key, subject.as_bytes()));

        let mut subjects = lock(&self.subjects);
        if subjects.len() >= MAX_CACHED_SUBJECTS {
            subjects.clear();
        }
        let cached = Cached {
            pseudonym: pseudonym.clone(),
            key_file,
            checked: Instant::now(),
        };
        subjects.insert(cache_id(tenant, subject), cached);
        Ok(pseudonym)
    }

    fn tenant_dir(&self, tenant: Option<&str>) -> io::Result<PathBuf> {
        let name = tenant_name(tenant);
        check_tenant_name(name)?;
        Ok(self.directory.join(name))
    }

    fn tenant_key(&self, tenant: Option<&str>, tenant_dir: &Path) -> io::Result<Arc<hmac::Key>> {
        let name = tenant_name(tenant);
        let key_file = tenant_dir.join(TENANT_KEY_FILE);
        let cached = lock(&self.tenants).get(name).cloned();
        // A key whose file was erased must not name new subject files, or
        // `erase` could not find them.
        if let Some(key) = cached.filter(|_| key_file.exists()) {
            return Ok(key);
        }
        let bytes = {
            let _creating = lock(&self.create);
            read_or_create_key(&key_file)?
        };
        let key = Arc::new(hmac::Key::new(hmac::HMAC_SHA256, &bytes));
        lock(&self.tenants).insert(name.to_string(), key.clone());
        Ok(key)
    }
}

/// What [`erase`] deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erased {
    /// The subject's key file.
    Subject,
    /// The tenant's whole directory: its key and every subject key.
    Tenant,
    /// Nothing: no key existed for the subject or tenant.
    NothingFound,
}

/// Deletes the key of `subject` in `tenant`, or the whole tenant directory
/// when `subject` is `None`, and syncs the directory so the deletion is
/// durable. A running gateway notices on the subject's next request.
pub fn erase(directory: &Path, tenant: &str, subject: Option<&str>) -> io::Result<Erased> {
    check_tenant_name(tenant)?;
    let tenant_dir = directory.join(tenant);
    let Some(subject) = subject else {
        return match std::fs::remove_dir_all(&tenant_dir) {
            Ok(()) => {
                sync_directory(directory)?;
                Ok(Erased::Tenant)
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Erased::NothingFound),
            Err(error) => Err(error),
        };
    };
    let tenant_key = match read_key(&tenant_dir.join(TENANT_KEY_FILE)) {
        Ok(bytes) => hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Erased::NothingFound),
        Err(error) => return Err(error),
    };
    let key_file = tenant_dir.join(subject_file_name(&tenant_key, subject));
    match std::fs::remove_file(&key_file) {
        Ok(()) => {
            sync_directory(&tenant_dir)?;
            Ok(Erased::Subject)
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Erased::NothingFound),
        Err(error) => Err(error),
    }
}

/// Runs `portcullis audit erase`: deletes one subject's key, or a whole
/// tenant's keys, and prints what was deleted. The subject is never
/// printed.
pub fn erase_command(directory: &Path, tenant: &str, subject: Option<&str>) -> ExitCode {
    match erase(directory, tenant, subject) {
        Ok(Erased::Subject) => {
            println!("erased the subject's pseudonym key in tenant {tenant}; its past records can no longer be linked to it");
            ExitCode::SUCCESS
        }
        Ok(Erased::Tenant) => {
            println!("erased every pseudonym key of tenant {tenant}");
            ExitCode::SUCCESS
        }
        Ok(Erased::NothingFound) => {
            println!(
                "no pseudonym key found in {} for this tenant and subject; nothing to erase",
                directory.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!(
                "error: erasing pseudonym keys in {} failed: {error}",
                directory.display()
            );
            ExitCode::FAILURE
        }
    }
}

fn tenant_name(tenant: Option<&str>) -> &str {
    tenant.unwrap_or(DEFAULT_TENANT)
}

/// Accepts tenant ids as the configuration allows them (letters, digits,
/// `-`, `_`), so a name can never leave the key directory.
fn check_tenant_name(name: &str) -> io::Result<()> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("invalid tenant id {name:?}: expected letters, digits, '-' or '_'"),
    ))
}

fn subject_file_name(tenant_key: &hmac::Key, subject: &str) -> String {
    format!(
        "{}.key",
        hex::encode(hmac::sign(tenant_key, subject.as_bytes()))
    )
}

fn cache_id(tenant: Option<&str>, subject: &str) -> [u8; 32] {
    let mut input = Vec::with_capacity(subject.len() + 64);
    input.extend_from_slice(tenant_name(tenant).as_bytes());
    input.push(0);
    input.extend_from_slice(subject.as_bytes());
    let hash = digest(&SHA256, &input);
    hash.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn read_or_create_key(path: &Path) -> io::Result<[u8; KEY_BYTES]> {
    match read_key(path) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => create_key(path),
        result => result,
    }
}

fn read_key(path: &Path) -> io::Result<[u8; KEY_BYTES]> {
    let mut bytes = Vec::with_capacity(KEY_BYTES);
    File::open(path)?.read_to_end(&mut bytes)?;
    bytes.try_into().map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a pseudonym key: expected {KEY_BYTES} bytes",
                path.display()
            ),
        )
    })
}

/// Writes a new random key to `path` atomically: to a temporary file
/// (mode 0600), synced, then hard-linked into place, which fails rather
/// than replace a key another process created first.
fn create_key(path: &Path) -> io::Result<[u8; KEY_BYTES]> {
    let directory = path.parent().expect("key files are inside a directory");
    create_directory(directory)?;

    let mut key = [0u8; KEY_BYTES];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| io::Error::other("the system random source failed"))?;
    let temporary = directory.join(format!(".{}.tmp", crate::run::random_id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temporary)?;
    let written = file.write_all(&key).and_then(|()| file.sync_all());
    let linked = written.and_then(|()| std::fs::hard_link(&temporary, path));
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            sync_directory(directory)?;
            Ok(key)
        }
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => read_key(path),
        Err(error) => Err(error),
    }
}

/// Creates `directory` (mode 0700) and its parents, syncing the parent so
/// the new entry is durable.
fn create_directory(directory: &Path) -> io::Result<()> {
    if directory.is_dir() {
        return Ok(());
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(directory)?;
    match directory.parent() {
        Some(parent) => sync_directory(parent),
        None => Ok(()),
    }
}

fn sync_directory(directory: &Path) -> io::Result<()> {
    File::open(directory)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_subject_same_pseudonym() {
        let dir = tempfile::tempdir().unwrap();
        let pseudonyms = Pseudonyms::new(dir.path());

        let first = pseudonyms.pseudonym(Some("acme"), "alice").unwrap();
        let again = Pseudonyms::new(dir.path())
            .pseudonym(Some("acme"), "alice")
            .unwrap();

        assert_eq!(first, again);
        assert_eq!(first.len(), 64);
        assert!(!first.contains("alice"));
    }

    #[test]
    fn tenants_and_subjects_differ() {
        let dir = tempfile::tempdir().unwrap();
        let pseudonyms = Pseudonyms::new(dir.path());

        let acme = pseudonyms.pseudonym(Some("acme"), "alice").unwrap();
        let other = pseudonyms.pseudonym(Some("globex"), "alice").unwrap();
        let tenantless = pseudonyms.pseudonym(None, "alice").unwrap();
        let bob = pseudonyms.pseudonym(Some("acme"), "bob").unwrap();

        assert_ne!(acme, other);
        assert_ne!(acme, tenantless);
        assert_ne!(acme, bob);
        assert!(dir.path().join("_default/tenant.key").is_file());
    }

    #[test]
    fn key_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        Pseudonyms::new(dir.path())
            .pseudonym(Some("acme"), "alice")
            .unwrap();

        let files: Vec<_> = std::fs::read_dir(dir.path().join("acme"))
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        assert_eq!(files.len(), 2, "{files:?}");
        for file in files {
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
            assert_eq!(std::fs::metadata(&file).unwrap().len(), 32);
        }
    }

    #[test]
    fn erased_subject_gets_new_pseudonym() {
        let dir = tempfile::tempdir().unwrap();
        let pseudonyms = Pseudonyms::new(dir.path()).with_recheck_interval(Duration::ZERO);
        let before = pseudonyms.pseudonym(Some("acme"), "alice").unwrap();
        let bob = pseudonyms.pseudonym(Some("acme"), "bob").unwrap();

        let erased = erase(dir.path(), "acme", Some("alice")).unwrap();

        assert_eq!(erased, Erased::Subject);
        let after = pseudonyms.pseudonym(Some("acme"), "alice").unwrap();
        assert_ne!(before, after);
        assert_eq!(pseudonyms.pseudonym(Some("acme"), "bob").unwrap(), bob);
    }

    #[test]
    fn erased_key_used_until_recheck() {
        let dir = tempfile::tempdir().unwrap();
        let pseudonyms = Pseudonyms::new(dir.path());
        let before = pseudonyms.pseudonym(Some("acme"), "alice").unwrap();

        erase(dir.path(), "acme", Some("alice")).unwrap();

        assert_eq!(
            pseudonyms.cached(Some("acme"), "alice"),
            Some(before),
            "pseudonym within the recheck interval"
        );
        let pseudonyms = pseudonyms.with_recheck_interval(Duration::ZERO);
        assert_eq!(
            pseudonyms.cached(Some("acme"), "alice"),
            None,
            "pseudonym after the recheck interval"
        );
    }

    #[test]
    fn erased_tenant_gets_new_keys() {
        let dir = tempfile::tempdir().unwrap();
        let pseudonyms = Pseudonyms::new(dir.path()).with_recheck_interval(Duration::ZERO);
        let before = pseudonyms.pseudonym(Some("acme"), "alice").unwrap();

        assert_eq!(erase(dir.path(), "acme", None).unwrap(), Erased::Tenant);
        assert_eq!(
            erase(dir.path(), "acme", None).unwrap(),
            Erased::NothingFound
        );

        let after = pseudonyms.pseudonym(Some("acme"), "alice").unwrap();
        assert_ne!(before, after);
    }

    #[test]
    fn unsafe_tenant_names_rejected() {
        let dir = tempfile::tempdir().unwrap();
        // (description, tenant)
        let cases = [
            ("parent directory", ".."),
            ("path separator", "a/b"),
            ("empty", ""),
            ("hidden file", ".acme"),
        ];
        for (description, tenant) in cases {
            let error = erase(dir.path(), tenant, None).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{description}");
        }
    }
}
