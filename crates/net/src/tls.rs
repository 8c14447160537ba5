//! A process's TLS material and the configurations built from it. Every gRPC link of a cluster
//! is mutual TLS: the server requires a certificate signed by the cluster CA from every client,
//! and the client requires the server's certificate to name the peer it meant to reach
//! ([`crate::identity`]). Plaintext only where an operator asked for it (`--insecure`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig};

use crate::identity::Peer;
use crate::limits::Limits;

/// What went wrong with TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{}: {source} (make the cluster's certificates with `dprox certs DIR --config CONFIG`)", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate that is not the identity's it was loaded for.
    #[error("{}: {why}", path.display())]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// tonic refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] tonic::transport::Error),
}

/// The cluster CA certificate and one identity's certificate and key, as PEM.
pub struct TlsFiles {
    /// Whose they are.
    pub peer: Peer,
    dir: PathBuf,
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl std::fmt::Debug for TlsFiles {
    /// Never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles").field("peer", &self.peer).field("dir", &self.dir).finish_non_exhaustive()
    }
}

fn read(path: PathBuf) -> Result<Vec<u8>, TlsError> {
    std::fs::read(&path).map_err(|source| TlsError::Read { path, source })
}

impl TlsFiles {
    /// Reads `DIR/ca.pem`, `DIR/STEM.pem` and `DIR/STEM.key` for `peer` (STEM as
    /// [`Peer::stem`]), and checks that the certificate names `peer`.
    pub fn load(dir: &Path, peer: Peer) -> Result<TlsFiles, TlsError> {
        let stem = peer.stem();
        let cert_path = dir.join(format!("{stem}.pem"));
        let cert = read(cert_path.clone())?;
        let named = x509_parser::pem::parse_x509_pem(&cert)
            .ok()
            .and_then(|(_, pem)| Peer::of_certificate(&pem.contents));
        if named != Some(peer) {
            let why = match named {
                Some(other) => format!("this certificate is {other}'s, not {peer}'s"),
                None => format!("not a dprox certificate (no {} name)", peer.dns_name()),
            };
            return Err(TlsError::Certificate { path: cert_path, why });
        }
        let ca = read(dir.join("ca.pem"))?;
        let key = read(dir.join(format!("{stem}.key")))?;
        Ok(TlsFiles { peer, dir: dir.to_path_buf(), ca, cert, key })
    }

    /// The folder the files came from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A server's configuration: this identity, and client certificates required and checked
    /// against the cluster CA, the handshake within `limits.handshake_timeout`.
    pub fn server(&self, limits: &Limits) -> ServerTlsConfig {
        prefer_aes_128();
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
            .timeout(limits.handshake_timeout)
    }

    /// A client's configuration for reaching `peer`: this identity, and the server's certificate
    /// checked against the cluster CA and required to name `peer`.
    pub fn client(&self, peer: Peer) -> ClientTlsConfig {
        prefer_aes_128();
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
            .domain_name(peer.dns_name())
    }
}

/// Makes ring's provider, with TLS 1.3's AES-128-GCM suite first, this process's default, so
/// that every link negotiates it: ten AES rounds per block against AES-256's fourteen, on every
/// byte a node sends and receives (the suite TLS 1.3 requires of every implementation, and the
/// first choice of Go's TLS). The other suites follow in ring's order. Does nothing where a
/// default is already installed.
pub fn prefer_aes_128() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites.sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        // Err: a default was installed first (by the embedding program); it stays.
        let _ = provider.install_default();
    });
}

/// How a process's gRPC links are secured.
#[derive(Clone, Debug)]
pub enum Security {
    /// Mutual TLS with these files.
    Tls(Arc<TlsFiles>),
    /// Plaintext: anyone who reaches a port is trusted (only with an explicit `--insecure`).
    Insecure,
}

impl Security {
    /// Mutual TLS with `peer`'s files in `dir`.
    pub fn load(dir: &Path, peer: Peer) -> Result<Security, TlsError> {
        Ok(Security::Tls(Arc::new(TlsFiles::load(dir, peer)?)))
    }

    /// Whether links are encrypted and authenticated.
    pub fn is_tls(&self) -> bool {
        matches!(self, Security::Tls(_))
    }

    /// An endpoint for reaching `peer` at `address` (host:port): `https` and checked both ways
    /// with TLS, `http` otherwise.
    pub fn endpoint(&self, address: &str, peer: Peer) -> Result<Endpoint, tonic::transport::Error> {
        match self {
            Security::Tls(files) => {
                Endpoint::from_shared(format!("https://{address}"))?.tls_config(files.client(peer))
            }
            Security::Insecure => Endpoint::from_shared(format!("http://{address}")),
        }
    }

    /// A gRPC server builder under `limits`, requiring client certificates with TLS.
    pub fn server(&self, limits: &Limits) -> Result<Server, TlsError> {
        let builder = Server::builder()
            .max_concurrent_streams(limits.max_concurrent_streams)
            .http2_keepalive_interval(Some(limits.keepalive))
            .http2_keepalive_timeout(Some(limits.keepalive));
        Ok(match self {
            Security::Tls(files) => builder.tls_config(files.server(limits))?,
            Security::Insecure => builder,
        })
    }
}

