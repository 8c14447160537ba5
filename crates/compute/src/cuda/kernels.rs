//! The elementwise and per-row kernels (CUDA C, compiled once per process by NVRTC), and their
//! handles once loaded into a context. The matrix products are cuBLAS's; everything else is here.
//!
//! Every kernel is deterministic: no atomics, and each reduction adds in a fixed order, because
//! the `Objective` contract asks for bit-identical results on repeated calls.

use std::sync::{Arc, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::Ptx;

/// Activation codes shared with the kernels (`act_apply`, `act_deriv`).
pub(crate) const ACT_IDENTITY: i32 = 0;
/// max(0, v).
pub(crate) const ACT_RELU: i32 = 1;
/// tanh(v).
pub(crate) const ACT_TANH: i32 = 2;
/// 1 / (1 + e^-v).
pub(crate) const ACT_SIGMOID: i32 = 3;

/// Head codes shared with the `head` kernel.
pub(crate) const HEAD_LOGISTIC: i32 = 0;
/// 0.5 (z - y)^2.
pub(crate) const HEAD_SQUARES: i32 = 1;
/// Softmax cross-entropy.
pub(crate) const HEAD_CROSS_ENTROPY: i32 = 2;

/// Threads of the one block of `reduce_pair` (the kernel's shared arrays have this size).
pub(crate) const REDUCE_THREADS: u32 = 256;

/// The kernels' source. The head is a line-by-line port of `dprox-objective`'s `Head::loss_dz`
/// and `cross_entropy` (f64 log-sum-exp, same order of operations), so the per-sample losses agree
/// with the CPU to rounding; the activations are those of `Activation::apply` and
/// `derivative_from_output`.
const SOURCE: &str = r#"
#define GRID_STRIDE(t, n) \
    for (long long t = blockIdx.x * (long long)blockDim.x + threadIdx.x; t < (n); \
         t += (long long)gridDim.x * blockDim.x)

__device__ __forceinline__ float act_apply(int act, float v) {
    switch (act) {
        case 1: return fmaxf(v, 0.0f);
        case 2: return tanhf(v);
        case 3: return 1.0f / (1.0f + expf(-v));
        default: return v;
    }
}

// The derivative at the pre-activation, from the output a (relu'(0) = 0).
__device__ __forceinline__ float act_deriv(int act, float a) {
    switch (act) {
        case 1: return a > 0.0f ? 1.0f : 0.0f;
        case 2: return 1.0f - a * a;
        case 3: return a * (1.0f - a);
        default: return 1.0f;
    }
}

// out (rows x cols) = the rows idx[0..rows] of data (? x cols), all row-major.
extern "C" __global__ void gather_rows(const float* __restrict__ data, const int* __restrict__ idx,
                                       int rows, int cols, float* __restrict__ out) {
    long long total = (long long)rows * cols;
    GRID_STRIDE(t, total) {
        long long r = t / cols;
        long long c = t - r * cols;
        out[t] = data[(long long)idx[r] * cols + c];
    }
}

// z (rows x cols) = act(z + b), b broadcast over the rows (skipped when has_bias == 0).
extern "C" __global__ void bias_act(float* __restrict__ z, const float* __restrict__ b, int has_bias,
                                    int rows, int cols, int act) {
    long long total = (long long)rows * cols;
    GRID_STRIDE(t, total) {
        float v = z[t];
        if (has_bias) v += b[t % cols];
        z[t] = act_apply(act, v);
    }
}

// d *= act'(a), elementwise over n entries.
extern "C" __global__ void mul_act_deriv(float* __restrict__ d, const float* __restrict__ a,
                                         long long n, int act) {
    GRID_STRIDE(t, n) { d[t] *= act_deriv(act, a[t]); }
}

// x[0..n] = v.
extern "C" __global__ void fill(float* __restrict__ x, long long n, float v) {
    GRID_STRIDE(t, n) { x[t] = v; }
}

// One thread per sample r of the chunk. z (rows x m) holds the outputs and is overwritten with
// scale * dLoss/dz; loss[r] gets the sample's loss and correct[r] 1 when the prediction equals the
// label (0 for least squares). Sample r is idx[r] when use_idx, else start + r.
extern "C" __global__ void head(int kind, float* __restrict__ z, int rows, int m,
                                const float* __restrict__ targets, const int* __restrict__ idx,
                                int use_idx, int start, double scale,
                                double* __restrict__ loss, double* __restrict__ correct) {
    int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= rows) return;
    int s = use_idx ? idx[r] : start + r;
    float y = targets[s];
    float* zr = z + (long long)r * m;
    if (kind == 0) {
        // softplus(-s z) with s = 2y - 1, written so that neither branch overflows.
        double sg = y > 0.5f ? 1.0 : -1.0;
        double t = -sg * (double)zr[0];
        double l = t > 0.0 ? t + log1p(exp(-t)) : log1p(exp(t));
        double sig = t >= 0.0 ? 1.0 / (1.0 + exp(-t)) : exp(t) / (1.0 + exp(t));
        correct[r] = ((zr[0] > 0.0f ? 1 : 0) == (int)y) ? 1.0 : 0.0;
        zr[0] = (float)(-sg * sig * scale);
        loss[r] = l;
    } else if (kind == 1) {
        double res = (double)zr[0] - (double)y;
        zr[0] = (float)(res * scale);
        loss[r] = 0.5 * res * res;
        correct[r] = 0.0;
    } else {
        int yc = (int)y;
        float mx = __uint_as_float(0xff800000u);  // -inf (NVRTC has no INFINITY macro)
        int best = 0;
        for (int j = 0; j < m; ++j) {
            mx = fmaxf(mx, zr[j]);
            if (zr[j] > zr[best]) best = j;
        }
        correct[r] = best == yc ? 1.0 : 0.0;
        // ln(sum e^(z_j - max)) - (z_y - max), in f64 like the CPU head.
        double zy = (double)zr[yc] - (double)mx;
        double sum = 0.0;
        for (int j = 0; j < m; ++j) {
            double e = exp((double)zr[j] - (double)mx);
            sum += e;
            zr[j] = (float)e;
        }
        double inv = 1.0 / sum;
        for (int j = 0; j < m; ++j) {
            double p = (double)zr[j] * inv;
            double t = j == yc ? 1.0 : 0.0;
            zr[j] = (float)((p - t) * scale);
        }
        loss[r] = log(sum) - zy;
    }
}

