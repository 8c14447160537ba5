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
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
            .timeout(limits.handshake_timeout)
    }

    /// A client's configuration for reaching `peer`: this identity, and the server's certificate
    /// checked against the cluster CA and required to name `peer`.
    pub fn client(&self, peer: Peer) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
            .domain_name(peer.dns_name())
    }
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
