//! Our own identity: creating, saving and loading a self-signed certificate and its key.
//!
//! Keys are ECDSA P-256, made by rcgen through aws-lc-rs (the same provider rustls uses).

pub mod endpoint_key;
pub mod fingerprint;
pub mod known_peers;
pub mod trust;

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::InconsistentKeys;
use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use thiserror::Error;

use crate::identity::fingerprint::Fingerprint;
use crate::platform::{self, Access, Exposure};

/// The longest name a certificate may be created with.
pub const MAX_IDENTITY_NAME_LEN: usize = 64;
/// A PEM private key is well under a kilobyte; anything far larger is not one.
const MAX_KEY_FILE_LEN: u64 = 64 * 1024;

/// A certificate we present and the key that proves we own it.
#[derive(Debug)]
pub struct Identity {
    pub certificate: CertificateDer<'static>,
    pub private_key: PrivateKeyDer<'static>,
    pub fingerprint: Fingerprint,
    /// The certificate's common name, as the peer will see it.
    pub name: String,
}

/// Where an identity lives on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityFiles {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// Why an identity could not be created or loaded.
#[derive(Debug, Error)]
pub enum IdentityError {
    /// The name cannot be used as a certificate name and file name.
    #[error(
        "invalid identity name {0:?}: use 1 to {MAX_IDENTITY_NAME_LEN} letters, digits, '.', '_' or '-', not starting with '.' or '-'"
    )]
    InvalidName(String),
    /// Creating would replace an identity that already exists.
    #[error("{} already exists; pass --force to replace it", .0.display())]
    AlreadyExists(PathBuf),
    /// Only one of the two files exists.
    #[error("{} exists but {} does not; restore it, or pass --force to make a new identity", .present.display(), .missing.display())]
    Incomplete { present: PathBuf, missing: PathBuf },
    /// The private key can be read by others, so it may no longer be private.
    #[error(
        "{permissions} for '{path}' are too open: the private key must be readable only by you. Fix it with: {fix}",
        permissions = .exposure.permissions,
        path = .path.display(),
        fix = .exposure.fix
    )]
    KeyTooOpen { path: PathBuf, exposure: Exposure },
    /// Others may replace the files in the identity's folder.
    #[error(
        "{permissions} for the folder '{path}' are too open: others could replace the identity in it. Fix it with: {fix}",
        permissions = .exposure.permissions,
        path = .path.display(),
        fix = .exposure.fix
    )]
    FolderTooOpen { path: PathBuf, exposure: Exposure },
    /// The certificate's public key is not the private key's: its fingerprint would
    /// be shown as ours, and no handshake could prove it.
    #[error(
        "the certificate {} does not belong to the private key {}: its public key is another key's. Give the certificate that was made with this key",
        .certificate.display(),
        .key.display()
    )]
    KeyMismatch { certificate: PathBuf, key: PathBuf },
    /// The private key is not one that TLS can sign with.
    #[error("{}: not a usable private key: {source}", .path.display())]
    KeyUnusable {
        path: PathBuf,
        source: rustls::Error,
    },
    /// The certificate cannot be read to compare its public key with the key's.
    #[error("{}: not a usable certificate: {source}", .path.display())]
    CertificateUnusable {
        path: PathBuf,
        source: rustls::Error,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io { path: PathBuf, source: io::Error },
    /// A file is not the PEM we expect.
    #[error("{}: {source}", .path.display())]
    Pem { path: PathBuf, source: pem::Error },
    /// A file holds no PEM certificate at all.
    #[error("{}: holds no certificate (a PEM block that starts with -----BEGIN CERTIFICATE-----)", .path.display())]
    NoCertificate { path: PathBuf },
    /// rcgen could not generate the key or certificate.
    #[error("generating the certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
}

impl IdentityFiles {
    /// `DIR/NAME.crt` and `DIR/NAME.key`.
    pub fn named(dir: &Path, name: &str) -> Self {
        IdentityFiles {
            certificate: dir.join(format!("{name}.crt")),
            private_key: dir.join(format!("{name}.key")),
        }
    }