// One block of 256 threads: out[2 slot] = sum a[0..n], out[2 slot + 1] = sum b[0..n], each thread
// summing a fixed stride and a fixed tree combining them (deterministic, no atomics).
extern "C" __global__ void reduce_pair(const double* __restrict__ a, const double* __restrict__ b,
                                       int n, double* __restrict__ out, int slot) {
    __shared__ double sa[256];
    __shared__ double sb[256];
    int t = threadIdx.x;
    double x = 0.0, y = 0.0;
    for (int i = t; i < n; i += 256) {
        x += a[i];
        y += b[i];
    }
    sa[t] = x;
    sb[t] = y;
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if (t < s) {
            sa[t] += sa[t + s];
            sb[t] += sb[t + s];
        }
        __syncthreads();
    }
    if (t == 0) {
        out[2 * slot] = sa[0];
        out[2 * slot + 1] = sb[0];
    }
}
// The LeNet kernels: a port of dprox-objective's conv.rs. A map is one sample's cin x h x w values
// in CHW order (hwc == 0: the input images) or HWC order (hwc == 1: every map inside the network).
__device__ __forceinline__ long long map_offset(int hwc, int cin, int h, int w, int ci, int iy, int ix) {
    return hwc ? ((long long)iy * w + ix) * cin + ci : ((long long)ci * h + iy) * w + ix;
}

