//! `portcullis token rotate-keys` and `portcullis token hash-secret`.
//! Private keys and hashes go to files only; a generated client secret is
//! printed once on standard output; everything else goes to standard
//! error.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use crate::token_service::config::TokenServiceConfig;
use crate::token_service::manifest::{self, Manifest};
use crate::token_service::secret_hash::{self, SecretHash};
use crate::token_service::{keys, now};

/// Shortest client secret `hash-secret --stdin` accepts.
const MIN_SECRET_BYTES: usize = 16;

/// Adds a signing key that is published at once and signs after
/// `publish_delay` (default: the token lifetime), and deletes the keys
/// whose tokens have all expired.
pub fn rotate_keys(config_path: &Path, publish_delay: Option<Duration>) -> ExitCode {
    match rotate(config_path, publish_delay) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn rotate(config_path: &Path, publish_delay: Option<Duration>) -> Result<(), String> {
    let config = crate::config::load(config_path).map_err(|errors| errors.to_string())?;
    let service = config
        .token_service
        .as_ref()
        .ok_or_else(|| format!("{} has no token_service section", config_path.display()))?;
    let dir = &service.keys_dir;
    std::fs::create_dir_all(dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let mut list = manifest::load(dir)?.unwrap_or_default();
    let now = now();
    let retention = manifest::retention(service.token_ttl, service.clock_skew);

    let removed = list.remove_expired(now, retention);
    let delay = publish_delay.unwrap_or(service.token_ttl);
    let delay_secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    // Strictly after every key listed, so the order of keys, and with it
    // which key signs, never depends on a tie.
    let signs_from = match list.keys.iter().map(|key| key.signs_from).max() {
        Some(latest) => (now + delay_secs).max(latest + 1),
        None => now,
    };
    let entry = create(service, &mut list, now, signs_from)?;
    // The manifest goes first, so a gateway never reads an entry whose file
    // is already gone.
    for old in &removed {
        keys::delete_key(dir, old)?;
        eprintln!("removed key {}: every token it signed has expired", old.kid);
    }

    eprintln!(
        "created key {} ({}); published now, signs from {} ({} from now)",
        entry.kid,
        entry.algorithm,
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(signs_from)),
        humantime::format_duration(Duration::from_secs(signs_from - now)),
    );
    Ok(())
}

fn create(
    service: &TokenServiceConfig,
    list: &mut Manifest,
    now: u64,
    signs_from: u64,
) -> Result<manifest::KeyEntry, String> {
    let dir = &service.keys_dir;
    let passphrase = service.keys_passphrase.as_ref();
    let entry = keys::create_key(dir, service.algorithm, passphrase, now, signs_from)?;
    list.keys.push(entry.clone());
    list.sort();
    manifest::save(dir, list)?;
    Ok(entry)
}

/// Makes the `secret_hash` of a client. Without `from_stdin` a secret is
/// generated and printed once on standard output, and its hash is written
/// to `out`. With it, the secret is read from standard input, and the hash
/// goes to `out` or standard output.
pub fn hash_secret(out: Option<&Path>, from_stdin: bool) -> ExitCode {
    match make_hash(out, from_stdin) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn make_hash(out: Option<&Path>, from_stdin: bool) -> Result<(), String> {
    let secret = if from_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|error| format!("cannot read the secret from standard input: {error}"))?;
        let secret = text.trim_end_matches(['\r', '\n']).to_string();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the secret is shorter than {MIN_SECRET_BYTES} bytes; use a longer one, or leave out --stdin to generate one"
            ));
        }
        secret
    } else {
        if out.is_none() {
            return Err("give --out FILE for the hash: without --stdin a secret is generated and standard output carries it".into());
        }
        secret_hash::generate_secret()
    };

    let hash = SecretHash::create(secret.as_bytes(), secret_hash::ITERATIONS).to_phc();
    match out {
        Some(path) => {
            manifest::write_atomically(path, format!("{hash}\n").as_bytes())?;
            eprintln!("wrote the hash to {}", path.display());
        }
        None => println!("{hash}"),
    }
    if !from_stdin {
        eprintln!("the client secret is shown once, below");
        println!("{secret}");
    }
    Ok(())
}
