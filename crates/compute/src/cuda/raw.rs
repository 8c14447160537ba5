//! Every `unsafe` call of the CUDA backend, each behind a safe function that checks the sizes its
//! SAFETY argument relies on (the workspace denies `unsafe_code`; this module alone allows it).
//!
//! Layout conventions: every matrix is row-major, as in `dprox-objective`. cuBLAS is
//! column-major, so a row-major (r x c) matrix is handed to it as the column-major (c x r) matrix
//! with leading dimension c, and each product below is the transposed identity of the one named.

use std::sync::Arc;

use cudarc::cublas::sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, Gemv, GemvConfig};
use cudarc::driver::{
    CudaContext, CudaSlice, CudaStream, CudaView, CudaViewMut, DriverError, LaunchConfig, PushKernelArg,
};

use super::Fail;
use super::kernels::{Kernels, REDUCE_THREADS};

/// Which of the libraries that the CUDA backend loads at run time can be loaded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Libraries {
    /// libcuda (the driver).
    pub(crate) driver: bool,
    /// libnvrtc (the run-time compiler of the kernels).
    pub(crate) nvrtc: bool,
    /// libcublas (the matrix products).
    pub(crate) cublas: bool,
}

/// Tries to load each library. cudarc panics on the first call into a library it cannot load,
/// so this runs before any such call.
pub(crate) fn libraries() -> Libraries {
    // SAFETY: each check only dlopen()s the library's candidate file names and closes them again;
    // it calls no function of the library, so no library initialiser contract is involved beyond
    // the loader's own.
    unsafe {
        Libraries {
            driver: cudarc::driver::sys::is_culib_present(),
            nvrtc: cudarc::nvrtc::sys::is_culib_present(),
            cublas: cudarc::cublas::sys::is_culib_present(),
        }
    }
}

/// Turns off cudarc's per-buffer event tracking on `ctx`, before any buffer is allocated on it.
pub(crate) fn disable_event_tracking(ctx: &CudaContext) {
    // SAFETY: cudarc's contract is that the caller then orders work across streams itself. In
    // this crate every buffer is allocated, used and freed on the one stream of the objective that
    // owns it, so no buffer is ever touched by two streams and stream order is the only order
    // needed. (With tracking on, each kernel argument costs an event record and wait per launch.)
    unsafe { ctx.disable_event_tracking() }
}

/// Grid-stride launch shape for `n` elements.
fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(256).clamp(1, 65_535) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// A row count, column count or leading dimension as the `int` that CUDA and cuBLAS take. The
/// constructors reject data whose sizes do not fit, so this cannot fail after them.
fn int(v: usize) -> i32 {
    i32::try_from(v).expect("sizes were checked to fit in i32 at construction")
}

/// `out` (rows x cols) = the rows `idx` of `data` (? x cols). Every index must be below
/// `data.len() / cols` (the caller checks the batch on the host before uploading it).
pub(crate) fn gather_rows(
    stream: &Arc<CudaStream>,
    k: &Kernels,
    data: &CudaSlice<f32>,
    idx: &CudaView<'_, i32>,
    rows: usize,
    cols: usize,
    out: &mut CudaViewMut<'_, f32>,
) -> Result<(), Fail> {
    assert!(idx.len() >= rows && out.len() >= rows * cols, "gather buffers too small");
    let (r, c) = (int(rows), int(cols));
    let mut b = stream.launch_builder(&k.gather_rows);
    b.arg(data).arg(idx).arg(&r).arg(&c).arg(out);
    // SAFETY: the arguments match `gather_rows(const float*, const int*, int, int, float*)` in
    // order and type; it reads idx[0..rows] (checked above), data rows idx[r] (in range: checked by
    // the caller against the data's row count before upload) and writes out[0..rows*cols]
    // (checked above).
    unsafe { b.launch(grid(rows * cols)) }?;
    Ok(())
}