    /// Whether both, one or none of the files exist.
    fn existing(&self) -> (bool, bool) {
        (self.certificate.exists(), self.private_key.exists())
    }
}

/// Checks that `name` is safe both as a certificate name and as part of a file name.
pub fn validate_name(name: &str) -> Result<(), IdentityError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let valid = !name.is_empty()
        && name.len() <= MAX_IDENTITY_NAME_LEN
        && name.chars().all(allowed)
        && !name.starts_with(['.', '-']);
    if valid {
        Ok(())
    } else {
        Err(IdentityError::InvalidName(name.to_owned()))
    }
}

/// Creates a new identity called `name` and writes it to `files`.
///
/// Without `overwrite`, refuses if either file exists. The key file is created with
/// mode 0600 from the start, so it is never readable by others even for an instant.
/// Creates the identity folder, if missing, open to its owner alone (its parents
/// as the system makes them).
fn create_folder(dir: &Path) -> io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    crate::platform::ensure_private_dir(dir)
}

pub fn create(
    files: &IdentityFiles,
    name: &str,
    overwrite: bool,
) -> Result<Identity, IdentityError> {
    validate_name(name)?;
    if !overwrite {
        for path in [&files.certificate, &files.private_key] {
            if path.exists() {
                return Err(IdentityError::AlreadyExists(path.clone()));
            }
        }
    }
    let key_pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    let certificate = params.self_signed(&key_pair)?;

    for path in [&files.certificate, &files.private_key] {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            create_folder(dir).map_err(|source| io_error(dir, source))?;
        }
    }
    write_file(
        &files.private_key,
        key_pair.serialize_pem().as_bytes(),
        Readers::OwnerOnly,
        overwrite,
    )?;
    write_file(
        &files.certificate,
        certificate.pem().as_bytes(),
        Readers::Anyone,
        overwrite,
    )?;
    load(files)
}

/// Loads the identity at `files`, or creates it if neither file exists.
/// Returns whether it was created.
pub fn load_or_create(
    files: &IdentityFiles,
    name: &str,
) -> Result<(Identity, bool), IdentityError> {
    match files.existing() {
        (false, false) => Ok((create(files, name, false)?, true)),
        _ => Ok((load(files)?, false)),
    }
}

/// Loads an identity, refusing a private key that others can read, a folder of
/// either file that others can write to (`known_peers` lives beside the
/// certificate), and a certificate that is not the key's.
pub fn load(files: &IdentityFiles) -> Result<Identity, IdentityError> {
    match files.existing() {
        (true, false) => {
            return Err(IdentityError::Incomplete {
                present: files.certificate.clone(),
                missing: files.private_key.clone(),
            });
        }
        (false, true) => {
            return Err(IdentityError::Incomplete {
                present: files.private_key.clone(),
                missing: files.certificate.clone(),
            });
        }
        _ => {}
    }
    let key_folder = folder_of(&files.private_key);
    check_folder(key_folder)?;
    let certificate_folder = folder_of(&files.certificate);
    if certificate_folder != key_folder {
        check_folder(certificate_folder)?;
    }
    let key_pem = read_private_key(&files.private_key)?;
    let certificate = load_certificate(&files.certificate)?;
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|source| pem_error(&files.private_key, source))?;
    check_pair(files, &certificate, &private_key)?;
    let name = common_name(&certificate).unwrap_or_default();
    Ok(Identity {
        fingerprint: Fingerprint::of(&certificate),
        certificate,
        private_key,
        name,
    })
}

/// Reads the first certificate of a PEM file.
pub fn load_certificate(path: &Path) -> Result<CertificateDer<'static>, IdentityError> {
    CertificateDer::from_pem_file(path).map_err(|source| match source {
        pem::Error::NoItemsFound => IdentityError::NoCertificate {
            path: path.to_owned(),
        },
        source => pem_error(path, source),
    })
}

/// The subject's common name, if the certificate parses and has one.
pub fn common_name(certificate: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let name = parsed.subject().iter_common_name().next()?.as_str().ok()?;
    Some(name.to_owned())
}

