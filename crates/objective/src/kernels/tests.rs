use super::*;
use crate::conv::Conv;

/// Deterministic values in [-1, 1) with a spread of exponents.
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * if s & 1 == 0 { 1.0 } else { 0.01 }
        })
        .collect()
}

/// (rows, k, n): LeNet's shapes, and widths and lengths that leave partial vectors and blocks
/// of both vector widths.
const SHAPES: [(usize, usize, usize); 10] = [
    (50, 25, 6),
    (37, 150, 16),
    (9, 7, 1),
    (13, 33, 20),
    (4, 8, 8),
    (1, 1, 3),
    (70, 150, 24),
    (29, 41, 12),
    (45, 19, 32),
    (31, 40, 5),
];

/// The kernels this CPU runs, the SIMD ones compared below against the portable chains.
fn isas() -> Vec<Isa> {
    let widest = Isa::widest();
    [Isa::Portable, Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|&isa| isa == Isa::Portable || isa == widest || (isa == Isa::Avx2 && widest == Isa::Avx512))
        .collect()
}

/// f64 reference of `cols w^T + b`.
fn forward_f64(cols: &[f32], k: usize, w: &[f32], b: &[f32], n: usize) -> Vec<f64> {
    cols.chunks_exact(k)
        .flat_map(|row| {
            (0..n).map(move |j| {
                f64::from(b[j])
                    + row
                        .iter()
                        .zip(&w[j * k..(j + 1) * k])
                        .map(|(&a, &x)| f64::from(a) * f64::from(x))
                        .sum::<f64>()
            })
        })
        .collect()
}

fn close(got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((f64::from(g) - w).abs() <= 1e-5 * (1.0 + w.abs()), "entry {i}: {g} against {w}");
    }
}

#[test]
fn forward_matches_the_f64_product_and_the_portable_chains_bit_for_bit() {
    for (seed, &(rows, k, n)) in SHAPES.iter().enumerate() {
        let (cols, w, b) = (values(rows * k, seed as u64), values(n * k, 100 + seed as u64), values(n, 7));
        let mut out = vec![f32::NAN; rows * n];
        forward(Stored::new(&cols, k), &w, Some(&b), n, &mut out, &mut Scratch::default());
        close(&out, &forward_f64(&cols, k, &w, &b, n));
        let mut s = Scratch::default();
        let (np, mut wt) = (padded(n, LANES), vec![0.0; padded(n, LANES) * k]);
        for j in 0..n {
            for kk in 0..k {
                wt[kk * np + j] = w[j * k + kk];
            }
        }
        let mut bp = vec![0.0; np];
        bp[..n].copy_from_slice(&b);
        let mut port = vec![f32::NAN; rows * n];
        portable::forward(Stored::new(&cols, k), &wt, &bp, n, &mut port);
        assert_eq!(out, port, "shape {rows} x {k} x {n}");
        for isa in isas() {
            out.fill(f32::NAN);
            forward_on(isa, Stored::new(&cols, k), &w, Some(&b), n, &mut out, &mut s);
            assert_eq!(out, port, "{isa:?}, shape {rows} x {k} x {n}");
            // Without a bias the chain starts from zero.
            forward_on(isa, Stored::new(&cols, k), &w, None, n, &mut out, &mut s);
            close(&out, &forward_f64(&cols, k, &w, &vec![0.0; n], n));
        }
    }
}