/// `z` (rows x cols) = act(`z` + `b`), with `b` (cols) broadcast over the rows when given.
pub(crate) fn bias_act(
    stream: &Arc<CudaStream>,
    k: &Kernels,
    z: &mut CudaViewMut<'_, f32>,
    b: Option<&CudaView<'_, f32>>,
    rows: usize,
    cols: usize,
    act: i32,
) -> Result<(), Fail> {
    assert!(z.len() >= rows * cols && b.is_none_or(|b| b.len() >= cols), "bias_act buffers too small");
    let (has, r, c) = (i32::from(b.is_some()), int(rows), int(cols));
    // Without a bias the kernel never dereferences b: a null device pointer stands in.
    let null: u64 = 0;
    let mut l = stream.launch_builder(&k.bias_act);
    l.arg(z);
    match b {
        Some(b) => l.arg(b),
        None => l.arg(&null),
    };
    l.arg(&has).arg(&r).arg(&c).arg(&act);
    // SAFETY: arguments match `bias_act(float*, const float*, int, int, int, int)` (a device
    // pointer is a u64 CUdeviceptr, so the null stand-in has the pointer's size); it touches
    // z[0..rows*cols] and, only when has_bias, b[0..cols], both checked above.
    unsafe { l.launch(grid(rows * cols)) }?;
    Ok(())
}

/// `d` *= act'(`a`) over the first `n` entries.
pub(crate) fn mul_act_deriv(
    stream: &Arc<CudaStream>,
    k: &Kernels,
    d: &mut CudaViewMut<'_, f32>,
    a: &CudaView<'_, f32>,
    n: usize,
    act: i32,
) -> Result<(), Fail> {
    assert!(d.len() >= n && a.len() >= n, "mul_act_deriv buffers too small");
    let n64 = n as i64;
    let mut l = stream.launch_builder(&k.mul_act_deriv);
    l.arg(d).arg(a).arg(&n64).arg(&act);
    // SAFETY: arguments match `mul_act_deriv(float*, const float*, long long, int)`; it touches
    // d[0..n] and a[0..n], checked above.
    unsafe { l.launch(grid(n)) }?;
    Ok(())
}

/// Every entry of `x` = `v`.
pub(crate) fn fill(
    stream: &Arc<CudaStream>,
    k: &Kernels,
    x: &mut CudaSlice<f32>,
    v: f32,
) -> Result<(), Fail> {
    let n = x.len();
    let n64 = n as i64;
    let mut l = stream.launch_builder(&k.fill);
    l.arg(x).arg(&n64).arg(&v);
    // SAFETY: arguments match `fill(float*, long long, float)`; it writes x[0..n], n = x.len().
    unsafe { l.launch(grid(n)) }?;
    Ok(())
}

/// Where the head finds each row's label.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rows {
    /// Samples `start..start + rows` of the local data.
    Range(usize),
    /// The samples listed in the index buffer.
    Indexed,
}

/// The per-sample loss head over `z` (rows x m); see the `head` kernel. `idx` must hold the
/// chunk's indices when `rows` is [`Rows::Indexed`] (any buffer otherwise).
pub(crate) struct Head<'a> {
    /// `HEAD_*` code.
    pub(crate) kind: i32,
    /// Outputs per sample.
    pub(crate) m: usize,
    /// Samples in the chunk.
    pub(crate) rows: usize,
    /// Where the labels are.
    pub(crate) select: Rows,
    /// The targets of all local samples.
    pub(crate) targets: &'a CudaSlice<f32>,
    /// The chunk's sample indices (for [`Rows::Indexed`]).
    pub(crate) idx: &'a CudaSlice<i32>,
    /// 1 / batch size: dLoss/dz comes out scaled for the mean.
    pub(crate) scale: f64,
}

