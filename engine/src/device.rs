//! Which compute device a model runs on.

use candle_core::Device;

use crate::error::{EngineError, Result};

/// Where the weights live and the forward passes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    /// A CUDA GPU by ordinal; needs the crate's `cuda` feature.
    Cuda(usize),
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

pub(crate) fn open_device(spec: DeviceSpec) -> Result<Device> {
    match spec {
        DeviceSpec::Cpu => Ok(Device::Cpu),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(ordinal) => Device::new_cuda(ordinal)
            .map_err(|e| EngineError::Device(format!("cannot open CUDA device {ordinal}: {e}"))),
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(ordinal) => Err(EngineError::Device(format!(
            "CUDA device {ordinal} requested but scot-engine was built without the `cuda` feature"
        ))),
    }
}
