//! Checks of the CUDA backend that need no GPU: the kernels compile with NVRTC (where libnvrtc
//! loads), and each cuBLAS configuration of `raw.rs`, run through a plain-loop emulation of
//! column-major sgemm/sgemv, computes the row-major product its doc names.

use cudarc::cublas::sys::cublasOperation_t::{self, CUBLAS_OP_N};
use cudarc::cublas::{GemmConfig, GemvConfig};

use super::raw;

/// cuBLAS sgemm semantics: C = alpha op(A) op(B) + beta C, column-major.
fn sgemm(cfg: &GemmConfig<f32>, a: &[f32], b: &[f32], c: &mut [f32]) {
    let (m, n, k) = (cfg.m as usize, cfg.n as usize, cfg.k as usize);
    let (lda, ldb, ldc) = (cfg.lda as usize, cfg.ldb as usize, cfg.ldc as usize);
    let op = |t: cublasOperation_t, x: &[f32], ld: usize, r: usize, col: usize| {
        if t == CUBLAS_OP_N { x[r + col * ld] } else { x[col + r * ld] }
    };
    for j in 0..n {
        for i in 0..m {
            let mut acc = 0.0f64;
            for l in 0..k {
                acc += f64::from(op(cfg.transa, a, lda, i, l)) * f64::from(op(cfg.transb, b, ldb, l, j));
            }
            let old = c[i + j * ldc];
            c[i + j * ldc] = cfg.alpha * acc as f32 + if cfg.beta == 0.0 { 0.0 } else { cfg.beta * old };
        }
    }
}

/// cuBLAS sgemv semantics for trans = N: y = alpha A x + beta y, column-major.
fn sgemv(cfg: &GemvConfig<f32>, a: &[f32], x: &[f32], y: &mut [f32]) {
    assert_eq!(cfg.trans, CUBLAS_OP_N);
    let (m, n, lda) = (cfg.m as usize, cfg.n as usize, cfg.lda as usize);
    for (i, yi) in y.iter_mut().enumerate().take(m) {
        let acc: f64 = (0..n).map(|j| f64::from(a[i + j * lda]) * f64::from(x[j])).sum();
        *yi = cfg.alpha * acc as f32 + cfg.beta * *yi;
    }
}

fn seq(len: usize, seed: f32) -> Vec<f32> {
    (0..len).map(|t| ((t as f32 * 0.37 + seed).sin() * 10.0).round() / 4.0).collect()
}

fn assert_close(a: &[f32], b: &[f32]) {
    for (t, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-4 * y.abs().max(1.0), "entry {t}: {x} vs {y}");
    }
}

#[test]
fn gemm_configs_compute_the_row_major_products() {
    let (rows, i, o) = (5, 4, 3);
    let inp = seq(rows * i, 0.1); // rows x i
    let w = seq(o * i, 0.7); // o x i
    let d = seq(rows * o, 1.3); // rows x o

    // forward: out = inp W^T.
    let mut out = vec![f32::NAN; rows * o];
    sgemm(&raw::forward_cfg(rows, i, o), &w, &inp, &mut out);
    let want: Vec<f32> =
        (0..rows * o).map(|t| (0..i).map(|c| inp[t / o * i + c] * w[t % o * i + c]).sum()).collect();
    assert_close(&out, &want);

    // weight_grad: g += d^T inp.
    let g0 = seq(o * i, 2.9);
    let mut g = g0.clone();
    sgemm(&raw::weight_grad_cfg(rows, i, o), &inp, &d, &mut g);
    let want: Vec<f32> = (0..o * i)
        .map(|t| g0[t] + (0..rows).map(|r| d[r * o + t / i] * inp[r * i + t % i]).sum::<f32>())
        .collect();
    assert_close(&g, &want);

    // input_grad: p = d W.
    let mut p = vec![f32::NAN; rows * i];
    sgemm(&raw::input_grad_cfg(rows, i, o), &w, &d, &mut p);
    let want: Vec<f32> =
        (0..rows * i).map(|t| (0..o).map(|j| d[t / i * o + j] * w[j * i + t % i]).sum()).collect();
    assert_close(&p, &want);

    // bias_grad: gb += column sums of d.
    let gb0 = seq(o, 4.1);
    let mut gb = gb0.clone();
    sgemv(&raw::bias_grad_cfg(rows, o), &d, &vec![1.0; rows], &mut gb);
    let want: Vec<f32> = (0..o).map(|j| gb0[j] + (0..rows).map(|r| d[r * o + j]).sum::<f32>()).collect();
    assert_close(&gb, &want);
}

#[test]
fn kernels_compile_with_nvrtc() {
    if !raw::libraries().nvrtc {
        assert!(std::env::var_os("DPROX_REQUIRE_CUDA").is_none(), "libnvrtc not loadable");
        println!("skipping: libnvrtc not loadable");
        return;
    }
    if let Err(e) = super::kernels::ptx() {
        panic!("the kernels do not compile: {e}");
    }
}