#[test]
fn weight_grad_adds_dout_t_cols_and_the_column_sums() {
    for (seed, &(rows, k, n)) in SHAPES.iter().enumerate() {
        let (cols, dout) = (values(rows * k, seed as u64), values(rows * n, 50 + seed as u64));
        let (mut gw, mut gb) = (vec![1.0f32; n * k], vec![2.0f32; n]);
        weight_grad(Stored::new(&cols, k), &dout, n, &mut gw, Some(&mut gb), &mut Scratch::default());
        let want: Vec<f64> = (0..n * k)
            .map(|i| {
                let (j, kk) = (i / k, i % k);
                1.0 + (0..rows).map(|m| f64::from(dout[m * n + j]) * f64::from(cols[m * k + kk])).sum::<f64>()
            })
            .collect();
        close(&gw, &want);
        let want_b: Vec<f64> =
            (0..n).map(|j| 2.0 + (0..rows).map(|m| f64::from(dout[m * n + j])).sum::<f64>()).collect();
        close(&gb, &want_b);
        // The portable chains give the same bits.
        let np = padded(n, LANES);
        let mut acc = vec![0.0; k * np];
        portable::weight_grad(Stored::new(&cols, k), &dout, n, np, &mut acc);
        let port: Vec<f32> = (0..n * k).map(|i| 1.0 + acc[(i % k) * np + i / k]).collect();
        assert_eq!(gw, port, "shape {rows} x {k} x {n}");
        let mut gb_port = vec![2.0f32; n];
        portable::bias_grad(&dout, &mut gb_port);
        assert_eq!(gb, gb_port, "shape {rows} x {k} x {n}");
        let mut s = Scratch::default();
        for isa in isas() {
            let (mut gw_isa, mut gb_isa) = (vec![1.0f32; n * k], vec![2.0f32; n]);
            weight_grad_on(isa, Stored::new(&cols, k), &dout, n, &mut gw_isa, Some(&mut gb_isa), &mut s);
            assert_eq!(gw_isa, port, "{isa:?}, shape {rows} x {k} x {n}");
            assert_eq!(gb_isa, gb, "{isa:?}, shape {rows} x {k} x {n}");
        }
    }
}

#[test]
fn input_grad_writes_dout_w() {
    for (seed, &(rows, k, n)) in SHAPES.iter().enumerate() {
        let (dout, w) = (values(rows * n, seed as u64), values(n * k, 9 + seed as u64));
        let mut dcols = vec![f32::NAN; rows * k];
        input_grad(&dout, n, &w, k, &mut dcols, &mut Scratch::default());
        let want: Vec<f64> = (0..rows * k)
            .map(|i| {
                let (m, kk) = (i / k, i % k);
                (0..n).map(|j| f64::from(dout[m * n + j]) * f64::from(w[j * k + kk])).sum::<f64>()
            })
            .collect();
        close(&dcols, &want);
        let kp = padded(k, LANES);
        let mut wp = vec![0.0; n * kp];
        for j in 0..n {
            wp[j * kp..j * kp + k].copy_from_slice(&w[j * k..(j + 1) * k]);
        }
        let mut port = vec![f32::NAN; rows * k];
        portable::input_grad(&dout, n, &wp, kp, k, &mut port);
        assert_eq!(dcols, port, "shape {rows} x {k} x {n}");
        let mut s = Scratch::default();
        for isa in isas() {
            dcols.fill(f32::NAN);
            input_grad_on(isa, &dout, n, &w, k, &mut dcols, &mut s);
            assert_eq!(dcols, port, "{isa:?}, shape {rows} x {k} x {n}");
        }
    }
}

#[test]
fn the_simd_kernels_run_here_when_the_cpu_has_them() {
    // On x86-64 CI machines (AVX2 since 2013) the comparisons above test the SIMD kernels
    // against the portable ones; say which ran. AVX-512 is tested where the CPU has it.
    eprintln!(
        "kernels compared: {:?}; LeNet's 6 and 16 channels run on {:?} and {:?}",
        isas(),
        Isa::for_width(6),
        Isa::for_width(16)
    );
    #[cfg(target_arch = "x86_64")]
    assert!(
        Isa::widest() != Isa::Portable || std::env::var_os("DPROX_ALLOW_NO_AVX2").is_some(),
        "this x86-64 CPU lacks AVX2/FMA"
    );
}

#[test]
fn avx512_serves_a_width_only_where_it_wastes_no_lanes() {
    let wide: Vec<usize> = (1..=40).filter(|&n| Isa::Avx512.narrow(n) == Isa::Avx512).collect();
    assert_eq!(wide, [9, 10, 11, 12, 13, 14, 15, 16, 25, 26, 27, 28, 29, 30, 31, 32]);
    assert!((1..=40).all(|n| Isa::Avx512.narrow(n) != Isa::Portable && Isa::Avx2.narrow(n) == Isa::Avx2));
}

/// Convolutions whose patches the gathered reads must reproduce: LeNet's first (one channel
/// plane, border 2), a colour image with a border of 1, and LeNet's second (channels
/// innermost, no border).
fn convs() -> [(Conv, usize); 3] {
    use crate::conv::MapLayout::{Chw, Hwc};
    [
        (Conv { cin: 1, h: 28, w: 28, k: 5, pad: 2, layout: Chw }, 6),
        (Conv { cin: 3, h: 9, w: 11, k: 3, pad: 1, layout: Chw }, 16),
        (Conv { cin: 6, h: 14, w: 14, k: 5, pad: 0, layout: Hwc }, 16),
    ]
}