/// Runs the head: `z` becomes scale * dLoss/dz, `loss` and `correct` get one entry per row.
pub(crate) fn head(
    stream: &Arc<CudaStream>,
    k: &Kernels,
    h: &Head<'_>,
    z: &mut CudaViewMut<'_, f32>,
    loss: &mut CudaSlice<f64>,
    correct: &mut CudaSlice<f64>,
) -> Result<(), Fail> {
    let n = h.targets.len();
    let (use_idx, start) = match h.select {
        Rows::Range(start) => {
            assert!(start + h.rows <= n, "head range out of the data");
            (0i32, start)
        }
        Rows::Indexed => {
            assert!(h.idx.len() >= h.rows, "head index buffer too small");
            (1i32, 0)
        }
    };
    assert!(z.len() >= h.rows * h.m && loss.len() >= h.rows && correct.len() >= h.rows, "head buffers");
    let (rows, m, start) = (int(h.rows), int(h.m), int(start));
    let mut l = stream.launch_builder(&k.head);
    l.arg(&h.kind)
        .arg(z)
        .arg(&rows)
        .arg(&m)
        .arg(h.targets)
        .arg(h.idx)
        .arg(&use_idx)
        .arg(&start)
        .arg(&h.scale)
        .arg(loss)
        .arg(correct);
    let cfg = LaunchConfig {
        grid_dim: (h.rows.div_ceil(128) as u32, 1, 1),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: arguments match `head(int, float*, int, int, const float*, const int*, int, int,
    // double, double*, double*)`; thread r < rows touches z[r*m..(r+1)*m], loss[r], correct[r]
    // (sizes checked above) and targets[s] with s = start + r < n (checked) or s = idx[r], an index
    // the caller checked against n before upload.
    unsafe { l.launch(cfg) }?;
    Ok(())
}

/// `out[2 slot]` = sum of `a[0..n]`, `out[2 slot + 1]` = sum of `b[0..n]`.
pub(crate) fn reduce_pair(
    stream: &Arc<CudaStream>,
    k: &Kernels,
    a: &CudaSlice<f64>,
    b: &CudaSlice<f64>,
    n: usize,
    out: &mut CudaSlice<f64>,
    slot: usize,
) -> Result<(), Fail> {
    assert!(a.len() >= n && b.len() >= n && out.len() >= 2 * slot + 2, "reduce buffers too small");
    let (n, slot) = (int(n), int(slot));
    let mut l = stream.launch_builder(&k.reduce_pair);
    l.arg(a).arg(b).arg(&n).arg(out).arg(&slot);
    let cfg = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (REDUCE_THREADS, 1, 1), shared_mem_bytes: 0 };
    // SAFETY: arguments match `reduce_pair(const double*, const double*, int, double*, int)`; it
    // reads a[0..n], b[0..n] and writes out[2 slot], out[2 slot + 1] (checked above); the block
    // size equals the kernel's shared arrays (256).
    unsafe { l.launch(cfg) }?;
    Ok(())
}

/// The geometry of a stride-1 k x k convolution of cin x h x w maps, zero-padded by `pad`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvGeom {
    /// Input channels.
    pub(crate) cin: usize,
    /// Input height.
    pub(crate) h: usize,
    /// Input width.
    pub(crate) w: usize,
    /// Kernel size.
    pub(crate) k: usize,
    /// Zero padding on each side.
    pub(crate) pad: usize,
    /// Channels innermost (every map inside the network) rather than channel planes (the input).
    pub(crate) hwc: bool,
}

impl ConvGeom {
    /// Output height.
    pub(crate) fn hout(&self) -> usize {
        self.h + 2 * self.pad + 1 - self.k
    }
    /// Output width.
    pub(crate) fn wout(&self) -> usize {
        self.w + 2 * self.pad + 1 - self.k
    }
    /// Output positions per sample.
    pub(crate) fn positions(&self) -> usize {
        self.hout() * self.wout()
    }
    /// Values per patch.
    pub(crate) fn patch(&self) -> usize {
        self.k * self.k * self.cin
    }
    /// Values per input map.
    pub(crate) fn map(&self) -> usize {
        self.cin * self.h * self.w
    }
    /// The kernels' int arguments: cin, h, w, k, pad, hwc.
    fn args(&self) -> [i32; 6] {
        [int(self.cin), int(self.h), int(self.w), int(self.k), int(self.pad), i32::from(self.hwc)]
    }
}

