//! The live status page end to end: `dprox launch --http-addr` serves it, `/api/status` follows
//! the run, `dprox status` prints it (and names the URL when it cannot), and a headless Chromium
//! renders the page with every node and a growing curve (skipped where no Chromium is installed, unless
//! DPROX_REQUIRE_CHROMIUM is set, as CI sets it).
//!
//! The runs are slowed by link shaping so there is time to look; every wait is on observable
//! state (the JSON, the DOM) with a deadline.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use common::{attr, chromium_or_skip, dprox, headless, http_get};
use dprox_coordinator::status::{NodeState, Phase, Status};

/// A 4-node ring whose links take `latency_ms` a message (two exchanges an iteration).
fn config(dir: &Path, iterations: u64, latency_ms: u64) -> PathBuf {
    let text = format!(
        r#"
        [run]
        algorithm = "cdproxsgt"
        iterations = {iterations}
        eval_every = 5
        seed = 3
        [topology]
        kind = "ring"
        nodes = 4
        [data]
        synthetic = {{ kind = "gaussian_mixture", samples = 800, features = 30, classes = 4 }}
        test_fraction = 0.25
        partition = {{ kind = "label_skew", classes_per_node = 2 }}
        [model]
        kind = "softmax"
        [regularizer]
        kind = "l1"
        mu = 0.001
        [optimizer]
        lr = 0.05
        batch_size = 16
        gamma_x = 0.5
        gamma_y = 0.5
        [compression]
        x = {{ kind = "top_k", ratio = 0.3 }}
        y = {{ kind = "top_k", ratio = 0.3 }}
        [network]
        latency_ms = {latency_ms}
        [cluster]
        shape = true
        heartbeat_s = 0.4
        "#
    );
    let p = dir.join("slow.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `dprox launch --http-addr 127.0.0.1:0` in the background, with the URL it printed.
struct Launched {
    child: Child,
    url: String,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Launched {
    /// Starts it; the status page stays up `linger_s` seconds after the run ends.
    fn start(cfg: &Path, out: &Path, linger_s: u32) -> Launched {
        let mut child = dprox()
            .arg("launch")
            .arg(cfg)
            .arg("--out")
            .arg(out)
            .args(["--http-addr", "127.0.0.1:0", "--http-linger-s", &linger_s.to_string(), "-q"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Drain stderr on a thread (a full pipe would stall the launcher) and hand over the URL.
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let (pipe, lines) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("status page: ") {
                    let _ = tx.send(url.to_string());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("no `status page:` line; stderr: {:?}", stderr.lock().unwrap()));
        assert!(url.starts_with("http://127.0.0.1:") && url.ends_with('/'), "{url}");
        Launched { child, url, stderr }
    }

    /// Stops the launcher with SIGTERM (during the linger, when the run is over); it stops the
    /// coordinator and the nodes and exits 1 saying so.
    fn stop(mut self) {
        let ok = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(ok.success());
        let status = self.child.wait().unwrap();
        assert_eq!(status.code(), Some(1));
        // The reader thread takes the last lines a moment after the exit.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.stderr.lock().unwrap().iter().any(|l| l.contains("terminated (SIGTERM)")) {
            assert!(Instant::now() < deadline, "no `terminated` line: {:?}", self.stderr.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the launcher to exit successfully; returns its stdout.
    fn finish(mut self) -> String {
        let mut out = String::new();
        self.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "dprox launch failed: {:?}", self.stderr.lock().unwrap());
        out
    }
}

impl Drop for Launched {
    fn drop(&mut self) {
        // Only matters when an assertion failed midway: do not leave the launcher running.
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn status(url: &str) -> Status {
    let (code, body) = http_get(url, "/api/status");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

fn wait_for(url: &str, what: &str, done: impl Fn(&Status) -> bool) -> Status {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(url);
        if done(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {s:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn min_iteration(s: &Status) -> u64 {
    s.nodes.iter().map(|n| n.iteration).min().unwrap()
}

fn max_iteration(s: &Status) -> u64 {
    s.nodes.iter().map(|n| n.iteration).max().unwrap()
}

fn run_ok(cmd: &mut Command) -> String {
    let o: Output = cmd.output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "failed:\nstdout:\n{out}\nstderr:\n{err}");
    out.into_owned()
}

#[test]
fn launch_serves_the_status_and_dprox_status_prints_it() {
    let dir = tempfile::tempdir().unwrap();
    // The page stays up 5 s after the run, so that `--watch` below sees its end however slowly
    // the processes start.
    let run = Launched::start(&config(dir.path(), 100, 10), &dir.path().join("out"), 5);
    let url = run.url.clone();

    let first = wait_for(&url, "the run to be under way", |s| {
        s.phase == Phase::Running && min_iteration(s) >= 1 && !s.points.is_empty()
    });
    assert_eq!(first.nodes.len(), 4);
    assert_eq!(first.run.algorithm, "cdproxsgt");
    let later = wait_for(&url, "iterations and points to advance", |s| {
        min_iteration(s) > max_iteration(&first) && s.points.len() > first.points.len()
    });
    assert!(later.edges.iter().all(|e| e.a_to_b.payload_bytes > 0 && e.b_to_a.payload_bytes > 0));

    // One look: a header, a row per node with its address, the links and the last point.
    let table = run_ok(dprox().args(["status", &url]));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("run slow-") && lines[0].contains("cdproxsgt on ring, 4 nodes"), "{table}");
    assert!(lines[1].starts_with("node  state"), "{table}");
    for (i, row) in lines[2..6].iter().enumerate() {
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cells[0], i.to_string(), "{table}");
        assert!(matches!(cells[1], "running" | "done"), "{table}");
        assert!(row.contains("127.0.0.1:"), "{table}");
    }
    assert!(lines.iter().any(|l| l.starts_with("links (payload a->b / b->a): 0-1 ")), "{table}");
    assert!(lines.iter().any(|l| l.starts_with("last point: iteration ")), "{table}");

    // Watching: frames until the run is done, the last one with the final point.
    let watched = run_ok(dprox().args(["status", &url, "--watch"]));
    let last_frame = &watched[watched.rfind("run slow-").unwrap()..];
    assert!(last_frame.lines().next().unwrap().ends_with(": done"), "{last_frame}");
    assert!(last_frame.contains("last point: iteration 100,"), "{last_frame}");
    assert_eq!(last_frame.lines().filter(|l| l.contains(" done ")).count(), 4, "{last_frame}");

    let summary = run.finish();
    assert!(summary.contains("4 nodes, 100 iterations"), "{summary}");
}

#[test]
fn dprox_status_errors_name_the_url() {
    let fails = |url: &str| -> String {
        let o = dprox().args(["status", url]).output().unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    // Nothing listening: a port we held and let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/");
    let err = fails(&url);
    assert!(err.contains(&format!("cannot reach the coordinator at {url}")), "{err}");
    assert!(err.to_lowercase().contains("refused"), "{err}");

    // A server that is not a coordinator: a 404, then a 200 that is not JSON.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", server.local_addr().unwrap());
    let answers =
        ["HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found", "HTTP/1.1 200 OK\r\n\r\nhello"];
    let serving = std::thread::spawn(move || {
        for answer in answers {
            let (mut s, _) = server.accept().unwrap();
            // Read the whole request first: closing with unread input would reset the connection.
            let mut reader = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                line.clear();
            }
            s.write_all(answer.as_bytes()).unwrap();
        }
    });
    let err = fails(&url);
    assert!(err.contains(&format!("{url}: HTTP 404 for /api/status")), "{err}");
    let err = fails(&url);
    assert!(err.contains(&format!("{url}: the answer is not a dprox status")), "{err}");
    serving.join().unwrap();
}

fn count(dom: &str) -> u64 {
    attr(dom, "points", "data-count").and_then(|c| c.parse().ok()).expect("#points[data-count]")
}

#[test]
fn the_status_page_renders_in_headless_chromium() {
    let Some(bin) = chromium_or_skip("the_status_page_renders_in_headless_chromium") else { return };
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("chromium");
    // About 12 s here: three Chromium runs of about 2 s each must fit inside it.
    // The page stays up long after the run (the launcher is stopped at the end), so that slow
    // Chromium starts cannot outlast it.
    let run = Launched::start(&config(dir.path(), 240, 25), &dir.path().join("out"), 600);
    let url = run.url.clone();
    wait_for(&url, "two curve points", |s| s.phase == Phase::Running && s.points.len() >= 2);

    let dom1 = headless(&bin, &profile, &url, &["--dump-dom"]);
    for i in 0..4 {
        let state = attr(&dom1, &format!("node-{i}"), "data-state");
        assert!(matches!(state.as_deref(), Some("running" | "done")), "node-{i}: {state:?}\n{dom1}");
    }
    assert!(attr(&dom1, "edge-0-1", "data-ab").is_some_and(|b| b != "0"), "{dom1}");
    let (n1, iter1) = (count(&dom1), attr(&dom1, "node-0", "data-iter").unwrap().parse::<u64>().unwrap());
    assert!(n1 >= 2, "{dom1}");

    // Until the API has more points than the first snapshot drew, then look again.
    wait_for(&url, "more points", |s| s.points.len() as u64 > n1 + 2);
    let dom2 = headless(&bin, &profile, &url, &["--dump-dom"]);
    let (n2, iter2) = (count(&dom2), attr(&dom2, "node-0", "data-iter").unwrap().parse::<u64>().unwrap());
    assert!(n2 > n1, "the curve grew between snapshots: {n1} then {n2}");
    assert!(iter2 > iter1, "node 0 advanced between snapshots: {iter1} then {iter2}");
    let shot = dir.path().join("status.png");
    headless(&bin, &profile, &url, &[&format!("--screenshot={}", shot.display()), "--window-size=1280,800"]);
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a screenshot of {} bytes", png.len());
    // For the docs: DPROX_STATUS_SCREENSHOT=docs/status-page.png keeps this one.
    if let Some(keep) = std::env::var_os("DPROX_STATUS_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }

    let end = wait_for(&url, "the end of the run", |s| s.phase == Phase::Done);
    assert!(end.nodes.iter().all(|n| n.state == NodeState::Done));
    // The coordinator writes the summary (atomically) just after the page says done.
    let path = dir.path().join("out/summary.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(Instant::now() < deadline, "no summary.json");
        std::thread::sleep(Duration::from_millis(20));
    }
    let summary = std::fs::read_to_string(&path).unwrap();
    assert!(summary.contains("\"status\": \"completed\""), "{summary}");
    run.stop();
}
