//! The daemon core's errors. Each keeps its source; the API layer maps
//! them to D-Bus error names in one place (`api::convert`).

use crate::core::networks::NetworkStoreError;
use crate::core::records::StateError;
use crate::datapath::DatapathError;
use hookd_model::domain::DomainError;
use hookd_model::plan::PlanError;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// An argument of a call is malformed (not a policy problem).
    #[error("{0}")]
    InvalidArgument(String),
    /// The domain XML or policy is invalid.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The policy is valid but hookd cannot enforce it on these NICs.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The kernel refused part of an attach; nothing of it stays.
    #[error("NIC {mac} (tap {tap}): {source}")]
    AttachFailed {
        mac: String,
        tap: String,
        #[source]
        source: Box<DatapathError>,
    },
    #[error("no domain '{0}' is known to hookd")]
    NotFound(String),
    /// hookd failed itself (a panic in an operation); nothing more is known.
    #[error("internal error: {0}")]
    Internal(String),
    /// The record that lets hookd detach later could not be written.
    #[error(transparent)]
    State(#[from] StateError),
    /// A network definition was refused, or is unknown.
    #[error(transparent)]
    Network(#[from] NetworkStoreError),
}
