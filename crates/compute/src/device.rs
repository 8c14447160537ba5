//! What a config's device name (`device = "cuda:0"`, a [`Device`]) resolves to on this machine.
//!
//! [`Device`] is only a name (it lives in dprox-objective, so that parsing a config never pulls in
//! CUDA). [`Backend::open`] opens the device and returns a [`Backend`], the
//! runtime enum that the objectives dispatch on (candle's `Storage::{Cpu, Cuda}`): callers never
//! write `cfg(feature = "cuda")`, because without the feature the CUDA arm is a stub whose
//! constructor returns [`ComputeError::NotCompiledWithCuda`].

use std::fmt;

use dprox_objective::Device;

use crate::ComputeError;
use crate::backend::CudaDevice;

/// An opened device: where an objective's kernels run.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The CPU.
    Cpu,
    /// An opened CUDA device (its context and compiled kernels, shared by every objective on it).
    Cuda(CudaDevice),
}

impl Backend {
    /// Opens `device`: the CPU always succeeds; `Cuda(n)` fails with a clear error when this
    /// build has no CUDA support, the driver or a library is missing, or there is no device `n`;
    /// `Auto` never fails and logs (at info level) why it fell back to the CPU. Never panics.
    pub fn open(device: Device) -> Result<Backend, ComputeError> {
        match device {
            Device::Cpu => Ok(Backend::Cpu),
            Device::Cuda(ordinal) => CudaDevice::open(ordinal).map(Backend::Cuda),
            Device::Auto => match CudaDevice::open(0) {
                Ok(dev) => {
                    tracing::info!(device = %dev, "device auto: using CUDA");
                    Ok(Backend::Cuda(dev))
                }
                Err(e) => {
                    tracing::info!("device auto: CUDA unavailable ({e}); using the CPU");
                    Ok(Backend::Cpu)
                }
            },
        }
    }

    /// True for a CUDA backend.
    pub fn is_cuda(&self) -> bool {
        matches!(self, Backend::Cuda(_))
    }
}

impl fmt::Display for Backend {
    /// `cpu`, or `cuda:N (device name)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Cpu => f.write_str("cpu"),
            Backend::Cuda(d) => write!(f, "{d} ({})", d.name()),
        }
    }
}
