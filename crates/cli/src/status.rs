//! `dprox status URL [--watch]`: a coordinator's `/api/status` as a terminal table, once, or every
//! second until the run ends.
//!
//! The coordinator serves the status only with `--http-addr` (`dprox launch --http-addr ...`
//! prints the URL). The request is one HTTP/1.1 GET over a plain TCP stream: the answer is a
//! small JSON document, and a full HTTP client would be a heavy dependency for it.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{Context, bail};
use dprox_coordinator::status::{NodeStatus, Phase, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Arguments of `dprox status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The coordinator's status page: http://HOST:PORT/ as `dprox launch --http-addr` prints it
    /// (or HOST:PORT, or the full http://HOST:PORT/api/status).
    pub url: String,
    /// Refresh every second until the run ends (exits 1 if it was aborted).
    #[arg(long)]
    pub watch: bool,
}

/// Where to send the GET.
#[derive(Debug, PartialEq)]
struct Target {
    /// host:port to connect to.
    authority: String,
    /// The path of the status JSON.
    path: String,
}

/// `http://host:port[/prefix/]` (or without the scheme) to the address and the API path; a URL
/// that already ends in `api/status` is used as is.
fn parse_url(url: &str) -> anyhow::Result<Target> {
    if url.starts_with("https://") {
        bail!("{url}: the coordinator serves plain http (https is not supported)");
    }
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || !authority.contains(':') {
        bail!("{url}: expected http://HOST:PORT/ (the port is required)");
    }
    let path = if path.trim_end_matches('/').ends_with("api/status") {
        path.to_string()
    } else {
        format!("{}/api/status", path.trim_end_matches('/'))
    };
    Ok(Target { authority: authority.to_string(), path })
}

/// Splits a raw HTTP/1.1 response into its status code and (de-chunked) body.
fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").context("a truncated HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let code = status_line
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP response: {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    Ok((code, if chunked { dechunk(body)? } else { body.to_vec() }))
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = body.windows(2).position(|w| w == b"\r\n").context("a truncated chunked body")?;
        let size = std::str::from_utf8(&body[..eol]).ok().and_then(|s| {
            let s = s.split(';').next().unwrap_or_default().trim();
            usize::from_str_radix(s, 16).ok()
        });
        let size = size.context("a malformed chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        let data = body.get(eol + 2..eol + 2 + size).context("a truncated chunk")?;
        out.extend_from_slice(data);
        body = body.get(eol + 4 + size..).unwrap_or_default();
    }
}

/// One GET of the status; every error names the URL.
async fn fetch(url: &str, t: &Target) -> anyhow::Result<Status> {
    let connect = tokio::net::TcpStream::connect(&t.authority);
    let mut stream = match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => bail!("cannot reach the coordinator at {url}: {e}"),
        Err(_) => bail!("cannot reach the coordinator at {url}: no answer within 5 s"),
    };
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        t.path, t.authority
    );
    let mut raw = Vec::new();
    let exchange = async {
        stream.write_all(req.as_bytes()).await?;
        stream.read_to_end(&mut raw).await
    };
    match tokio::time::timeout(Duration::from_secs(10), exchange).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => bail!("{url}: the request failed: {e}"),
        Err(_) => bail!("{url}: no complete answer within 10 s"),
    }
    let (code, body) = parse_response(&raw).with_context(|| url.to_string())?;
    let text = String::from_utf8_lossy(&body);
    if code != 200 {
        let excerpt: String = text.chars().take(200).collect();
        bail!("{url}: HTTP {code} for {} (is this a dprox coordinator?): {excerpt}", t.path);
    }
    serde_json::from_slice(&body).map_err(|e| {
        let excerpt: String = text.chars().take(120).collect();
        anyhow::anyhow!("{url}: the answer is not a dprox status ({e}): {excerpt}")
    })
}

