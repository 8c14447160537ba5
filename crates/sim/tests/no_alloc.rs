//! The per-iteration loop allocates nothing once warmed up: vectors, messages and buffers are
//! reused. Counted with a global allocator wrapper (the only unsafe code in the workspace, here
//! because `GlobalAlloc` is an unsafe trait).
//!
//! The model here has sparse features, so its gradient runs dprox's own loops. Dense models call
//! matrixmultiply's GEMM, which allocates its packing buffer inside each call (two per gradient
//! for a linear model, 14 per chunk for a LeNet): that is the library's, measured separately
//! below, for a dense linear model and for a LeNet.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn allocations_per_step(algorithm: &str, compression: &str, batch: &str, data: &str) -> u64 {
    allocations_per_step_of("kind = \"logistic\"", algorithm, compression, batch, data)
}

fn allocations_per_step_of(model: &str, algorithm: &str, compression: &str, batch: &str, data: &str) -> u64 {
    let text = format!(
        r#"
        [run]
        algorithm = "{algorithm}"
        iterations = 100
        [topology]
        kind = "torus"
        nodes = 16
        [data]
        {data}
        [model]
        {model}
        [regularizer]
        kind = "l1"
        mu = 0.001
        [optimizer]
        lr = 0.1
        batch_size = {batch}
        gamma_x = 0.5
        gamma_y = 0.5
        [compression]
        {compression}
        "#
    );
    let cfg = dprox_config::parse(&text, "t.toml".as_ref()).unwrap();
    let run = dprox_prepare::Prepared::new(cfg, ".".as_ref(), "t".into()).unwrap();
    let mut sim = dprox_sim::Simulation::new(&run).unwrap();
    for _ in 0..5 {
        sim.step().unwrap(); // warm-up: buffers grow to size, rayon starts its threads
    }
    let before = ALLOCS.load(Ordering::SeqCst);
    for _ in 0..20 {
        sim.step().unwrap();
    }
    (ALLOCS.load(Ordering::SeqCst) - before) / 20
}

#[test]
fn the_iteration_loop_does_not_allocate() {
    for (alg, comp, batch) in [
        ("dproxsgt", "", "16"),
        (
            "cdproxsgt",
            r#"x = { kind = "top_k", ratio = 0.1 }
        y = { kind = "rand_k", ratio = 0.2 }"#,
            "16",
        ),
        (
            "cdproxsgt",
            r#"x = { kind = "qsgd", levels = 4 }
        y = { kind = "sign" }"#,
            "\"full\"",
        ),
        ("choco", r#"x = { kind = "top_k", ratio = 0.1 }"#, "8"),
        ("dpsgd", "", "16"),
        ("allreduce", "", "16"),
    ] {
        let sparse =
            r#"synthetic = { kind = "sparse_logistic", samples = 800, features = 50, density = 0.2 }"#;
        assert_eq!(allocations_per_step(alg, comp, batch, sparse), 0, "{alg} {comp} batch {batch}");
    }
    // (One test function: the counter is global, and tests in one binary run in parallel.)
    // Dense: 16 nodes x 2 GEMM calls (forward, backward) of a dense logistic model.
    let dense = r#"synthetic = { kind = "sparse_logistic", samples = 800, features = 50 }"#;
    let per_step = allocations_per_step("cdproxsgt", r#"x = { kind = "top_k", ratio = 0.1 }"#, "16", dense);
    assert!(per_step <= 32, "{per_step} allocations per step");
    // A LeNet on 12 x 12 images (one chunk per minibatch of 16): 16 nodes x 14 GEMM calls (5
    // forward, 9 backward); im2col, col2im, pooling and the head reuse the model's scratch.
    let images = r#"synthetic = { kind = "gaussian_mixture", samples = 800, features = 144, classes = 3 }"#;
    let lenet = r#"kind = "lenet"
        init = "seeded""#;
    let per_step = allocations_per_step_of(lenet, "dproxsgt", "", "16", images);
    assert!(per_step <= 16 * 14, "{per_step} allocations per step");
}