/// `cols` (batch*positions x patch) = the patches of `batch` input maps in `input`.
pub(crate) fn im2col(
    stream: &Arc<CudaStream>,
    k: &Kernels,
    g: &ConvGeom,
    input: &CudaView<'_, f32>,
    batch: usize,
    cols: &mut CudaViewMut<'_, f32>,
) -> Result<(), Fail> {
    let total = batch * g.positions() * g.patch();
    assert!(input.len() >= batch * g.map() && cols.len() >= total, "im2col sizes");
    let [cin, h, w, kk, pad, hwc] = g.args();
    let b = int(batch);
    let mut l = stream.launch_builder(&k.im2col);
    l.arg(input).arg(&b).arg(&cin).arg(&h).arg(&w).arg(&kk).arg(&pad).arg(&hwc).arg(cols);
    // SAFETY: arguments match `im2col(const float*, int x7, float*)`; it writes cols[0..total] and
    // reads input entries of the batch's maps only (indices inside each map are bounds-checked in
    // the kernel), sizes checked above.
    unsafe { l.launch(grid(total)) }?;
    Ok(())
}

/// `input` (batch maps) = the adjoint of im2col applied to `cols`.
pub(crate) fn col2im(
    stream: &Arc<CudaStream>,
    k: &Kernels,
    g: &ConvGeom,
    cols: &CudaView<'_, f32>,
    batch: usize,
    input: &mut CudaViewMut<'_, f32>,
) -> Result<(), Fail> {
    let total = batch * g.map();
    assert!(cols.len() >= batch * g.positions() * g.patch() && input.len() >= total, "col2im sizes");
    let [cin, h, w, kk, pad, hwc] = g.args();
    let b = int(batch);
    let mut l = stream.launch_builder(&k.col2im);
    l.arg(cols).arg(&b).arg(&cin).arg(&h).arg(&w).arg(&kk).arg(&pad).arg(&hwc).arg(input);
    // SAFETY: arguments match `col2im(const float*, int x7, float*)`; it writes input[0..total]
    // and reads cols rows of output positions inside the batch (the kernel clamps the positions),
    // sizes checked above.
    unsafe { l.launch(grid(total)) }?;
    Ok(())
}

/// The geometry of a 2x2 stride-2 pooling of HWC maps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolGeom {
    /// Input height.
    pub(crate) h: usize,
    /// Input width.
    pub(crate) w: usize,
    /// Channels.
    pub(crate) c: usize,
    /// Max (else average).
    pub(crate) max: bool,
}

impl PoolGeom {
    /// Output values per sample.
    pub(crate) fn out_len(&self) -> usize {
        (self.h / 2) * (self.w / 2) * self.c
    }
    /// Input values per sample.
    pub(crate) fn in_len(&self) -> usize {
        self.h * self.w * self.c
    }
}

/// `out` = the pooled maps of `batch` samples of `input`.
pub(crate) fn pool_fwd(
    stream: &Arc<CudaStream>,
    k: &Kernels,
    g: &PoolGeom,
    input: &CudaView<'_, f32>,
    batch: usize,
    out: &mut CudaViewMut<'_, f32>,
) -> Result<(), Fail> {
    let total = batch * g.out_len();
    assert!(input.len() >= batch * g.in_len() && out.len() >= total, "pool_fwd sizes");
    let (b, h, w, c, m) = (int(batch), int(g.h), int(g.w), int(g.c), i32::from(g.max));
    let mut l = stream.launch_builder(&k.pool_fwd);
    l.arg(input).arg(&b).arg(&h).arg(&w).arg(&c).arg(&m).arg(out);
    // SAFETY: arguments match `pool_fwd(const float*, int x5, float*)`; it writes out[0..total]
    // and reads the 2x2 windows inside each sample's h x w x c input map, sizes checked above.
    unsafe { l.launch(grid(total)) }?;
    Ok(())
}