/// Runs `dprox status`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let target = parse_url(&args.url)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        if !args.watch {
            print!("{}", render(&fetch(&args.url, &target).await?));
            return Ok(());
        }
        let clear = std::io::stdout().is_terminal();
        let mut last: Option<Status> = None;
        // The last point is evaluated just after the nodes finish: when the run is done without
        // it, look a few more times (the coordinator keeps serving a moment after the run).
        let mut settle = 3;
        loop {
            let s = match fetch(&args.url, &target).await {
                Ok(s) => s,
                // The coordinator goes away soon after the run ends; say what was seen last.
                Err(e) => match &last {
                    Some(l) if l.phase == Phase::Done => return Ok(()),
                    Some(l) => bail!(
                        "{e:#}\n(the coordinator went away; last seen {} at iteration {})",
                        phase_text(l),
                        min_iteration(l)
                    ),
                    None => return Err(e),
                },
            };
            if clear {
                print!("\x1b[2J\x1b[H");
            } else if last.is_some() {
                println!();
            }
            print!("{}", render(&s));
            let complete = s.points.last().is_some_and(|p| p.iteration >= s.run.iterations);
            match s.phase {
                Phase::Done if complete || settle == 0 => return Ok(()),
                Phase::Done => settle -= 1,
                Phase::Aborted => bail!("the run was aborted: {}", s.reason.as_deref().unwrap_or("")),
                Phase::Waiting | Phase::Running => {}
            }
            last = Some(s);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

/// The iteration of the slowest node taking part (nodes away or joining do not hold it back).
fn min_iteration(s: &Status) -> u64 {
    use dprox_coordinator::status::NodeState::{Crashed, Joining, Left, Lost};
    let taking_part = |n: &&NodeStatus| !matches!(n.state, Left | Crashed | Lost | Joining);
    s.nodes.iter().filter(taking_part).map(|n| n.iteration).min().unwrap_or(0)
}

/// ", epoch 2, 7 of 8 nodes live" once the membership has changed.
fn membership_text(s: &Status) -> String {
    match s.epoch > 0 || !s.events.is_empty() {
        true => format!(", epoch {}, {} of {} nodes live", s.epoch, s.live_nodes, s.nodes.len()),
        false => String::new(),
    }
}

/// Appends the latest membership changes (up to 8), one a line.
fn render_events(o: &mut String, s: &Status) {
    use std::fmt::Write;
    for e in s.events.iter().rev().take(8).rev() {
        let kind =
            serde_json::to_value(e.kind).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
        let link = e.peer.map(|p| format!("-{p}")).unwrap_or_default();
        let _ = writeln!(o, "iteration {}: node {}{link} {kind} (epoch {})", e.iteration, e.node, e.epoch);
    }
}

fn phase_text(s: &Status) -> String {
    match s.phase {
        Phase::Waiting => "waiting for nodes".into(),
        Phase::Running => "running".into(),
        Phase::Done => "done".into(),
        Phase::Aborted => format!("aborted: {}", s.reason.as_deref().unwrap_or("")),
    }
}

/// Bytes in decimal units, 3 significant digits.
fn bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let (mut v, mut i) = (b as f64, 0);
    while v >= 1000.0 && i < UNITS.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else {
        format!("{v:.prec$} {}", UNITS[i], prec = if v < 10.0 { 2 } else { 1 })
    }
}

fn number(v: f64) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "-".into()
    } else if a != 0.0 && !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else {
        format!("{v:.5}")
    }
}

/// The status as text: a header, the node table, the links, and the last curve point.
fn render(s: &Status) -> String {
    use std::fmt::Write;
    let r = &s.run;
    let mut o = String::new();
    let elapsed = s.elapsed_s.map(|e| format!(", {e:.1} s")).unwrap_or_default();
    let _ = writeln!(
        o,
        "run {}: {} on {}, {} nodes, iteration {}/{}{elapsed}{}: {}",
        r.id,
        r.algorithm,
        r.topology,
        s.nodes.len(),
        min_iteration(s),
        r.iterations,
        membership_text(s),
        phase_text(s)
    );
    render_nodes(&mut o, s);
    render_events(&mut o, s);
    render_links(&mut o, s);
    render_last_point(&mut o, s);
    o
}