/// Reads the private key, refusing one that others can read, or a link, or a file
/// that is not ours; the checks are made on the open file.
fn read_private_key(path: &Path) -> Result<Vec<u8>, IdentityError> {
    let (file, exposure) =
        platform::open_secret(path, Access::Read).map_err(|source| io_error(path, source))?;
    if let Some(exposure) = exposure {
        return Err(IdentityError::KeyTooOpen {
            path: path.to_owned(),
            exposure,
        });
    }
    let mut pem = Vec::new();
    file.take(MAX_KEY_FILE_LEN)
        .read_to_end(&mut pem)
        .map_err(|source| io_error(path, source))?;
    Ok(pem)
}

/// Refuses a certificate whose public key is not the private key's.
fn check_pair(
    files: &IdentityFiles,
    certificate: &CertificateDer<'static>,
    private_key: &PrivateKeyDer<'static>,
) -> Result<(), IdentityError> {
    let signing_key =
        any_supported_type(private_key).map_err(|source| IdentityError::KeyUnusable {
            path: files.private_key.clone(),
            source,
        })?;
    match CertifiedKey::new(vec![certificate.clone()], signing_key).keys_match() {
        // Unknown: a key that cannot tell its public key, which rustls accepts too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(()),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(IdentityError::KeyMismatch {
                certificate: files.certificate.clone(),
                key: files.private_key.clone(),
            })
        }
        Err(source) => Err(IdentityError::CertificateUnusable {
            path: files.certificate.clone(),
            source,
        }),
    }
}

/// The folder a file of the identity is in.
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Refuses an identity folder that others may write to: they could replace the
/// files in it.
fn check_folder(dir: &Path) -> Result<(), IdentityError> {
    match platform::folder_exposure(dir).map_err(|source| io_error(dir, source))? {
        Some(exposure) => Err(IdentityError::FolderTooOpen {
            path: dir.to_owned(),
            exposure,
        }),
        None => Ok(()),
    }
}

/// Who may read a file we write.
#[derive(Clone, Copy)]
enum Readers {
    OwnerOnly,
    Anyone,
}

/// Writes `contents` to a new file. With `overwrite`, the file is written beside the
/// target and renamed over it, so a crash never leaves a half-written identity.
fn write_file(
    path: &Path,
    contents: &[u8],
    readers: Readers,
    overwrite: bool,
) -> Result<(), IdentityError> {
    let staging = if overwrite {
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(".new");
        path.with_file_name(name)
    } else {
        path.to_owned()
    };
    if overwrite {
        let _ = fs::remove_file(&staging);
    }
    let created = match readers {
        Readers::OwnerOnly => platform::create_private_file(&staging),
        Readers::Anyone => OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staging),
    };
    let result = created.and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()
    });
    if let Err(source) = result {
        if source.kind() == io::ErrorKind::AlreadyExists {
            return Err(IdentityError::AlreadyExists(staging));
        }
        let _ = fs::remove_file(&staging);
        return Err(io_error(&staging, source));
    }
    if overwrite {
        fs::rename(&staging, path).map_err(|source| io_error(path, source))?;
    }
    Ok(())
}

fn io_error(path: &Path, source: io::Error) -> IdentityError {
    IdentityError::Io {
        path: path.to_owned(),
        source,
    }
}

