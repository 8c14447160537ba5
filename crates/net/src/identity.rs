//! Who a peer is. Every certificate of a dprox cluster names one identity as its DNS subject
//! alternative name: `node-3.dprox`, `coordinator.dprox` or `operator.dprox` (the launcher and
//! tools that read the coordinator's status). A server reads the identity from the certificate the
//! client presented (verified against the cluster CA by the TLS layer); a client checks that the
//! server's certificate names the peer it meant to reach, whatever its address.

use std::fmt;

/// The DNS domain of cluster identities.
pub const DOMAIN: &str = "dprox";

/// A cluster identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Peer {
    /// Node `id`.
    Node(usize),
    /// The coordinator.
    Coordinator,
    /// An operator's tool (`dprox launch` watching its run, `dprox status`).
    Operator,
}

impl Peer {
    /// The identity's name in certificates: `node-3.dprox`, ...
    pub fn dns_name(self) -> String {
        format!("{}.{DOMAIN}", self.stem())
    }

    /// The identity's file stem: `node-3`, `coordinator`, `operator` (its certificate is
    /// `STEM.pem`, its key `STEM.key`).
    pub fn stem(self) -> String {
        match self {
            Peer::Node(i) => format!("node-{i}"),
            Peer::Coordinator => "coordinator".into(),
            Peer::Operator => "operator".into(),
        }
    }

    /// The identity a certificate name stands for, if any.
    pub fn from_dns_name(name: &str) -> Option<Peer> {
        let stem = name.strip_suffix(DOMAIN)?.strip_suffix('.')?;
        match stem {
            "coordinator" => Some(Peer::Coordinator),
            "operator" => Some(Peer::Operator),
            _ => {
                let id = stem.strip_prefix("node-")?;
                // Canonical decimal only: `node-03` is not node 3.
                let n: usize = id.parse().ok()?;
                (n.to_string() == id).then_some(Peer::Node(n))
            }
        }
    }

    /// The cluster identity a DER certificate names (exactly one among its DNS names).
    pub fn of_certificate(der: &[u8]) -> Option<Peer> {
        use x509_parser::extensions::GeneralName;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let san = cert.subject_alternative_name().ok()??;
        let mut found = san.value.general_names.iter().filter_map(|n| match n {
            GeneralName::DNSName(s) => Peer::from_dns_name(s),
            _ => None,
        });
        let first = found.next()?;
        found.all(|p| p == first).then_some(first)
    }

    /// The identity of the client of a gRPC request, from the certificate it presented; None over
    /// plaintext or without a dprox identity.
    pub fn of_request<T>(request: &tonic::Request<T>) -> Option<Peer> {
        let certs = request.peer_certs()?;
        Peer::of_certificate(certs.first()?.as_ref())
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Node(i) => write!(f, "node {i}"),
            Peer::Coordinator => write!(f, "the coordinator"),
            Peer::Operator => write!(f, "an operator"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Peer;

    #[test]
    fn names_round_trip_and_others_are_no_identity() {
        for p in [Peer::Node(0), Peer::Node(17), Peer::Coordinator, Peer::Operator] {
            assert_eq!(Peer::from_dns_name(&p.dns_name()), Some(p));
        }
        for bad in [
            "node-03.dprox",
            "node-.dprox",
            "node-1.dproxx",
            "node-1",
            "x.node-1.dprox",
            "node--1.dprox",
            "localhost",
        ] {
            assert_eq!(Peer::from_dns_name(bad), None, "{bad}");
        }
    }
}
