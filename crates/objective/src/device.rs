//! The name of a compute device, as a config writes it (`device = "cuda:0"`).
//!
//! Only a name: parsing it never touches a driver, so a config is validated on any machine.
//! `dprox-compute` opens it (`Backend::open`) where the node runs.

use std::fmt;
use std::str::FromStr;

/// A compute device as named in a config: `"cpu"`, `"cuda"` (= `"cuda:0"`), `"cuda:N"` or
/// `"auto"` (the first CUDA device when one can be opened, else the CPU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU objectives of this crate.
    #[default]
    Cpu,
    /// The CUDA device of this ordinal.
    Cuda(usize),
    /// CUDA device 0 if it can be opened, else the CPU.
    Auto,
}

/// A device name that is none of the accepted forms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown device `{given}`: expected \"cpu\", \"cuda\", \"cuda:N\" or \"auto\"")]
pub struct DeviceNameError {
    /// The string as given.
    pub given: String,
}

impl Device {
    /// Parses a device name; the error names the string and the accepted forms.
    pub fn parse(s: &str) -> Result<Device, DeviceNameError> {
        let bad = || DeviceNameError { given: s.to_string() };
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
}

impl FromStr for Device {
    type Err = DeviceNameError;

    fn from_str(s: &str) -> Result<Device, DeviceNameError> {
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

impl serde::Serialize for Device {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Device {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Device, D::Error> {
        let s = String::deserialize(d)?;
        Device::parse(&s).map_err(serde::de::Error::custom)
    }
}