/// `din` = the gradient wrt the pooling's input, given its input, output and output gradient.
/// `din` must be zeroed by the caller (entries in a dropped row or column are not written).
#[allow(clippy::too_many_arguments)] // the kernel's own arguments; a struct would only rename them
pub(crate) fn pool_bwd(
    stream: &Arc<CudaStream>,
    k: &Kernels,
    g: &PoolGeom,
    input: &CudaView<'_, f32>,
    out: &CudaView<'_, f32>,
    dout: &CudaView<'_, f32>,
    batch: usize,
    din: &mut CudaViewMut<'_, f32>,
) -> Result<(), Fail> {
    let total = batch * g.out_len();
    let maps = batch * g.in_len();
    assert!(
        input.len() >= maps && din.len() >= maps && out.len() >= total && dout.len() >= total,
        "pool_bwd"
    );
    let (b, h, w, c, m) = (int(batch), int(g.h), int(g.w), int(g.c), i32::from(g.max));
    let mut l = stream.launch_builder(&k.pool_bwd);
    l.arg(input).arg(out).arg(dout).arg(&b).arg(&h).arg(&w).arg(&c).arg(&m).arg(din);
    // SAFETY: arguments match `pool_bwd(const float* x3, int x5, float*)`; it reads out/dout
    // [0..total] and the windows of each input map, and writes din at those windows only, sizes
    // checked above.
    unsafe { l.launch(grid(total)) }?;
    Ok(())
}

/// `out` (rows x o) = `inp` (rows x i) W^T, with `w` the row-major (o x i) weights.
/// Column-major: out^T (o x rows) = op_T(w as i x o) * inp^T (i x rows).
pub(crate) fn forward(
    blas: &CudaBlas,
    inp: &CudaView<'_, f32>,
    w: &CudaView<'_, f32>,
    out: &mut CudaViewMut<'_, f32>,
    rows: usize,
    i: usize,
    o: usize,
) -> Result<(), Fail> {
    assert!(inp.len() >= rows * i && w.len() >= o * i && out.len() >= rows * o, "forward sizes");
    let cfg = forward_cfg(rows, i, o);
    // SAFETY: with these dimensions cuBLAS reads w[0..o*i], inp[0..rows*i] and writes
    // out[0..rows*o], all checked above; lda/ldb/ldc >= 1 since i, o >= 1 (checked at construction).
    unsafe { blas.gemm(cfg, w, inp, out) }?;
    Ok(())
}

/// `g` (o x i, row-major) += `d`^T (o x rows) `inp` (rows x i): a layer's weight gradient.
/// Column-major: g^T (i x o) += inp^T (i x rows) * op_T(d^T as o x rows).
pub(crate) fn weight_grad(
    blas: &CudaBlas,
    d: &CudaView<'_, f32>,
    inp: &CudaView<'_, f32>,
    g: &mut CudaViewMut<'_, f32>,
    rows: usize,
    i: usize,
    o: usize,
) -> Result<(), Fail> {
    assert!(d.len() >= rows * o && inp.len() >= rows * i && g.len() >= o * i, "weight_grad sizes");
    let cfg = weight_grad_cfg(rows, i, o);
    // SAFETY: reads inp[0..rows*i], d[0..rows*o], reads and writes g[0..o*i], all checked above.
    unsafe { blas.gemm(cfg, inp, d, g) }?;
    Ok(())
}

