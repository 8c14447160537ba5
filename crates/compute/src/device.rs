//! What a config names (`device = "cuda:0"`) and what it resolves to on this machine.
//!
//! [`Device`] is only a name: parsing it never touches a driver, so a config can be validated on a
//! machine without a GPU. [`Device::resolve`] opens the device and returns a [`Backend`], the
//! runtime enum that the objectives dispatch on (candle's `Storage::{Cpu, Cuda}`): callers never
//! write `cfg(feature = "cuda")`, because without the feature the CUDA arm is a stub whose
//! constructor returns [`ComputeError::NotCompiledWithCuda`].

use std::fmt;
use std::str::FromStr;

use crate::ComputeError;
use crate::backend::CudaDevice;

/// A compute device as named in a config: `"cpu"`, `"cuda"` (= `"cuda:0"`), `"cuda:N"` or
/// `"auto"` (the first CUDA device when one can be opened, else the CPU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU objectives of `dprox-objective`.
    #[default]
    Cpu,
    /// The CUDA device of this ordinal.
    Cuda(usize),
    /// CUDA device 0 if it can be opened, else the CPU (with an info log line saying why).
    Auto,
}

impl Device {
    /// Parses a device name; the error names the string and the accepted forms.
    pub fn parse(s: &str) -> Result<Device, ComputeError> {
        let bad = || ComputeError::BadDevice { given: s.to_string() };
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda(0)),
            "auto" => Ok(Device::Auto),
            _ => {
                let digits = s.strip_prefix("cuda:").ok_or_else(bad)?;
                // usize::from_str accepts a leading '+'; a device ordinal is plain digits.
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                digits.parse().map(Device::Cuda).map_err(|_| bad())
            }
        }
    }

    /// Opens the device: the CPU always succeeds; `Cuda(n)` fails with a clear error when this build
    /// has no CUDA support, the driver or a library is missing, or there is no device `n`; `Auto`
    /// never fails and logs (at info level) why it fell back to the CPU. Never panics.
    pub fn resolve(&self) -> Result<Backend, ComputeError> {
        match *self {
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
}

impl FromStr for Device {
    type Err = ComputeError;

    fn from_str(s: &str) -> Result<Device, ComputeError> {
        Device::parse(s)
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
            Device::Auto => f.write_str("auto"),
        }
    }
}

/// An opened device: where an objective's kernels run.
#[derive(Clone, Debug)]
pub enum Backend {
    /// The CPU.
    Cpu,
    /// An opened CUDA device (its context and compiled kernels, shared by every objective on it).
    Cuda(CudaDevice),
}

impl Backend {
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