// cols (batch*hout*wout x k*k*cin): for each output position (b, oy, ox), the input patch under the
// k x k kernel in (ky, kx, ci) order, zero where it reaches into the padding.
extern "C" __global__ void im2col(const float* __restrict__ in, int batch, int cin, int h, int w,
                                  int k, int pad, int hwc, float* __restrict__ cols) {
    int hout = h + 2 * pad + 1 - k, wout = w + 2 * pad + 1 - k;
    long long patch = (long long)k * k * cin;
    long long positions = (long long)hout * wout;
    long long map = (long long)cin * h * w;
    long long total = batch * positions * patch;
    GRID_STRIDE(t, total) {
        long long row = t / patch;
        int j = (int)(t - row * patch);
        long long b = row / positions;
        int pos = (int)(row - b * positions);
        int oy = pos / wout, ox = pos - oy * wout;
        int ky = j / (k * cin);
        int rem = j - ky * k * cin;
        int kx = rem / cin, ci = rem - kx * cin;
        int iy = oy + ky - pad, ix = ox + kx - pad;
        float v = 0.0f;
        if (iy >= 0 && iy < h && ix >= 0 && ix < w) v = in[b * map + map_offset(hwc, cin, h, w, ci, iy, ix)];
        cols[t] = v;
    }
}

// The adjoint of im2col: every input value = the sum of the cols entries of the patches covering
// it, added in the CPU's order (output positions ascending). One thread per input value, so no
// atomics.
extern "C" __global__ void col2im(const float* __restrict__ cols, int batch, int cin, int h, int w,
                                  int k, int pad, int hwc, float* __restrict__ in) {
    int hout = h + 2 * pad + 1 - k, wout = w + 2 * pad + 1 - k;
    long long patch = (long long)k * k * cin;
    long long positions = (long long)hout * wout;
    long long map = (long long)cin * h * w;
    long long total = batch * map;
    GRID_STRIDE(t, total) {
        long long b = t / map;
        int e = (int)(t - b * map);
        int ci, iy, ix;
        if (hwc) {
            ci = e % cin;
            ix = (e / cin) % w;
            iy = e / (cin * w);
        } else {
            ix = e % w;
            iy = (e / w) % h;
            ci = e / (w * h);
        }
        float acc = 0.0f;
        int oy0 = max(0, iy + pad - (k - 1)), oy1 = min(hout - 1, iy + pad);
        int ox0 = max(0, ix + pad - (k - 1)), ox1 = min(wout - 1, ix + pad);
        for (int oy = oy0; oy <= oy1; ++oy) {
            int ky = iy + pad - oy;
            for (int ox = ox0; ox <= ox1; ++ox) {
                int kx = ix + pad - ox;
                long long row = b * positions + (long long)oy * wout + ox;
                acc += cols[row * patch + ((long long)ky * k + kx) * cin + ci];
            }
        }
        in[t] = acc;
    }
}

// 2x2 stride-2 pooling of HWC maps (h x w x c); an odd last row or column is dropped. A max pool
// takes the first largest in the order top left, top right, bottom left, bottom right.
extern "C" __global__ void pool_fwd(const float* __restrict__ in, int batch, int h, int w, int c,
                                    int is_max, float* __restrict__ out) {
    int ho = h / 2, wo = w / 2;
    long long total = (long long)batch * ho * wo * c;
    GRID_STRIDE(t, total) {
        int ch = (int)(t % c);
        long long r = t / c;
        int x = (int)(r % wo);
        r /= wo;
        int y = (int)(r % ho);
        long long b = r / ho;
        long long tl = b * h * w * c + ((long long)(2 * y) * w + 2 * x) * c + ch;
        long long bl = tl + (long long)w * c;
        float a = in[tl], bb = in[tl + c], cc = in[bl], d = in[bl + c];
        if (is_max) {
            float m = bb > a ? bb : a;
            m = cc > m ? cc : m;
            out[t] = d > m ? d : m;
        } else {
            out[t] = 0.25f * (a + bb + cc + d);
        }
    }
}