/// The command-line options of a process's security (node, coordinator, launcher).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct SecurityArgs {
    /// Folder with this process's TLS files: `ca.pem`, and its own `STEM.pem` and `STEM.key`
    /// (`node-ID`, `coordinator`, `operator`), as `dprox certs` makes them.
    #[arg(long, env = "DPROX_TLS_DIR", value_name = "DIR", conflicts_with = "insecure")]
    pub tls_dir: Option<PathBuf>,
    /// Plaintext gRPC, without certificates: anyone who can reach the ports is trusted. For a
    /// closed network only (logged as a warning).
    #[arg(long)]
    pub insecure: bool,
    /// File holding the cluster secret that nodes present when they register (else the
    /// DPROX_SECRET environment variable; none when neither is set).
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
}

impl SecurityArgs {
    /// The security of `peer`'s process: mutual TLS with its files, or plaintext when asked
    /// (with a warning); an error naming both ways when neither is given.
    pub fn security(&self, peer: Peer) -> Result<Security, TlsError> {
        match (&self.tls_dir, self.insecure) {
            (Some(dir), _) => Security::load(dir, peer),
            (None, true) => {
                tracing::warn!(
                    "--insecure: gRPC in plaintext; anyone who can reach this process's ports can join, read and disrupt the run"
                );
                Ok(Security::Insecure)
            }
            (None, false) => Err(TlsError::Certificate {
                path: PathBuf::from("--tls-dir"),
                why: format!(
                    "no TLS files for {peer}: pass --tls-dir DIR (made by `dprox certs DIR --config CONFIG`), or --insecure for plaintext"
                ),
            }),
        }
    }

    /// The cluster secret: the file's first line, else DPROX_SECRET, else none.
    pub fn secret(&self) -> Result<String, TlsError> {
        match &self.secret_file {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|source| TlsError::Read { path: p.clone(), source })?;
                Ok(text.lines().next().unwrap_or("").trim().to_string())
            }
            None => Ok(std::env::var("DPROX_SECRET").unwrap_or_default()),
        }
    }
}

impl Default for Security {
    /// Plaintext: the default of processes built in code (tests, embedding); the command line
    /// requires `--tls-dir` or an explicit `--insecure`.
    fn default() -> Security {
        Security::Insecure
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rustls::CipherSuite::{TLS13_AES_128_GCM_SHA256, TLS13_AES_256_GCM_SHA384};
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    use super::prefer_aes_128;

    /// Moves every pending TLS record between an in-memory client and server until both have
    /// finished the handshake.
    fn handshake(c: &mut rustls::ClientConnection, s: &mut rustls::ServerConnection) {
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).expect("to memory");
            }
            s.read_tls(&mut &buf[..]).expect("from memory");
            s.process_new_packets().expect("a valid client flight");
            buf.clear();
            while s.wants_write() {
                s.write_tls(&mut buf).expect("to memory");
            }
            c.read_tls(&mut &buf[..]).expect("from memory");
            c.process_new_packets().expect("a valid server flight");
            if !c.is_handshaking() && !s.is_handshaking() {
                return;
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn links_negotiate_aes_128_gcm_where_ring_would_choose_aes_256() {
        let ring = rustls::crypto::ring::default_provider();
        assert_eq!(ring.cipher_suites[0].suite(), TLS13_AES_256_GCM_SHA384, "ring's own first choice");
        prefer_aes_128();
        let default = rustls::crypto::CryptoProvider::get_default().expect("installed");
        let mut suites: Vec<_> = default.cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(suites[0], TLS13_AES_128_GCM_SHA256);
        let mut all: Vec<_> = ring.cipher_suites.iter().map(|s| s.suite()).collect();
        suites.sort_by_key(|s| u16::from(*s));
        all.sort_by_key(|s| u16::from(*s));
        assert_eq!(suites, all, "no suite dropped or added");

        // A handshake between configurations built as tonic builds them (the process default).
        let key = rcgen::generate_simple_self_signed(vec!["node-0.dprox".into()]).expect("a key");
        let cert = key.cert.der().clone();
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.signing_key.serialize_der()));
        let server = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![cert.clone()], private)
            .expect("a server config");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).expect("a root");
        let client = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let name = "node-0.dprox".try_into().expect("a DNS name");
        let mut c = rustls::ClientConnection::new(Arc::new(client), name).expect("a client");
        let mut s = rustls::ServerConnection::new(Arc::new(server)).expect("a server");
        handshake(&mut c, &mut s);
        assert_eq!(c.negotiated_cipher_suite().map(|s| s.suite()), Some(TLS13_AES_128_GCM_SHA256));
        assert_eq!(s.negotiated_cipher_suite().map(|s| s.suite()), Some(TLS13_AES_128_GCM_SHA256));
    }
}
