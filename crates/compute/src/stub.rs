//! The CUDA backend of a build without the `cuda` feature: a [`CudaDevice`] that cannot be made.
//! Opening one returns [`ComputeError::NotCompiledWithCuda`], so the code above it needs no `cfg`.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use dprox_data::Dataset;
use dprox_objective::{ModelSpec, Objective, Shape};

use crate::ComputeError;

/// An opened CUDA device. This build has no CUDA support, so no value of this type exists.
#[derive(Clone, Debug)]
pub struct CudaDevice {
    never: Infallible,
}

impl CudaDevice {
    /// Always [`ComputeError::NotCompiledWithCuda`]: rebuild with `--features cuda`.
    pub fn open(ordinal: usize) -> Result<CudaDevice, ComputeError> {
        Err(ComputeError::NotCompiledWithCuda { device: format!("cuda:{ordinal}") })
    }

    /// The device ordinal (unreachable: no value exists).
    pub fn ordinal(&self) -> usize {
        match self.never {}
    }

    /// The device's name (unreachable: no value exists).
    pub fn name(&self) -> &str {
        match self.never {}
    }
}

impl fmt::Display for CudaDevice {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.never {}
    }
}

/// Unreachable: there is no device to build on.
pub(crate) fn build(
    dev: &CudaDevice,
    _spec: &ModelSpec,
    _data: Arc<Dataset>,
    _shape: Shape,
    _cpu: Box<dyn Objective>,
) -> Result<Box<dyn Objective>, ComputeError> {
    match dev.never {}
}