/// Patch value `kk` = (ky, kx, ci) of output position `r` = (b, oy, ox), from the definition:
/// the input at (oy + ky - pad, ox + kx - pad) in channel ci, zero outside the map.
fn patch_value(conv: &Conv, input: &[f32], r: usize, kk: usize) -> f32 {
    let (b, pos) = (r / conv.positions(), r % conv.positions());
    let (oy, ox) = (pos / conv.wout(), pos % conv.wout());
    let (ky, kx, ci) = (kk / (conv.k * conv.cin), kk / conv.cin % conv.k, kk % conv.cin);
    let (Some(iy), Some(ix)) = ((oy + ky).checked_sub(conv.pad), (ox + kx).checked_sub(conv.pad)) else {
        return 0.0;
    };
    if iy >= conv.h || ix >= conv.w {
        return 0.0;
    }
    let at = match conv.layout {
        crate::conv::MapLayout::Chw => (ci * conv.h + iy) * conv.w + ix,
        crate::conv::MapLayout::Hwc => (iy * conv.w + ix) * conv.cin + ci,
    };
    input[b * conv.cin * conv.h * conv.w + at]
}

#[test]
fn gathered_patches_give_the_stored_patches_bits_on_every_kernel() {
    for (seed, (conv, n)) in convs().into_iter().enumerate() {
        let (batch, k) = (3, conv.patch());
        let rows = batch * conv.positions();
        let input = values(batch * conv.cin * conv.h * conv.w, 200 + seed as u64);
        let mut cols = vec![f32::NAN; rows * k];
        crate::conv::im2col(&conv, &input, batch, &mut cols, &mut Vec::new());
        let mut in_place = crate::conv::InPlace::default();
        in_place.fill(&conv, &input, batch);
        let gathered = in_place.patches();
        assert_eq!((gathered.rows(), gathered.k()), (rows, k));
        let stored = Stored::new(&cols, k);
        for r in 0..rows {
            for kk in 0..k {
                let want = patch_value(&conv, &input, r, kk);
                assert_eq!(gathered.get(r, kk).to_bits(), want.to_bits(), "row {r}, value {kk}");
                assert_eq!(stored.get(r, kk).to_bits(), want.to_bits(), "row {r}, value {kk}");
            }
        }
        let (w, b, dout) = (values(n * k, 300), values(n, 301), values(rows * n, 302));
        let mut s = Scratch::default();
        for isa in isas() {
            let (mut want, mut got) = (vec![0.0; rows * n], vec![0.0; rows * n]);
            forward_on(isa, stored, &w, Some(&b), n, &mut want, &mut s);
            forward_on(isa, gathered, &w, Some(&b), n, &mut got, &mut s);
            assert_eq!(got, want, "{isa:?} forward, {conv:?}");
            let (mut want, mut got) = ((vec![0.5; n * k], vec![0.25; n]), (vec![0.5; n * k], vec![0.25; n]));
            weight_grad_on(isa, stored, &dout, n, &mut want.0, Some(&mut want.1), &mut s);
            weight_grad_on(isa, gathered, &dout, n, &mut got.0, Some(&mut got.1), &mut s);
            assert_eq!(got, want, "{isa:?} weight gradient, {conv:?}");
        }
    }
}

#[test]
fn gathered_patches_refuse_tables_that_leave_the_maps() {
    let maps = [0.0f32; 10];
    let fits = std::panic::catch_unwind(|| Gathered::new(&maps, &[0, 4], &[0, 5]).rows());
    assert_eq!(fits.ok(), Some(2));
    let past = std::panic::catch_unwind(|| Gathered::new(&maps, &[0, 5], &[0, 5]));
    let msg = past.expect_err("reads maps[10]").downcast::<String>().expect("a formatted message");
    assert_eq!(*msg, "the patches lie inside the maps (10 of 10)");
    assert!(std::panic::catch_unwind(|| Gathered::new(&maps, &[4, 0], &[0])).is_err(), "rows must ascend");
}
