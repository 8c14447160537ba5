//! Transport benchmark: a small exchange's round trip against a bare gRPC round trip,
//! throughput for dense vectors of 1e4, 1e6 and 1e7 f32 against raw loopback TCP, and the CPU
//! time per byte moved (sender and receiver together: plaintext, mutual TLS, and plaintext with
//! the bytes in shared memory) against a memcpy
//! of the same bytes, all measured in this run. Run: `cargo bench -p dprox-transport`.
use std::time::{Duration, Instant};

use bytes::Bytes;
use dprox_compress::{Body, Compressed, Compressor, CompressorSpec, ValueFormat};
use dprox_transport::{Auth, GossipService, PayloadPool, PeerClient, pb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

// The binaries use mimalloc (see crates/cli): glibc's malloc returns large buffers to the kernel
// and page-faults them back in on every message.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn gossip_server(dim: usize) -> String {
    gossip_server_with(dim, &dprox_net::Security::Insecure).await
}

async fn gossip_server_with(dim: usize, security: &dprox_net::Security) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (atx, arx) = watch::channel(Some(Auth { run_id: "b".into(), token: vec![1; 16], peers: vec![1] }));
    let (tx, mut rx) = mpsc::channel::<dprox_transport::Inbound>(64);
    // As in the node: applied payloads go back to the pool.
    let pool = PayloadPool::default();
    let back = pool.clone();
    tokio::spawn(async move {
        let _keep = atx;
        while let Some(m) = rx.recv().await {
            back.give(m.payload);
        }
    });
    let tls = !matches!(security, dprox_net::Security::Insecure);
    let svc =
        GossipService::new(dim, arx, tx, Duration::from_secs(5)).with_pool(pool).with_tls(tls).into_server();
    // As the node serves: its accept loop (limits, and the TLS handshake when secured).
    let limits = dprox_net::limits::GOSSIP;
    tokio::spawn(
        dprox_transport::server(security, &limits)
            .unwrap()
            .add_service(svc)
            .serve_with_incoming(dprox_net::incoming(listener, limits, "gossip", tls)),
    );
    addr
}

/// Raw TCP: the client writes the payload, the server reads it all and answers one byte.
async fn raw_tcp_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; 4 << 20];
        loop {
            let mut len = [0u8; 8];
            if s.read_exact(&mut len).await.is_err() {
                return;
            }
            let mut left = u64::from_le_bytes(len) as usize;
            while left > 0 {
                let n = s.read(&mut buf[..left.min(4 << 20)]).await.unwrap();
                left -= n;
            }
            s.write_all(&[1]).await.unwrap();
        }
    });
    addr
}

fn header(len: usize) -> pb::Header {
    pb::Header {
        run_id: "b".into(),
        token: vec![1; 16].into(),
        from: 1,
        iteration: 0,
        exchange: 0,
        length: len as u64,
        epoch: 0,
    }
}

/// CPU seconds this process has used (user + system, all threads; 10 ms ticks).
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(") ").map_or(vec![], |(_, r)| r.split(' ').collect());
    let ticks = |k: usize| fields.get(k).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat(5) (utime, stime), counted from the state field (3).
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU nanoseconds per byte for `reps` messages of `n` f32 over gRPC secured by `security`
/// (sender and receiver both in this process).
async fn grpc_cpu_per_byte(
    n: usize,
    reps: usize,
    security: &dprox_net::Security,
    client: &dprox_net::Security,
) -> f64 {
    let addr = gossip_server_with(n, security).await;
    let mut c = PeerClient::new(0, &addr, client).unwrap();
    let values: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let mut b = Vec::new();
    Compressed { dim: n, body: Body::Dense { format: ValueFormat::F32, values } }.encode(&mut b);
    let data = Bytes::from(b);
    c.send(header(data.len()), data.clone(), None).await.unwrap();
    let t = cpu_s();
    for _ in 0..reps {
        c.send(header(data.len()), data.clone(), None).await.unwrap();
    }
    (cpu_s() - t) * 1e9 / (reps * data.len()) as f64
}

