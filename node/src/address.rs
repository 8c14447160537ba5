//! Who a node is and where its peers reach it, on a machine it shares with nobody: the id from
//! the command line or the scheduler's environment, and the gossip address it advertises (never
//! an unspecified address such as 0.0.0.0, which a peer cannot dial).

use std::net::SocketAddr;

/// Environment variables that carry a node's id, in the order they are tried after `--id`:
/// dprox's own, a Kubernetes Indexed Job's, Slurm's task rank.
pub const ID_VARIABLES: [&str; 3] = ["DPROX_NODE_ID", "JOB_COMPLETION_INDEX", "SLURM_PROCID"];

/// The node's id: `flag` when given, else the first of [`ID_VARIABLES`] that is set (read by
/// `env`); with where it came from, for the log.
pub fn node_id(flag: Option<usize>, env: impl Fn(&str) -> Option<String>) -> Result<(usize, String), String> {
    if let Some(id) = flag {
        return Ok((id, "--id".into()));
    }
    for var in ID_VARIABLES {
        if let Some(v) = env(var) {
            let id = v.trim().parse().map_err(|_| format!("{var}={v:?} is not a node id"))?;
            return Ok((id, var.into()));
        }
    }
    Err(format!("no node id: pass --id N, or set one of {}", ID_VARIABLES.join(", ")))
}

/// Whether `address` (HOST:PORT) names no host a peer could dial: 0.0.0.0, [::], or port 0.
fn unspecified(address: &str) -> bool {
    match address.parse::<SocketAddr>() {
        Ok(a) => a.ip().is_unspecified() || a.port() == 0,
        Err(_) => address.rsplit_once(':').is_none_or(|(host, port)| host.is_empty() || port == "0"),
    }
}

/// The gossip address the node registers: `advertise` (`--advertise`) when given, else its
/// `[[nodes]] address` when that names a host, else the address it is bound to when that is a
/// specific one, else `hostname`:PORT. An unspecified address given explicitly is refused.
pub fn advertised(
    advertise: Option<&str>,
    configured: Option<&str>,
    bound: SocketAddr,
    hostname: impl FnOnce() -> Option<String>,
) -> Result<String, String> {
    if let Some(a) = advertise {
        if unspecified(a) {
            return Err(format!(
                "--advertise {a}: peers cannot dial an unspecified address or port 0; give a host name or IP they can reach"
            ));
        }
        return Ok(a.to_string());
    }
    if let Some(a) = configured.filter(|a| !unspecified(a)) {
        return Ok(a.to_string());
    }
    if !bound.ip().is_unspecified() {
        return Ok(bound.to_string());
    }
    match hostname().map(|h| h.trim().to_string()).filter(|h| !h.is_empty()) {
        Some(host) => Ok(format!("{host}:{}", bound.port())),
        None => Err(format!(
            "listening on {bound}, which peers cannot dial, and this machine has no host name: pass --advertise HOST:PORT"
        )),
    }
}

/// This machine's host name (Linux).
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_id_comes_from_the_flag_then_the_scheduler() {
        assert_eq!(node_id(Some(3), env(&[("SLURM_PROCID", "1")])), Ok((3, "--id".into())));
        assert_eq!(node_id(None, env(&[("SLURM_PROCID", "1")])), Ok((1, "SLURM_PROCID".into())));
        let both = env(&[("SLURM_PROCID", "1"), ("JOB_COMPLETION_INDEX", "5")]);
        assert_eq!(node_id(None, both), Ok((5, "JOB_COMPLETION_INDEX".into())));
        assert_eq!(
            node_id(None, env(&[("DPROX_NODE_ID", "x")])),
            Err("DPROX_NODE_ID=\"x\" is not a node id".into())
        );
        assert_eq!(
            node_id(None, env(&[])),
            Err("no node id: pass --id N, or set one of DPROX_NODE_ID, JOB_COMPLETION_INDEX, SLURM_PROCID"
                .into())
        );
    }

    #[test]
    fn the_advertised_address_is_one_a_peer_can_dial() {
        let any: SocketAddr = "0.0.0.0:7102".parse().unwrap();
        let host = || Some("node-2.example\n".to_string());
        assert_eq!(advertised(Some("10.0.0.2:7102"), None, any, host), Ok("10.0.0.2:7102".into()));
        assert_eq!(advertised(None, Some("node-2:7102"), any, host), Ok("node-2:7102".into()));
        assert_eq!(advertised(None, Some("0.0.0.0:7102"), any, host), Ok("node-2.example:7102".into()));
        let bound: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(advertised(None, None, bound, host), Ok("127.0.0.1:4000".into()));
        assert_eq!(advertised(None, None, any, host), Ok("node-2.example:7102".into()));
        for bad in ["0.0.0.0:7102", "[::]:7102", "10.0.0.2:0", ":7102", "node-2"] {
            let e = advertised(Some(bad), None, any, host).unwrap_err();
            assert!(e.starts_with(&format!("--advertise {bad}: peers cannot dial")), "{e}");
        }
        let e = advertised(None, None, any, || None).unwrap_err();
        assert_eq!(
            e,
            "listening on 0.0.0.0:7102, which peers cannot dial, and this machine has no host name: pass --advertise HOST:PORT"
        );
    }
}
