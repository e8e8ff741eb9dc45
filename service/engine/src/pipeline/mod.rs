//! The load pipeline.

use std::sync::Arc;

use crate::engine::{BackendInfo, LoadedBuffer};
use crate::error::{load_err, LoadError};
use crate::limits::{Accounting, EngineConfig};
use crate::request::{CancelToken, LoadRequest, Owner, Progress};

pub(crate) fn discover_backends(_config: &EngineConfig) -> Vec<BackendInfo> {
    Vec::new()
}

pub(crate) fn load(
    _config: &EngineConfig,
    _accounting: &Arc<Accounting>,
    _owner: Owner,
    _req: LoadRequest,
    _cancel: &CancelToken,
    _progress: &dyn Progress,
) -> Result<LoadedBuffer, LoadError> {
    Err(load_err!(Internal, "the load pipeline is being built"))
}