/// Appends the node table (one row per node, under a header line, each column as wide as its
/// widest cell), then a line per failed node with its error.
fn render_nodes(o: &mut String, s: &Status) {
    use std::fmt::Write;
    let rows: Vec<[String; 9]> = s.nodes.iter().map(node_row).collect();
    let header =
        ["node", "state", "iteration", "heartbeat", "loss", "payload", "framed", "address", "device"];
    let width: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].len()).chain([header[c].len()]).max().unwrap_or(0))
        .collect();
    // Text columns (state, address, device) align left, numbers right.
    let line = |cells: [&str; 9]| {
        let mut l = String::new();
        for (c, cell) in cells.iter().enumerate() {
            let w = width[c];
            let _ =
                if matches!(c, 1 | 7 | 8) { write!(l, "{cell:<w$}  ") } else { write!(l, "{cell:>w$}  ") };
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(o, "{}", line(header));
    for row in &rows {
        let _ = writeln!(o, "{}", line(std::array::from_fn(|c| row[c].as_str())));
    }
    for n in s.nodes.iter().filter(|n| n.error.is_some()) {
        let _ = writeln!(o, "node {} failed: {}", n.id, n.error.as_deref().unwrap_or(""));
    }
}

/// The cells of one node's row of the table, in the header's order.
fn node_row(n: &NodeStatus) -> [String; 9] {
    [
        n.id.to_string(),
        serde_json::to_value(n.state).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default(),
        n.iteration.to_string(),
        n.heartbeat_age_s.map(|a| format!("{a:.1} s")).unwrap_or_else(|| "-".into()),
        n.loss.map(number).unwrap_or_else(|| "-".into()),
        bytes(n.sent.payload_bytes),
        bytes(n.sent.framed_bytes),
        n.address.clone().unwrap_or_else(|| "-".into()),
        n.device.clone().unwrap_or_else(|| "-".into()),
    ]
}

/// Appends the payload sent over each link, both ways, on one line; only for 1 to 16 links
/// (more would not fit a terminal line).
fn render_links(o: &mut String, s: &Status) {
    use std::fmt::Write;
    if !s.edges.is_empty() && s.edges.len() <= 16 {
        let links: Vec<String> = s
            .edges
            .iter()
            .map(|e| {
                format!(
                    "{}-{} {} / {}",
                    e.a,
                    e.b,
                    bytes(e.a_to_b.payload_bytes),
                    bytes(e.b_to_a.payload_bytes)
                )
            })
            .collect();
        let _ = writeln!(o, "links (payload a->b / b->a): {}", links.join(", "));
    }
}

/// Appends the last evaluated point of the curve, or says there is none yet.
fn render_last_point(o: &mut String, s: &Status) {
    use std::fmt::Write;
    match s.points.last() {
        Some(p) => {
            let acc =
                p.test_accuracy.map(|a| format!(", test accuracy {:.2}%", 100.0 * a)).unwrap_or_default();
            let _ = writeln!(
                o,
                "last point: iteration {}, objective {}, consensus error {}{acc}, {} sent, at {:.1} s ({} points)",
                p.iteration,
                number(p.objective),
                number(p.consensus_error),
                bytes(p.bytes_sent),
                p.time_s,
                s.points.len()
            );
        }
        None => {
            let _ = writeln!(o, "no evaluation yet");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_point_at_the_status_json() {
        let t = |a: &str, p: &str| Target { authority: a.into(), path: p.into() };
        assert_eq!(parse_url("http://127.0.0.1:8080/").unwrap(), t("127.0.0.1:8080", "/api/status"));
        assert_eq!(parse_url("127.0.0.1:8080").unwrap(), t("127.0.0.1:8080", "/api/status"));
        assert_eq!(parse_url("http://h:1/dprox/").unwrap(), t("h:1", "/dprox/api/status"));
        assert_eq!(parse_url("http://h:1/api/status").unwrap(), t("h:1", "/api/status"));
        assert!(parse_url("https://h:1/").unwrap_err().to_string().contains("https is not supported"));
        assert!(parse_url("http://host/").unwrap_err().to_string().contains("the port is required"));
    }

    #[test]
    fn responses_are_split_and_dechunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(plain).unwrap(), (200, b"{}".to_vec()));
        let chunked = b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nnot\r\n6;x=1\r\n found\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (404, b"not found".to_vec()));
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").unwrap_err().to_string().contains("not an HTTP response"));
    }

    #[test]
    fn the_table_shows_nodes_links_and_the_last_point() {
        let json = r#"{
          "run": {"name": "r", "id": "r-0a0b0c0d", "algorithm": "cdproxsgt", "topology": "ring",
                  "iterations": 100, "eval_every": 10, "heartbeat_s": 1.0},
          "phase": "aborted", "reason": "node 1 (h:1) failed: boom", "elapsed_s": 3.25,
          "nodes": [
            {"id": 0, "address": "h:0", "device": "cpu", "state": "running", "iteration": 42,
             "heartbeat_age_s": 0.25, "loss": 0.5, "sent": {"payload_bytes": 1234567, "framed_bytes": 1300000},
             "error": null},
            {"id": 1, "address": "h:1", "device": "cuda:0", "state": "failed", "iteration": 40,
             "heartbeat_age_s": 2.0, "loss": null, "sent": {"payload_bytes": 999, "framed_bytes": 1100},
             "error": "boom"}],
          "edges": [{"a": 0, "b": 1, "a_to_b": {"payload_bytes": 1234567, "framed_bytes": 1300000},
                     "b_to_a": {"payload_bytes": 999, "framed_bytes": 1100}}],
          "points": [{"iteration": 40, "time_s": 3.0, "objective": 0.25, "consensus_error": 0.00012,
                      "test_accuracy": 0.9, "bytes_sent": 1235566}]
        }"#;
        let s: Status = serde_json::from_str(json).unwrap();
        let text = render(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "run r-0a0b0c0d: cdproxsgt on ring, 2 nodes, iteration 40/100, 3.2 s: aborted: node 1 (h:1) failed: boom"
        );
        assert_eq!(
            lines[1],
            "node  state    iteration  heartbeat     loss  payload   framed  address  device"
        );
        assert_eq!(lines[2], "   0  running         42      0.2 s  0.50000  1.23 MB  1.30 MB  h:0      cpu");
        assert_eq!(
            lines[3],
            "   1  failed          40      2.0 s        -    999 B  1.10 kB  h:1      cuda:0"
        );
        assert_eq!(lines[4], "node 1 failed: boom");
        assert_eq!(lines[5], "links (payload a->b / b->a): 0-1 1.23 MB / 999 B");
        assert_eq!(
            lines[6],
            "last point: iteration 40, objective 0.25000, consensus error 1.200e-4, test accuracy 90.00%, \
             1.24 MB sent, at 3.0 s (1 points)"
        );
    }

    #[test]
    fn membership_changes_are_shown_and_away_nodes_do_not_hold_progress_back() {
        let json = r#"{
          "run": {"name": "r", "id": "r-0a0b0c0d", "algorithm": "cdproxsgt", "topology": "ring",
                  "iterations": 300, "eval_every": 10, "heartbeat_s": 1.0},
          "phase": "running", "reason": null, "elapsed_s": 2.0,
          "nodes": [
            {"id": 0, "address": "h:0", "device": "cpu", "state": "running", "iteration": 160,
             "heartbeat_age_s": 0.25, "loss": 0.5, "sent": {"payload_bytes": 1, "framed_bytes": 2}, "error": null},
            {"id": 1, "address": "h:1", "device": "cpu", "state": "left", "iteration": 100,
             "heartbeat_age_s": 9.0, "loss": 0.5, "sent": {"payload_bytes": 1, "framed_bytes": 2}, "error": null},
            {"id": 2, "address": "h:2", "device": "cpu", "state": "running", "iteration": 161,
             "heartbeat_age_s": 0.25, "loss": 0.5, "sent": {"payload_bytes": 1, "framed_bytes": 2}, "error": null}],
          "edges": [], "points": [], "epoch": 2, "live_nodes": 2,
          "events": [{"iteration": 100, "node": 1, "kind": "leave", "epoch": 1},
                     {"iteration": 150, "node": 0, "peer": 2, "kind": "link_down", "epoch": 2}]
        }"#;
        let s: Status = serde_json::from_str(json).unwrap();
        let text = render(&s);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "run r-0a0b0c0d: cdproxsgt on ring, 3 nodes, iteration 160/300, 2.0 s, epoch 2, 2 of 3 nodes live: running"
        );
        assert_eq!(lines[5], "iteration 100: node 1 leave (epoch 1)");
        assert_eq!(lines[6], "iteration 150: node 0-2 link_down (epoch 2)");
    }
}
