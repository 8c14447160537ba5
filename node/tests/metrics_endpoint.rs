//! A real run scraped while it trains: three `dprox-node` processes (with `--metrics-addr`)
//! gossiping over loopback, the coordinator in this process. The node's endpoint must show the
//! documented series, the iteration advancing between scrapes, and byte counters that agree
//! with the message size and count and, at the end, with the node's own CSV.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dprox_prepare::Prepared;

const CONFIG: &str = r#"
[run]
algorithm = "dproxsgt"
iterations = 150
eval_every = 50
seed = 3
[topology]
kind = "ring"
nodes = 3
[data]
synthetic = { kind = "least_squares", samples = 300, features = 40 }
[model]
kind = "least_squares"
[optimizer]
lr = 0.02
batch_size = 10
[network]
latency_ms = 10.0
[cluster]
shape = true
"#;

fn get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of the series `name{labels}` (labels written exactly as rendered).
fn value(page: &str, series: &str) -> f64 {
    let line = page
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{page}"));
    line[series.len()..].trim().parse().unwrap()
}

#[test]
fn a_node_endpoint_shows_the_run_as_it_trains() {
    let dir = tempfile::tempdir().unwrap();
    let cfg_path = dir.path().join("run.toml");
    std::fs::write(&cfg_path, CONFIG).unwrap();
    let cfg = dprox_config::parse(CONFIG, &cfg_path).unwrap();
    let run = Arc::new(Prepared::new(cfg, dir.path(), "scrape".into()).unwrap());
    let dim = run.dim();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let coord = listener.local_addr().unwrap().to_string();
    let coordinator = rt.spawn(dprox_coordinator::run(
        run.clone(),
        dprox_coordinator::Options::default(),
        listener,
        std::future::pending(),
    ));

    let out = dir.path().join("out");
    let nodes: Vec<_> = (0..3)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_dprox-node"))
                .arg(&cfg_path)
                .args(["--id", &i.to_string(), "--coordinator", &coord, "--metrics-addr", "127.0.0.1:0"])
                // The coordinator in this process serves plaintext (Options::default).
                .arg("--insecure")
                .args(["--log-format", "json", "--out"])
                .arg(&out)
                // Node 0's log is read below; an unread pipe could fill and stall the others.
                .stderr(if i == 0 { Stdio::piped() } else { Stdio::null() })
                .spawn()
                .unwrap()
        })
        .collect();
    let mut nodes = KillOnDrop(nodes);
    // Node 0 logs its endpoint (JSON lines: the test also proves --log-format json).
    let stderr = BufReader::new(nodes.0[0].stderr.take().unwrap());
    let mut lines = stderr.lines();
    let addr = loop {
        let line = lines.next().expect("node 0 exited before logging its metrics endpoint").unwrap();
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if let Some(a) = v["fields"]["address"].as_str() {
            break a.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});

    // Scrape until the run is under way, then again a little later.
    let deadline = Instant::now() + Duration::from_secs(60);
    let scrape = |min_iter: f64| loop {
        let page = get(&addr, "/metrics");
        if page.contains("dprox_iteration{node=\"0\"}")
            && value(&page, "dprox_iteration{node=\"0\"}") >= min_iter
        {
            return page;
        }
        assert!(Instant::now() < deadline, "node 0 did not reach iteration {min_iter}:\n{page}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let first = scrape(5.0);
    let it1 = value(&first, "dprox_iteration{node=\"0\"}");
    let second = scrape(it1 + 10.0);
    let it2 = value(&second, "dprox_iteration{node=\"0\"}");
    assert!(it2 >= it1 + 10.0 && it2 <= 150.0, "iterations advance: {it1} then {it2}");

    // Dense identity messages: every message is the same size, 2 bytes of tag and flags, a
    // varint length and 4 bytes per value; DProxSGT sends x and y each iteration.
    let msg = (2 + 1 + 4 * dim) as f64;
    for page in [&first, &second] {
        let it = value(page, "dprox_iteration{node=\"0\"}");
        for peer in [1, 2] {
            let sent = value(
                page,
                &format!("dprox_bytes_sent_total{{node=\"0\",peer=\"{peer}\",kind=\"payload\"}}"),
            );
            let count = value(page, &format!("dprox_messages_sent_total{{node=\"0\",peer=\"{peer}\"}}"));
            assert_eq!(sent, count * msg, "payload bytes are messages times their size");
            // Scraped between two updates: at most the next iteration's two messages ahead. The
            // exporter reads the counters a moment before the gauges, so the iteration may be
            // one ahead of them.
            assert!(
                count >= 2.0 * (it - 1.0) && count <= 2.0 * it + 2.0,
                "{count} messages at iteration {it}"
            );
            let received = value(
                page,
                &format!("dprox_bytes_received_total{{node=\"0\",peer=\"{peer}\",kind=\"payload\"}}"),
            );
            assert!(received >= (2.0 * it - 4.0).max(0.0) * msg, "received {received} by iteration {it}");
        }
        assert_eq!(value(page, "dprox_compression_ratio{node=\"0\"}"), 4.0 * dim as f64 / msg);
        assert!(value(page, "dprox_local_loss{node=\"0\"}").is_finite());
        assert!(value(page, "dprox_gradient_seconds_count{node=\"0\"}") >= it1);
        // One wait per message applied, every one in the histogram, and some time spent
        // waiting (messages take at least the shaped 10 ms; how much a given node waits depends
        // on the scheduling, so only its presence is asserted).
        for peer in [1, 2] {
            let waits = value(page, &format!("dprox_wait_seconds_count{{node=\"0\",peer=\"{peer}\"}}"));
            let all =
                value(page, &format!("dprox_wait_seconds_bucket{{node=\"0\",peer=\"{peer}\",le=\"+Inf\"}}"));
            assert!(waits >= 2.0 * it - 4.0 && all == waits, "{waits} waits at iteration {it}");
        }
        let waited: f64 = [1, 2]
            .iter()
            .map(|p| value(page, &format!("dprox_wait_seconds_sum{{node=\"0\",peer=\"{p}\"}}")))
            .sum();
        assert!(waited > 0.0, "node 0 never waited");
    }

    for n in &mut nodes.0 {
        assert!(n.wait().unwrap().success());
    }
    rt.block_on(coordinator).unwrap().unwrap();
    // The node's own CSV (its final counters, over both links) agrees with the message size.
    let csv = std::fs::read_to_string(out.join("nodes/node-0.csv")).unwrap();
    let last: Vec<&str> = csv.lines().last().unwrap().split(',').collect();
    assert_eq!(last[0], "150");
    assert_eq!(
        last[4].parse::<f64>().unwrap(),
        2.0 * 150.0 * 2.0 * msg,
        "2 links x 150 iterations x 2 messages"
    );
}

/// Child processes killed when the test ends, passed or not (a failed assertion must not leave
/// nodes running into the next test).
struct KillOnDrop(Vec<std::process::Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