/// CPU nanoseconds per byte for `reps` messages of `n` f32 over one link in the receiver's shared
/// memory (plaintext gRPC carrying the slots), each queued once the one before has arrived.
async fn memory_cpu_per_byte(n: usize, reps: usize) -> f64 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (atx, arx) = watch::channel(Some(Auth { run_id: "b".into(), token: vec![1; 16], peers: vec![1] }));
    let (tx, mut rx) = mpsc::channel::<dprox_transport::Inbound>(64);
    let pool = PayloadPool::default();
    let svc = GossipService::new(n, arx, tx, Duration::from_secs(5))
        .with_pool(pool.clone())
        .with_shared_memory(true)
        .into_server();
    let limits = dprox_net::limits::GOSSIP;
    let plain = dprox_net::Security::Insecure;
    let server = dprox_transport::server(&plain, &limits).unwrap().add_service(svc);
    tokio::spawn(server.serve_with_incoming(dprox_net::incoming(listener, limits, "gossip", false)));
    let client = PeerClient::new(0, &addr, &plain).unwrap().with_shared_memory(true);
    let values: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let mut b = Vec::new();
    Compressed { dim: n, body: Body::Dense { format: ValueFormat::F32, values } }.encode(&mut b);
    let data = Bytes::from(b);
    let (queue, mut queued) = mpsc::unbounded_channel();
    let mut link = client.clone();
    let first = (header(data.len()), data.clone());
    let call = tokio::spawn(async move { link.push_queue(first, &mut queued, None, |_| {}).await });
    let mut arrive = async || pool.give(rx.recv().await.expect("the message arrives").payload);
    arrive().await;
    assert!(client.in_shared_memory(), "the link opened the receiver's segment");
    let t = cpu_s();
    for _ in 0..reps {
        queue.send((header(data.len()), data.clone())).unwrap();
        arrive().await;
    }
    let cpu = cpu_s() - t;
    drop(queue);
    call.await.unwrap().unwrap();
    drop(atx);
    cpu * 1e9 / (reps * data.len()) as f64
}

/// CPU nanoseconds per byte of a memcpy of `n` f32, `reps` times (buffers reused).
fn memcpy_cpu_per_byte(n: usize, reps: usize) -> f64 {
    let src: Vec<u8> = (0..4 * n).map(|i| i as u8).collect();
    let mut dst = vec![0u8; 4 * n];
    let len = dst.len();
    let t = cpu_s();
    for k in 0..reps {
        dst.copy_from_slice(&src);
        dst[k % len] ^= 1;
        std::hint::black_box(&mut dst);
    }
    (cpu_s() - t) * 1e9 / (reps * 4 * n) as f64
}

