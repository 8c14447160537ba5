//! The CUDA backend (feature `cuda`): opening a device, and the GPU objectives.
//!
//! # Layout
//! - `mod.rs`: [`CudaDevice`] (checks the libraries before any cudarc call, which would panic
//!   without them; one context and one loaded module per device and process) and `build`.
//! - `kernels.rs`: the CUDA C source of the elementwise kernels, compiled once by NVRTC.
//! - `raw.rs`: every `unsafe` call (kernel launches, cuBLAS), behind size-checking functions.
//! - `runner.rs`: `GpuObjective`, the one `Objective` of every GPU model: the device state it
//!   shares (stream, cuBLAS handle, uploaded data, parameter and gradient buffers) and the driver
//!   of a call (upload `x`, run the model chunk by chunk, download the sums and the gradient),
//!   around a `Model` that supplies only its chunk size, its scratch buffers and one chunk's passes.
//! - `net.rs`: `GpuNet`, the `Model` of logistic, least squares, softmax and the MLP.
//! - `lenet.rs`: `GpuLeNet`, the `Model` of LeNet-5 (im2col + cuBLAS, pooling kernels).

mod kernels;
mod lenet;
mod net;
#[allow(unsafe_code)]
mod raw;
mod runner;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::{Arc, Mutex};

use cudarc::driver::CudaContext;
use cudarc::driver::sys::cudaError_enum::CUDA_ERROR_NO_DEVICE;
use dprox_data::Dataset;
use dprox_objective::{ModelKind, ModelSpec, Objective, Shape};

use crate::ComputeError;
use kernels::Kernels;

/// A failed CUDA call inside a gradient evaluation, as text. The `Objective` trait has no error
/// path, so the objective panics with it (naming the device).
#[derive(Debug)]
pub(crate) struct Fail(pub(crate) String);

impl fmt::Display for Fail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An opened CUDA device: its context (the device's primary context) and the compiled kernels.
/// Cheap to clone; every objective on the device shares one, each with its own stream.
#[derive(Clone)]
pub struct CudaDevice {
    inner: Arc<Inner>,
}

struct Inner {
    ordinal: usize,
    name: String,
    ctx: Arc<CudaContext>,
    kernels: Kernels,
}

impl fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.inner.ordinal)
            .field("name", &self.inner.name)
            .finish()
    }
}

impl fmt::Display for CudaDevice {
    /// `cuda:N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cuda:{}", self.inner.ordinal)
    }
}

impl CudaDevice {
    /// Opens CUDA device `ordinal`, or says why it cannot: no driver, no NVRTC or cuBLAS library,
    /// no such device, or a failing driver call. Never panics. A device opened once is reused by
    /// later calls in the same process (one context, one compile of the kernels).
    pub fn open(ordinal: usize) -> Result<CudaDevice, ComputeError> {
        static OPEN: Mutex<Vec<CudaDevice>> = Mutex::new(Vec::new());
        // A panic while the lock was held cannot leave the list half-written (push is the only
        // write), so a poisoned lock is still usable.
        let mut open = OPEN.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dev) = open.iter().find(|d| d.inner.ordinal == ordinal) {
            return Ok(dev.clone());
        }
        let dev = CudaDevice::open_new(ordinal)?;
        open.push(dev.clone());
        Ok(dev)
    }

    fn open_new(ordinal: usize) -> Result<CudaDevice, ComputeError> {
        let device = format!("cuda:{ordinal}");
        // cudarc panics on the first call into a library it cannot load: check all three first.
        let libs = raw::libraries();
        if !libs.driver {
            return Err(ComputeError::NoDriver { device });
        }
        if !libs.nvrtc {
            return Err(ComputeError::MissingLibrary { device, library: "libnvrtc.so" });
        }
        if !libs.cublas {
            return Err(ComputeError::MissingLibrary { device, library: "libcublas.so" });
        }
        let count = match CudaContext::device_count() {
            Ok(c) => usize::try_from(c).unwrap_or(0),
            // cuInit reports a driver with no GPU this way.
            Err(e) if e.0 == CUDA_ERROR_NO_DEVICE => 0,
            Err(e) => {
                return Err(cuda_error(&device, "initialising the CUDA driver", e.to_string()));
            }
        };
        if ordinal >= count {
            return Err(ComputeError::NoSuchDevice { ordinal, count });
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| cuda_error(&device, "creating the CUDA context", e.to_string()))?;
        raw::disable_event_tracking(&ctx);
        let kernels = Kernels::load(&ctx).map_err(|(what, message)| cuda_error(&device, what, message))?;
        let name = ctx.name().unwrap_or_else(|e| format!("unnamed device ({e})"));
        tracing::info!(device = %device, name = %name, "opened CUDA device");
        Ok(CudaDevice { inner: Arc::new(Inner { ordinal, name, ctx, kernels }) })
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.inner.ordinal
    }

    /// The device's name as the driver reports it, e.g. "NVIDIA H200".
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

fn cuda_error(device: &str, what: &'static str, message: String) -> ComputeError {
    ComputeError::Cuda { device: device.to_string(), what, message }
}

/// Builds the GPU objective for `spec` on `data`; `cpu` is the already-built (and so validated)
/// CPU objective of the same spec, kept for `init` and `flops_per_sample`.
pub(crate) fn build(
    dev: &CudaDevice,
    spec: &ModelSpec,
    data: Arc<Dataset>,
    shape: Shape,
    cpu: Box<dyn Objective>,
) -> Result<Box<dyn Objective>, ComputeError> {
    Ok(match spec.kind {
        ModelKind::LeNet => Box::new(lenet::build(dev, spec, &data, shape, cpu)?),
        _ => Box::new(net::build(dev, spec, &data, shape, cpu)?),
    })
}