fn pem_error(path: &Path, source: pem::Error) -> IdentityError {
    match source {
        pem::Error::Io(source) => io_error(path, source),
        source => IdentityError::Pem {
            path: path.to_owned(),
            source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::testing::{open_to_others, symlink_file};

    #[test]
    fn accepts_ordinary_names_and_rejects_paths() {
        for good in ["alice", "Bob-2", "host.example", "a_b"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(MAX_IDENTITY_NAME_LEN + 1);
        for bad in [
            "",
            ".hidden",
            "-flag",
            "a/b",
            "../x",
            "a b",
            "é",
            long.as_str(),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn created_identity_loads_with_private_key_mode() {
        let dir = tempfile::tempdir().unwrap();
        let files = IdentityFiles::named(dir.path(), "alice");
        let created = create(&files, "alice", false).unwrap();
        assert_eq!(created.name, "alice");
        let (_, exposure) = platform::open_secret(&files.private_key, Access::Read).unwrap();
        assert_eq!(exposure, None);
        let loaded = load(&files).unwrap();
        assert_eq!(loaded.fingerprint, created.fingerprint);
        assert_eq!(loaded.fingerprint, Fingerprint::of(&loaded.certificate));
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let files = IdentityFiles::named(dir.path(), "bob");
        let first = create(&files, "bob", false).unwrap();
        assert!(matches!(
            create(&files, "bob", false),
            Err(IdentityError::AlreadyExists(_))
        ));
        assert_eq!(load(&files).unwrap().fingerprint, first.fingerprint);
        let second = create(&files, "bob", true).unwrap();
        assert_ne!(second.fingerprint, first.fingerprint);
        assert_eq!(load(&files).unwrap().fingerprint, second.fingerprint);
    }

    #[test]
    fn refuses_key_readable_by_others() {
        let dir = tempfile::tempdir().unwrap();
        let files = IdentityFiles::named(dir.path(), "carol");
        create(&files, "carol", false).unwrap();
        open_to_others(&files.private_key);
        let err = load(&files).unwrap_err();
        let IdentityError::KeyTooOpen { exposure, .. } = &err else {
            panic!("{err}");
        };
        assert!(err.to_string().ends_with(&exposure.fix), "{err}");
    }

    #[test]
    fn refuses_a_key_that_is_a_link_and_a_folder_others_can_write() {
        let dir = tempfile::tempdir().unwrap();
        let files = IdentityFiles::named(dir.path(), "erin");
        create(&files, "erin", false).unwrap();
        let real = dir.path().join("elsewhere.key");
        fs::rename(&files.private_key, &real).unwrap();
        symlink_file(&real, &files.private_key);
        assert!(matches!(load(&files), Err(IdentityError::Io { .. })));
        fs::remove_file(&files.private_key).unwrap();
        fs::rename(&real, &files.private_key).unwrap();
        assert!(load(&files).is_ok());
        open_to_others(dir.path());
        let err = load(&files).unwrap_err();
        let IdentityError::FolderTooOpen { exposure, .. } = &err else {
            panic!("{err}");
        };
        assert!(err.to_string().ends_with(&exposure.fix), "{err}");
    }

    #[test]
    fn refuses_a_certificate_that_is_not_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let alice = IdentityFiles::named(dir.path(), "alice");
        let bob = IdentityFiles::named(dir.path(), "bob");
        create(&alice, "alice", false).unwrap();
        create(&bob, "bob", false).unwrap();
        let crossed = IdentityFiles {
            certificate: bob.certificate.clone(),
            private_key: alice.private_key.clone(),
        };
        let err = load(&crossed).unwrap_err();
        assert!(matches!(err, IdentityError::KeyMismatch { .. }), "{err}");
        let shown = err.to_string();
        assert!(
            shown.contains(&bob.certificate.display().to_string())
                && shown.contains(&alice.private_key.display().to_string()),
            "{shown}"
        );
    }

    #[test]
    fn refuses_a_certificate_folder_others_can_write_to() {
        let dir = tempfile::tempdir().unwrap();
        let files = IdentityFiles::named(&dir.path().join("keys"), "frank");
        create(&files, "frank", false).unwrap();
        let shared = dir.path().join("shared");
        fs::create_dir(&shared).unwrap();
        let certificate = shared.join("frank.crt");
        fs::copy(&files.certificate, &certificate).unwrap();
        let apart = IdentityFiles {
            certificate,
            private_key: files.private_key.clone(),
        };
        assert!(load(&apart).is_ok());
        open_to_others(&shared);
        let err = load(&apart).unwrap_err();
        let IdentityError::FolderTooOpen { path, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(path, &shared);
    }

    #[test]
    fn reports_half_an_identity() {
        let dir = tempfile::tempdir().unwrap();
        let files = IdentityFiles::named(dir.path(), "dave");
        create(&files, "dave", false).unwrap();
        fs::remove_file(&files.private_key).unwrap();
        assert!(matches!(
            load_or_create(&files, "dave"),
            Err(IdentityError::Incomplete { .. })
        ));
    }
}
