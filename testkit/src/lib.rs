//! hookd's test kit, shared by the tests and benchmarks of every crate:
//!
//! - [`net`]: root-only fixtures (bpffs, network namespaces with a guard
//!   that restores the thread's namespace, taps driven from their file
//!   descriptor, the build's binaries);
//! - [`frames`]: frame builders and a seeded random generator;
//! - [`differential`]: what the differential tests share;
//! - [`private_bus`]: a private dbus-daemon;
//! - [`hostile`]: bus clients that flood hookd and never read;
//! - [`plane`]: the one stand-in for the kernel's data plane;
//! - [`xml`]: the one domain XML builder;
//! - [`stats`]: median, spread and percentiles for benchmarks;
//! - [`vm`]: the VM as the privileged tests play it.

pub mod differential;
pub mod frames;
pub mod hostile;
pub mod net;
pub mod plane;
pub mod private_bus;
pub mod stats;
pub mod vm;
pub mod xml;

pub use frames::*;
pub use net::*;
