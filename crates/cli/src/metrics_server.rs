//! `dprox sim --metrics-addr`: the simulator runs on the main thread without an async runtime,
//! so its Prometheus endpoint is served from a thread of its own while the run lasts.

use std::net::SocketAddr;

use anyhow::Context;
use dprox_eval::MetricsRow;
use dprox_telemetry::names;

/// The endpoint; dropping it stops the server.
pub(crate) struct MetricsServer {
    /// Where `GET /metrics` is served.
    pub(crate) addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsServer {
    /// Binds `addr` (port 0 picks one) and serves the process-wide recorder there.
    pub(crate) fn start(addr: &str) -> anyhow::Result<MetricsServer> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(addr))
            .with_context(|| format!("binding --metrics-addr {addr}"))?;
        let bound = listener.local_addr()?;
        let router = dprox_telemetry::router(dprox_telemetry::install());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = rt.block_on(dprox_telemetry::serve(listener, router, shutdown)) {
                tracing::warn!("metrics endpoint stopped: {e}");
            }
        });
        Ok(MetricsServer { addr: bound, stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the simulator publishes: the iteration of every node (they advance together) and the
/// run's metrics at each evaluation point.
pub(crate) struct SimGauges {
    iteration: Vec<metrics::Gauge>,
    bytes: metrics::Gauge,
}

impl SimGauges {
    pub(crate) fn new(nodes: usize) -> SimGauges {
        SimGauges {
            iteration: (0..nodes)
                .map(|i| metrics::gauge!(names::ITERATION, "node" => i.to_string()))
                .collect(),
            bytes: metrics::gauge!(names::RUN_BYTES_SENT),
        }
    }

    pub(crate) fn iteration(&self, t: u64) {
        for g in &self.iteration {
            g.set(t as f64);
        }
    }

    pub(crate) fn row(&self, r: &MetricsRow) {
        metrics::gauge!(names::OBJECTIVE).set(r.eval.objective);
        metrics::gauge!(names::CONSENSUS_ERROR).set(r.eval.consensus_error);
        if let Some(a) = r.eval.test_accuracy {
            metrics::gauge!(names::TEST_ACCURACY).set(a);
        }
        metrics::gauge!(names::EVAL_ITERATION).set(r.iter as f64);
        self.bytes.set(r.bytes_sent as f64);
    }
}