/// The CPU a byte costs through gRPC (plaintext and mutual TLS) against a memcpy, alternating
/// so that both see the same machine.
async fn cpu_per_byte() {
    let dir = tempfile::tempdir().unwrap();
    dprox_net::certs::make(dir.path(), 2).unwrap();
    // The server is node 0 (the client's peer), the client node 1 (the messages' sender).
    let server = dprox_net::Security::load(dir.path(), dprox_net::Peer::Node(0)).unwrap();
    let client = dprox_net::Security::load(dir.path(), dprox_net::Peer::Node(1)).unwrap();
    let plain = dprox_net::Security::Insecure;
    let (n, reps) = (1_000_000usize, 100);
    println!("CPU per byte moved, 1e6-f32 messages (sender + receiver), against memcpy:");
    println!(
        "{:>6} {:>12} {:>12} {:>12} {:>12} {:>10} {:>10} {:>10}",
        "round", "memcpy ns/B", "gRPC ns/B", "TLS ns/B", "shm ns/B", "gRPC/cp", "TLS/cp", "shm/cp"
    );
    for round in 0..3 {
        let cp = memcpy_cpu_per_byte(n, 10 * reps);
        let g = grpc_cpu_per_byte(n, reps, &plain, &plain).await;
        let t = grpc_cpu_per_byte(n, reps, &server, &client).await;
        let m = memory_cpu_per_byte(n, reps).await;
        println!(
            "{round:>6} {cp:>12.3} {g:>12.3} {t:>12.3} {m:>12.3} {:>10.1} {:>10.1} {:>10.1}",
            g / cp,
            t / cp,
            m / cp
        );
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        cpu_per_byte().await;
        println!("transport benchmark (loopback, medians)");
        // Small exchange: a top-k 1% message of a 1e4 model vs a bare gRPC round trip (Ping).
        let dim = 10_000;
        let addr = gossip_server(dim).await;
        let mut client = PeerClient::new(0, &addr, &dprox_net::Security::Insecure).unwrap();
        let v: Vec<f32> = (0..dim).map(|i| (i as f32).sin()).collect();
        let mut m = Compressed::new(dim);
        Compressor::new(CompressorSpec::TopK { ratio: 0.01, values: ValueFormat::F32 }, dim)
            .unwrap()
            .compress(&v, 0, &mut m);
        let mut b = Vec::new();
        m.encode(&mut b);
        let small = Bytes::from(b);
        for _ in 0..50 {
            client.ping(Duration::from_secs(5)).await.unwrap();
            client.send(header(small.len()), small.clone(), None).await.unwrap();
        }
        let mut ping = Vec::new();
        let mut exch = Vec::new();
        for _ in 0..500 {
            let t = Instant::now();
            client.ping(Duration::from_secs(5)).await.unwrap();
            ping.push(t.elapsed());
            let t = Instant::now();
            client.send(header(small.len()), small.clone(), None).await.unwrap();
            exch.push(t.elapsed());
        }
        let (p, e) = (median(ping), median(exch));
        println!(
            "small exchange ({} bytes, top-k 1% of 1e4): {:.1} us; bare gRPC round trip {:.1} us; ratio {:.2}",
            small.len(),
            e.as_secs_f64() * 1e6,
            p.as_secs_f64() * 1e6,
            e.as_secs_f64() / p.as_secs_f64()
        );
        println!("{:>10} {:>14} {:>14} {:>8}", "f32s", "gRPC GB/s", "raw TCP GB/s", "ratio");
        for (n, reps) in [(10_000usize, 400), (1_000_000, 60), (10_000_000, 20)] {
            let addr = gossip_server(n).await;
            let mut client = PeerClient::new(0, &addr, &dprox_net::Security::Insecure).unwrap();
            let values: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let mut b = Vec::new();
            Compressed { dim: n, body: Body::Dense { format: ValueFormat::F32, values } }.encode(&mut b);
            let data = Bytes::from(b);
            client.send(header(data.len()), data.clone(), None).await.unwrap();
            let raw_addr = raw_tcp_server().await;
            let mut s = tokio::net::TcpStream::connect(&raw_addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut ack = [0u8; 1];
            // gRPC and raw TCP alternate, message by message, so that both see the same machine
            // (the ratio is the median of the per-pair ratios; other load shifts both).
            let (mut g, mut r, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for k in 0..=reps {
                let t = Instant::now();
                client.send(header(data.len()), data.clone(), None).await.unwrap();
                let tg = t.elapsed();
                let t = Instant::now();
                s.write_all(&(data.len() as u64).to_le_bytes()).await.unwrap();
                s.write_all(&data).await.unwrap();
                s.read_exact(&mut ack).await.unwrap();
                let tr = t.elapsed();
                if k > 0 {
                    g.push(tg);
                    r.push(tr);
                    ratios.push(tr.as_secs_f64() / tg.as_secs_f64());
                }
            }
            ratios.sort_by(f64::total_cmp);
            let gbps = |d: Duration| data.len() as f64 / d.as_secs_f64() / 1e9;
            let (gm, rm) = (median(g), median(r));
            println!("{:>10} {:>14.2} {:>14.2} {:>8.2}", n, gbps(gm), gbps(rm), ratios[ratios.len() / 2]);
        }
    });
}
