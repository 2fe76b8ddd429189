//! hookctl, the operator's client for hookd: one module per command group.
//! It talks to hookd over D-Bus (`hookd-dbus`'s proxy) and checks policy
//! locally with `hookd-model`; it links none of the daemon.

pub mod bus;
pub mod cli;
pub mod domains;
pub mod events;
pub mod networks;
pub mod output;
pub mod policy;
