//! The one error type of this crate: a bad device string, a device that cannot be opened, or a
//! model this backend cannot run.

use dprox_objective::ObjectiveError;

/// Why a device could not be parsed or opened, or an objective could not be built on it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ComputeError {
    /// The device string is none of the accepted forms.
    #[error(transparent)]
    BadDevice(#[from] dprox_objective::DeviceNameError),

    /// A CUDA device was asked for, but this build has no CUDA support.
    #[error(
        "device `{device}` needs CUDA support, which this build lacks: rebuild with `--features cuda` \
         (e.g. `cargo build --release -p dprox-cli --features cuda`)"
    )]
    NotCompiledWithCuda {
        /// The device asked for, e.g. `cuda:0`.
        device: String,
    },

    /// The CUDA driver library cannot be loaded (no NVIDIA driver on this machine).
    #[error("device `{device}`: no CUDA driver found (libcuda.so not loadable)")]
    NoDriver {
        /// The device asked for.
        device: String,
    },

    /// A CUDA library that the GPU objectives need (NVRTC or cuBLAS) cannot be loaded.
    #[error(
        "device `{device}`: the CUDA library {library} is not loadable: install it (CUDA toolkit or \
         the nvidia-* pip packages) or put its folder on LD_LIBRARY_PATH"
    )]
    MissingLibrary {
        /// The device asked for.
        device: String,
        /// The library's file name stem, e.g. `libnvrtc.so`.
        library: &'static str,
    },

    /// The driver works but has no device of that ordinal.
    #[error("no CUDA device {ordinal}: this machine has {count} CUDA device(s)")]
    NoSuchDevice {
        /// The ordinal asked for.
        ordinal: usize,
        /// How many devices the driver reports.
        count: usize,
    },

    /// A CUDA driver, NVRTC or cuBLAS call failed while opening a device or building a model.
    #[error("device `{device}`: {what} failed: {message}")]
    Cuda {
        /// The device.
        device: String,
        /// The step that failed, e.g. "compiling the kernels".
        what: &'static str,
        /// The library's message.
        message: String,
    },

    /// The backend cannot run this model or this data.
    #[error("{backend} does not support {what}")]
    Unsupported {
        /// The backend, e.g. `cuda:0`.
        backend: String,
        /// What it cannot do, in words.
        what: String,
    },

    /// The model does not fit the data (the same checks as the CPU objectives).
    #[error(transparent)]
    Objective(#[from] ObjectiveError),
}
