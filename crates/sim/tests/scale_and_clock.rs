//! The simulator at scale (256 nodes), its independence from the thread count, and its clock.

fn prepare(text: &str) -> dprox_prepare::Prepared {
    let cfg = dprox_config::parse(text, "t.toml".as_ref()).unwrap();
    dprox_prepare::Prepared::new(cfg, ".".as_ref(), "t".into()).unwrap()
}

fn run_rows(run: &dprox_prepare::Prepared) -> Vec<(f64, f64, u64, f64)> {
    let mut rows = Vec::new();
    dprox_sim::simulate(run, None, |e| {
        if let dprox_sim::Event::Row(r) = e {
            rows.push((r.eval.objective, r.eval.consensus_error, r.bytes_sent, r.sim_time_s));
        }
    })
    .unwrap();
    rows
}

#[test]
fn two_hundred_fifty_six_nodes_train_and_agree_whatever_the_thread_count() {
    let run = prepare(
        r#"
        [run]
        algorithm = "cdproxsgt"
        iterations = 60
        eval_every = 30
        [topology]
        kind = "exponential"
        nodes = 256
        [data]
        synthetic = { kind = "gaussian_mixture", samples = 25600, features = 16, classes = 4 }
        partition = { kind = "label_skew", classes_per_node = 2 }
        [model]
        kind = "softmax"
        [optimizer]
        lr = 0.02
        batch_size = 16
        gamma_x = 0.5
        gamma_y = 0.5
        [compression]
        x = { kind = "top_k", ratio = 0.3 }
        y = { kind = "top_k", ratio = 0.3 }
        "#,
    );
    assert_eq!(run.n(), 256);
    let many = run_rows(&run);
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| run_rows(&run));
    assert_eq!(many, one, "results must not depend on the number of threads");
    let (first, last) = (many[0], many[2]);
    assert!(last.0 < 0.5 * first.0, "objective {} -> {}", first.0, last.0);
    assert!(last.2 > 0);
}

#[test]
fn the_clock_charges_compute_latency_and_bandwidth() {
    // 4-node ring, DProxSGT, full batch of 50 samples x 9 features (+ bias = 10 parameters) per
    // node: compute = 50 x 6 x 10 flops / (gflops x speed); each of the 2 exchanges costs
    // latency + bytes / bandwidth with 44-byte messages (2 + 1 + 10 x 4 + ... see encoded_len).
    let text = |speed0: f64| {
        format!(
            r#"
            [run]
            algorithm = "dproxsgt"
            iterations = 10
            eval_every = 10
            [topology]
            kind = "ring"
            nodes = 4
            [data]
            synthetic = {{ kind = "least_squares", samples = 200, features = 9 }}
            [model]
            kind = "least_squares"
            [optimizer]
            lr = 0.01
            [network]
            latency_ms = 2.0
            bandwidth_mbps = 0.008   # 1,000 bytes per second
            gflops = 0.000001        # 1,000 flop per second
            [[nodes]]
            id = 0
            speed = {speed0}
            "#
        )
    };
    let msg_bytes = 2.0 + 1.0 + 10.0 * 4.0; // tag, flags, dim varint, 10 f32
    let compute = 50.0 * 6.0 * 10.0 / 1000.0; // 3 s
    let exchange = 0.002 + msg_bytes / 1000.0;
    let homogeneous = run_rows(&prepare(&text(1.0)));
    let t = homogeneous.last().unwrap().3;
    assert!((t - 10.0 * (compute + 2.0 * exchange)).abs() < 1e-9, "{t}");
    // Node 0 at half speed paces the whole ring: every iteration waits for its 6 s of compute.
    let straggler = run_rows(&prepare(&text(0.5)));
    let t = straggler.last().unwrap().3;
    assert!((t - 10.0 * (2.0 * compute + 2.0 * exchange)).abs() < 1e-9, "{t}");
    // Same iterates: the clock never changes the numbers.
    assert_eq!(homogeneous.last().unwrap().0, straggler.last().unwrap().0);
}

/// `balance = "throughput"`: node 0 at a quarter speed gets a quarter of a fast node's samples
/// (the 40 per iteration are kept), and the ring no longer waits for its gradient.
#[test]
fn balancing_by_speed_sizes_batches_and_stops_the_wait_for_the_straggler() {
    let text = |balance: &str| {
        format!(
            r#"
            [run]
            algorithm = "dproxsgt"
            iterations = 10
            eval_every = 10
            balance = "{balance}"
            [topology]
            kind = "ring"
            nodes = 4
            [data]
            synthetic = {{ kind = "least_squares", samples = 200, features = 9 }}
            [model]
            kind = "least_squares"
            [optimizer]
            lr = 0.01
            batch_size = 10
            [network]
            latency_ms = 2.0
            gflops = 0.000001        # 1,000 flop per second: 60 ms per sample
            [[nodes]]
            id = 0
            speed = 0.25
            "#
        )
    };
    use dprox_core::BatchSize;
    let balanced = prepare(&text("throughput"));
    let sizes: Vec<BatchSize> = (0..4).map(|i| balanced.batch_size(i)).collect();
    assert_eq!(sizes, [3, 13, 12, 12].map(BatchSize::Samples), "40 samples split 0.25 : 1 : 1 : 1");
    let none = prepare(&text("none"));
    assert!((0..4).all(|i| none.batch_size(i) == BatchSize::Samples(10)));
    let (t_none, t_bal) = (run_rows(&none).last().unwrap().3, run_rows(&balanced).last().unwrap().3);
    // Unbalanced: 10 x 60 ms / 0.25 = 2.4 s of compute per iteration; balanced: at most
    // 13 x 60 ms = 0.78 s (plus the same exchanges).
    assert!(t_none > 24.0 && t_bal < 8.0 + 1.0, "{t_none} s vs {t_bal} s");
}
