//! Per-node compute backends for dprox: where a node's local gradients are computed.
//!
//! A config names a device per node (`device = "cpu" | "cuda" | "cuda:N" | "auto"`); this crate
//! parses the name into a [`Device`], opens it into a [`Backend`] and builds the node's
//! [`Objective`] there with [`build`]. On the CPU that is `dprox_objective::build`; on CUDA
//! (feature `cuda`) it is a GPU implementation of the same models with the same math — logistic,
//! least squares, softmax, the MLP with every activation, and LeNet-5 — using cuBLAS for the
//! matrix products and NVRTC-compiled kernels for bias, activations, the stable softmax
//! cross-entropy head, gathers, im2col/col2im, pooling and reductions. The node's data is uploaded once; each call uploads `x` and the
//! batch indices and downloads the gradient into the caller's slice, reusing device buffers.
//!
//! Without the `cuda` feature the CUDA arm of [`Backend`] is a stub: opening a CUDA device returns
//! [`ComputeError::NotCompiledWithCuda`] (rebuild with `--features cuda`), so callers never write
//! `cfg`. With the feature, cudarc loads libcuda, libnvrtc and libcublas at run time, so the build
//! needs no CUDA toolkit and runs (on the CPU) where there is no GPU; a missing library is a clear
//! error, never a panic.
//!
//! What the CUDA backend does not do: sparse (CSR) features are densified when the dense copy is
//! at most 256 MiB and refused with [`ComputeError::Unsupported`] above that; a model added to
//! dprox-objective without a GPU implementation is refused by name with the same error. A CUDA
//! failure in the middle of a gradient call panics with the device and the driver's message (the
//! `Objective` trait has no error path).
//!
//! # Layout
//! - `device.rs`: [`Backend`] ([`Backend::open`] opens a [`Device`], the config's name for it).
//! - `error.rs`: [`ComputeError`].
//! - `cuda/` (feature `cuda`): [`CudaDevice`], the kernels, the `unsafe` launch layer and the GPU
//!   objective; `stub.rs` takes its place without the feature.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use dprox_compute::{Device, build};
//! use dprox_data::{Dataset, Features};
//! use dprox_objective::{Batch, ModelKind, ModelSpec, Shape};
//!
//! let data = Dataset {
//!     features: Features::Dense(ndarray::array![[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
//!     targets: vec![0.0, 2.0, 1.0],
//!     classes: Some(3),
//! };
//! let shape = Shape::of(&data);
//! // "auto" takes CUDA device 0 when there is one and this build has the `cuda` feature,
//! // else the CPU; either way the model and its math are the same.
//! let device: Device = "auto".parse()?;
//! let mut f = build(device, &ModelSpec::new(ModelKind::Softmax), Arc::new(data), shape)?;
//! let mut g = vec![0.0; f.dim()];
//! let loss = f.loss_grad(&vec![0.0; f.dim()], Batch::Full, &mut g);
//! assert!((loss - 3f64.ln()).abs() < 1e-6);
//!
//! // A bad name is an error that names it.
//! let err = "gpu".parse::<Device>().unwrap_err();
//! assert_eq!(err.to_string(), "unknown device `gpu`: expected \"cpu\", \"cuda\", \"cuda:N\" or \"auto\"");
//! # Ok::<(), dprox_compute::ComputeError>(())
//! ```

#[cfg(feature = "cuda")]
mod cuda;
mod device;
mod error;
#[cfg(not(feature = "cuda"))]
mod stub;

#[cfg(feature = "cuda")]
use cuda as backend;
#[cfg(not(feature = "cuda"))]
use stub as backend;

use std::sync::Arc;

use dprox_data::Dataset;
use dprox_objective::{ModelSpec, Objective, Shape};

pub use backend::CudaDevice;
pub use device::Backend;
pub use dprox_objective::{Device, DeviceNameError};
pub use error::ComputeError;

/// True when this build has the CUDA backend (the `cuda` feature).
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");

/// Opens `device` and builds the model `spec` on a node's local `data` there, sized by the global
/// `shape`. Fails as [`dprox_objective::build`] does when the spec does not fit the data, and
/// with the device's error when it cannot be opened (see [`Backend::open`]).
pub fn build(
    device: Device,
    spec: &ModelSpec,
    data: Arc<Dataset>,
    shape: Shape,
) -> Result<Box<dyn Objective>, ComputeError> {
    build_on(&Backend::open(device)?, spec, data, shape)
}

/// Builds the model `spec` on `data` on an already opened backend (open once, build many).
pub fn build_on(
    backend: &Backend,
    spec: &ModelSpec,
    data: Arc<Dataset>,
    shape: Shape,
) -> Result<Box<dyn Objective>, ComputeError> {
    // The CPU objective runs the spec and data checks of dprox-objective (same errors on every
    // device); a GPU objective keeps it for the seeded init and the flop count.
    let cpu = dprox_objective::build(spec, data.clone(), shape)?;
    match backend {
        Backend::Cpu => Ok(cpu),
        Backend::Cuda(dev) => backend::build(dev, spec, data, shape, cpu),
    }
}
