//! A cluster's certificates: one CA, and one key and certificate per identity (every node, the
//! coordinator, an operator), each naming its identity ([`crate::identity`]). What
//! `dprox certs DIR --config CONFIG` and `dprox launch` make.
//!
//! In DIR: `ca.pem` (every process needs it), `ca.key` (only to sign more identities later: keep
//! it off the cluster's hosts), `STEM.pem` and `STEM.key` per identity. Keys are written readable
//! by their owner only. An existing CA is reused, and existing identities are kept, so the same
//! command adds the certificates of nodes added to a config.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::identity::Peer;

/// Why certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Generating or signing failed.
    #[error("making certificates: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The folder has a CA certificate without its key (or the reverse).
    #[error("{}: has {} but not {}: both are needed to sign more certificates", dir.display(), has, lacks)]
    HalfCa {
        /// The folder.
        dir: PathBuf,
        /// The file present.
        has: &'static str,
        /// The file missing.
        lacks: &'static str,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CertError + '_ {
    move |source| CertError::Io { path: path.to_path_buf(), source }
}

/// The CA's parameters (the same every time, so that a stored CA key signs with them again).
fn ca_params() -> Result<CertificateParams, CertError> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.distinguished_name.push(DnType::CommonName, "dprox cluster CA");
    p.key_usages =
        vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(p)
}

/// Writes `text` to `path` (through a temporary file, renamed), readable by its owner only when
/// `secret`.
fn write(path: &Path, text: &str, secret: bool) -> Result<(), CertError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mode = if secret { 0o600 } else { 0o644 };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The CA in `dir`: loaded when there, else made and written.
fn ca(dir: &Path) -> Result<(KeyPair, bool), CertError> {
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca.key"));
    match (cert.exists(), key.exists()) {
        (true, true) => {
            let pem = std::fs::read_to_string(&key).map_err(io(&key))?;
            Ok((KeyPair::from_pem(&pem)?, false))
        }
        (false, false) => {
            let k = KeyPair::generate()?;
            let c = ca_params()?.self_signed(&k)?;
            write(&key, &k.serialize_pem(), true)?;
            write(&cert, &c.pem(), false)?;
            Ok((k, true))
        }
        (true, false) => Err(CertError::HalfCa { dir: dir.to_path_buf(), has: "ca.pem", lacks: "ca.key" }),
        (false, true) => Err(CertError::HalfCa { dir: dir.to_path_buf(), has: "ca.key", lacks: "ca.pem" }),
    }
}

/// Makes, in `dir`, whatever of the CA and the identities of a cluster of `nodes` nodes (every
/// node, the coordinator, an operator) is missing; returns the files written.
pub fn make(dir: &Path, nodes: usize) -> Result<Vec<PathBuf>, CertError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let (ca_key, fresh) = ca(dir)?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut written = if fresh { vec![dir.join("ca.pem"), dir.join("ca.key")] } else { Vec::new() };
    let peers = (0..nodes).map(Peer::Node).chain([Peer::Coordinator, Peer::Operator]);
    for peer in peers {
        let stem = peer.stem();
        let (cert, key) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key")));
        if cert.exists() && key.exists() {
            continue;
        }
        let mut p = CertificateParams::new(vec![peer.dns_name()])?;
        p.distinguished_name.push(DnType::CommonName, peer.dns_name());
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        p.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let k = KeyPair::generate()?;
        let c = p.signed_by(&k, &issuer)?;
        write(&key, &k.serialize_pem(), true)?;
        write(&cert, &c.pem(), false)?;
        written.extend([cert, key]);
    }
    Ok(written)
}