// The pooling's backward: din (zeroed by the caller, for dropped rows and columns) gets, for each
// window, the gradient dout routed to the entry the max picked (the first equal to the output),
// or a quarter of it to each entry of an average.
extern "C" __global__ void pool_bwd(const float* __restrict__ in, const float* __restrict__ out,
                                    const float* __restrict__ dout, int batch, int h, int w, int c,
                                    int is_max, float* __restrict__ din) {
    int ho = h / 2, wo = w / 2;
    long long total = (long long)batch * ho * wo * c;
    GRID_STRIDE(t, total) {
        int ch = (int)(t % c);
        long long r = t / c;
        int x = (int)(r % wo);
        r /= wo;
        int y = (int)(r % ho);
        long long b = r / ho;
        long long tl = b * h * w * c + ((long long)(2 * y) * w + 2 * x) * c + ch;
        long long bl = tl + (long long)w * c;
        float g = dout[t];
        if (is_max) {
            float m = out[t];
            bool a = in[tl] == m, bb = in[tl + c] == m, cc = in[bl] == m;
            din[tl] = a ? g : 0.0f;
            din[tl + c] = (!a && bb) ? g : 0.0f;
            din[bl] = (!a && !bb && cc) ? g : 0.0f;
            din[bl + c] = !(a || bb || cc) ? g : 0.0f;
        } else {
            float q = 0.25f * g;
            din[tl] = q;
            din[tl + c] = q;
            din[bl] = q;
            din[bl + c] = q;
        }
    }
}
"#;

/// The compiled module, once per process: NVRTC takes a few hundred milliseconds, and every
/// context loads the same PTX.
pub(crate) fn ptx() -> Result<Ptx, String> {
    static PTX: OnceLock<Result<Ptx, String>> = OnceLock::new();
    PTX.get_or_init(|| cudarc::nvrtc::compile_ptx(SOURCE).map_err(|e| e.to_string())).clone()
}

/// The kernels, loaded into one context.
#[derive(Debug)]
pub(crate) struct Kernels {
    /// `gather_rows`.
    pub(crate) gather_rows: CudaFunction,
    /// `bias_act`.
    pub(crate) bias_act: CudaFunction,
    /// `mul_act_deriv`.
    pub(crate) mul_act_deriv: CudaFunction,
    /// `fill`.
    pub(crate) fill: CudaFunction,
    /// `head`.
    pub(crate) head: CudaFunction,
    /// `reduce_pair`.
    pub(crate) reduce_pair: CudaFunction,
    /// `im2col`.
    pub(crate) im2col: CudaFunction,
    /// `col2im`.
    pub(crate) col2im: CudaFunction,
    /// `pool_fwd`.
    pub(crate) pool_fwd: CudaFunction,
    /// `pool_bwd`.
    pub(crate) pool_bwd: CudaFunction,
}

impl Kernels {
    /// Compiles (once per process) and loads the kernels into `ctx`. The error says which step
    /// failed, with NVRTC's log for a compile error.
    pub(crate) fn load(ctx: &Arc<CudaContext>) -> Result<Kernels, (&'static str, String)> {
        let ptx = ptx().map_err(|e| ("compiling the kernels with NVRTC", e))?;
        let module = ctx.load_module(ptx).map_err(|e| ("loading the kernels", e.to_string()))?;
        let f = |name: &str| module.load_function(name).map_err(|e| ("loading the kernels", e.to_string()));
        Ok(Kernels {
            gather_rows: f("gather_rows")?,
            bias_act: f("bias_act")?,
            mul_act_deriv: f("mul_act_deriv")?,
            fill: f("fill")?,
            head: f("head")?,
            reduce_pair: f("reduce_pair")?,
            im2col: f("im2col")?,
            col2im: f("col2im")?,
            pool_fwd: f("pool_fwd")?,
            pool_bwd: f("pool_bwd")?,
        })
    }
}
