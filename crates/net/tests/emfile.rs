//! The accept loop when the process has no file descriptor left (EMFILE): it backs off instead
//! of spinning, and accepts again once descriptors are free. Alone in its file: it lowers the
//! process's descriptor limit.

use std::net::TcpStream;
use std::time::Duration;

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage, setrlimit};
use tokio_stream::StreamExt;

fn cpu_seconds() -> f64 {
    let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 * 1e-6;
    t(u.user_time()) + t(u.system_time())
}

/// Descriptors open now (the listing's own descriptor, open while it counts, left out).
fn open_descriptors() -> u64 {
    std::fs::read_dir("/proc/self/fd").unwrap().count() as u64 - 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_descriptors_the_accept_loop_waits_then_accepts_again() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Clients connect first (the kernel completes them in the backlog), then the limit drops to
    // what is open: every accept fails with EMFILE.
    let clients: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
    // The limit is on descriptor numbers: lower it a little above what is open, then fill every
    // free number below it.
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, open_descriptors() + 16, hard).unwrap();
    let mut filler = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        filler.push(f);
    }
    assert!(!filler.is_empty());
    let mut conns = dprox_net::incoming(listener, dprox_net::limits::GOSSIP, "test", false);
    let cpu0 = cpu_seconds();
    let early = tokio::time::timeout(Duration::from_millis(1500), conns.next()).await;
    let spent = cpu_seconds() - cpu0;
    let waits = dprox_net::listener::accept_waits();
    drop(filler);
    setrlimit(Resource::RLIMIT_NOFILE, soft, hard).unwrap();
    assert!(early.is_err(), "nothing can be accepted without descriptors");
    // Backing off 10, 20, 40, ... ms: at most 8 waits in 1.5 s (a loop that retried every
    // millisecond would make ~1,500; one that spun, millions, and burn the 1.5 s of CPU).
    assert!((1..=8).contains(&waits), "{waits} waits in 1.5 s");
    assert!(spent < 0.5, "the accept loop used {spent:.3} s of CPU in 1.5 s");
    let next = tokio::time::timeout(Duration::from_secs(3), conns.next()).await;
    assert!(matches!(next, Ok(Some(Ok(_)))), "accepts again within the back-off: {next:?}");
    drop(clients);
}
