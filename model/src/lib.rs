//! hookd's model: everything that needs no privileges and no daemon.
//!
//! - reading XML: [`xml_tree`] (bounded, namespace-aware), [`domain`]
//!   (libvirt's domain XML), [`metadata`] (hookd's `<metadata>` element);
//! - the policy: [`policy`] (schema v1: model, parser, display);
//! - networks: [`network`] (definitions of hookd's networks, validated
//!   alone and as a set);
//! - compilers: [`firewall`] (rules -> LPM tables), [`plan`] (what to do
//!   with each NIC, anti-spoofing included), [`explain`] (the same, told
//!   to an operator);
//! - the libvirt hook's contract: [`hook`];
//! - the per-packet decision as the docs state it (anti-spoofing, the
//!   stateful security groups), for differential tests of the programs:
//!   [`reference`].
//!
//! The daemon, `hookctl` and the hook binary all build on this crate; it
//! links no aya, no libvirt and no bus server.

pub mod domain;
pub mod explain;
pub mod firewall;
pub mod hook;
pub mod mac;
pub mod metadata;
pub mod network;
pub mod plan;
pub mod policy;
pub mod reference;
pub mod route;
pub mod vmstate;
pub mod xml_tree;