/// `p` (rows x i) = `d` (rows x o) W, with `w` the row-major (o x i) weights: the gradient with
/// respect to a layer's input. Column-major: p^T (i x rows) = (w as i x o) * (d^T as o x rows).
pub(crate) fn input_grad(
    blas: &CudaBlas,
    d: &CudaView<'_, f32>,
    w: &CudaView<'_, f32>,
    p: &mut CudaViewMut<'_, f32>,
    rows: usize,
    i: usize,
    o: usize,
) -> Result<(), Fail> {
    assert!(d.len() >= rows * o && w.len() >= o * i && p.len() >= rows * i, "input_grad sizes");
    let cfg = input_grad_cfg(rows, i, o);
    // SAFETY: reads w[0..o*i], d[0..rows*o] and writes p[0..rows*i], all checked above.
    unsafe { blas.gemm(cfg, w, d, p) }?;
    Ok(())
}

/// `gb` (o) += the column sums of `d` (rows x o): a layer's bias gradient, as the product of
/// d^T with a vector of ones (column-major: (d^T as o x rows) * ones).
pub(crate) fn bias_grad(
    blas: &CudaBlas,
    d: &CudaView<'_, f32>,
    ones: &CudaView<'_, f32>,
    gb: &mut CudaViewMut<'_, f32>,
    rows: usize,
    o: usize,
) -> Result<(), Fail> {
    assert!(d.len() >= rows * o && ones.len() >= rows && gb.len() >= o, "bias_grad sizes");
    let cfg = bias_grad_cfg(rows, o);
    // SAFETY: reads d[0..rows*o] and ones[0..rows], reads and writes gb[0..o], checked above.
    unsafe { blas.gemv(cfg, d, ones, gb) }?;
    Ok(())
}

/// The sgemm of [`forward`]: C = A^T B with A = w (i x o, ld i), B = inp (i x rows, ld i),
/// C = out (o x rows, ld o), all column-major views of the row-major matrices.
pub(crate) fn forward_cfg(rows: usize, i: usize, o: usize) -> GemmConfig<f32> {
    GemmConfig {
        transa: CUBLAS_OP_T,
        transb: CUBLAS_OP_N,
        m: int(o),
        n: int(rows),
        k: int(i),
        alpha: 1.0,
        lda: int(i),
        ldb: int(i),
        beta: 0.0,
        ldc: int(o),
    }
}

/// The sgemm of [`weight_grad`]: C += A B^T with A = inp (i x rows, ld i), B = d (o x rows,
/// ld o), C = g (i x o, ld i).
pub(crate) fn weight_grad_cfg(rows: usize, i: usize, o: usize) -> GemmConfig<f32> {
    GemmConfig {
        transa: CUBLAS_OP_N,
        transb: CUBLAS_OP_T,
        m: int(i),
        n: int(o),
        k: int(rows),
        alpha: 1.0,
        lda: int(i),
        ldb: int(o),
        beta: 1.0,
        ldc: int(i),
    }
}

/// The sgemm of [`input_grad`]: C = A B with A = w (i x o, ld i), B = d (o x rows, ld o),
/// C = p (i x rows, ld i).
pub(crate) fn input_grad_cfg(rows: usize, i: usize, o: usize) -> GemmConfig<f32> {
    GemmConfig {
        transa: CUBLAS_OP_N,
        transb: CUBLAS_OP_N,
        m: int(i),
        n: int(rows),
        k: int(o),
        alpha: 1.0,
        lda: int(i),
        ldb: int(o),
        beta: 0.0,
        ldc: int(i),
    }
}

/// The sgemv of [`bias_grad`]: y += A x with A = d (o x rows, ld o), x = ones, y = gb.
pub(crate) fn bias_grad_cfg(rows: usize, o: usize) -> GemvConfig<f32> {
    GemvConfig {
        trans: CUBLAS_OP_N,
        m: int(o),
        n: int(rows),
        alpha: 1.0,
        lda: int(o),
        incx: 1,
        beta: 1.0,
        incy: 1,
    }
}

impl From<DriverError> for Fail {
    fn from(e: DriverError) -> Fail {
        Fail(format!("CUDA driver: {e}"))
    }
}

impl From<cudarc::cublas::result::CublasError> for Fail {
    fn from(e: cudarc::cublas::result::CublasError) -> Fail {
        Fail(format!("cuBLAS: {e}"))
    }
}
