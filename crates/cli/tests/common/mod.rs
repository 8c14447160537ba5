//! Helpers shared by the command-line tests: running `dprox`, reading metrics files, finding
//! the processes a launcher started, and reading a status page.
#![allow(dead_code)] // each test file uses its own subset

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The `dprox` binary under test.
pub fn dprox() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dprox"))
}

/// A file of the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path)
}

/// The named columns of a CSV file, row by row.
pub fn columns(path: &Path, names: &[&str]) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let idx: Vec<usize> = names
        .iter()
        .map(|n| header.iter().position(|h| h == n).unwrap_or_else(|| panic!("no column {n}")))
        .collect();
    lines
        .map(|l| l.split(',').collect::<Vec<_>>())
        .map(|f| idx.iter().map(|&i| f[i].to_string()).collect())
        .collect()
}

/// The processes `pid` started (from /proc; needs no extra tool).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut v = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        v.extend(text.split_whitespace().map(|c| c.parse::<u32>().unwrap()));
    }
    v
}

/// The command line of process `pid`, split at its NULs.
pub fn cmdline(pid: u32) -> Vec<String> {
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmd.split(|&b| b == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

/// Among the children of `launcher`: the coordinator (`None`) or node `id`, once it runs.
pub fn wait_for_child(launcher: u32, id: Option<usize>) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let found = children_of(launcher).into_iter().find(|&pid| {
            let args = cmdline(pid);
            match id {
                None => args.get(1).is_some_and(|a| a == "coordinator"),
                Some(id) => args.windows(2).any(|w| w[0] == "--id" && w[1] == id.to_string()),
            }
        });
        if let Some(pid) = found {
            return pid;
        }
        assert!(Instant::now() < deadline, "{id:?} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Alive: present in /proc and not a zombie (a container's init may not reap orphans).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// SIGKILL to `pid`.
pub fn kill9(pid: u32) {
    assert!(Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap().success());
}

/// A process killed when the test ends, passed or not (a launcher's processes then exit by
/// themselves).
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Waits (at most `secs`) until `done` holds; the error says what never happened.
#[must_use = "a timeout is an error to report"]
pub fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        if Instant::now() >= deadline {
            return Err(format!("timed out after {secs} s waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// GET `path` from `url`'s host: (status code, body).
pub fn http_get(url: &str, path: &str) -> (u16, String) {
    let authority = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(authority).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_string())
}

/// Chromium for `what`; where there is none, skips with a message, unless
/// DPROX_REQUIRE_CHROMIUM is set (as CI sets it): then a missing browser fails the test instead
/// of passing it unseen.
pub fn chromium_or_skip(what: &str) -> Option<PathBuf> {
    let bin = chromium();
    if bin.is_none() {
        assert!(
            std::env::var_os("DPROX_REQUIRE_CHROMIUM").is_none(),
            "DPROX_REQUIRE_CHROMIUM is set but no chromium was found (set CHROMIUM to its path)"
        );
        eprintln!("skipping {what}: no chromium found (set CHROMIUM)");
    }
    bin
}

/// Chromium, if this machine has one: $CHROMIUM, else the usual names on the PATH.
pub fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let names = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .flat_map(|d| names.map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `url` with `args`, for at most 60 s; returns its stdout.
pub fn headless(bin: &Path, profile: &Path, url: &str, args: &[&str]) -> String {
    let mut child = Command::new(bin)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        .arg(format!("--user-data-dir={}", profile.display()))
        // Virtual time: the page gets 1.5 s of timers (three polls) however slow the machine.
        .arg("--virtual-time-budget=1500")
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = String::new();
    let mut pipe = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let _ = pipe.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    reader.join().unwrap()
}

/// The value of attribute `name` on the element whose id is `id`, in a serialised DOM.
pub fn attr(dom: &str, id: &str, name: &str) -> Option<String> {
    let at = dom.find(&format!("id=\"{id}\""))?;
    let start = dom[..at].rfind('<')?;
    let tag = &dom[start..start + dom[start..].find('>')?];
    let v = &tag[tag.find(&format!(" {name}=\""))? + name.len() + 3..];
    Some(v[..v.find('"')?].to_string())
}

/// `deploy/cluster/ring4.toml` with `iterations` and the bundled data's absolute path, plus
/// `extra` TOML, written into `dir`.
pub fn ring4(dir: &Path, iterations: u64, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(repo("deploy/cluster/ring4.toml")).unwrap();
    let data = repo("data/mnist_5k.csv.gz");
    let text = text
        .replace("iterations = 300", &format!("iterations = {iterations}"))
        .replace("../../data/mnist_5k.csv.gz", data.to_str().unwrap());
    let p = dir.join("ring4.toml");
    std::fs::write(&p, format!("{text}\n{extra}")).unwrap();
    p
}

/// The columns a cluster reproduces from the simulator.
pub const SIM_COLUMNS: [&str; 5] = ["iter", "objective", "consensus_error", "test_accuracy", "bytes_sent"];

/// Runs `dprox sim` on `cfg` into `dir/sim` and returns its metrics' [`SIM_COLUMNS`].
pub fn sim_columns(cfg: &Path, dir: &Path) -> Vec<Vec<String>> {
    let sim = dir.join("sim");
    assert!(dprox().arg("sim").arg(cfg).arg("--out").arg(&sim).arg("-q").status().unwrap().success());
    columns(&sim.join("metrics.csv"), &SIM_COLUMNS)
}
