//! Live migration: the firewall state a VM carries to its destination.
//!
//! On the source, [`Daemon::save_state`] reads each NIC's conntrack table
//! while the guest is stopped and encodes it ([`blob`]); on the
//! destination, where the NICs were attached at `start` from the migrated
//! XML, [`Daemon::load_state`] checks the whole blob, then writes each
//! NIC's entries under its new tap's ifindex and the local clock, before
//! the guest resumes. The source keeps its tables until the VM stops
//! there, so a migration that fails leaves it enforcing as before.

pub mod blob;
pub mod chunks;
pub mod log;
pub mod snapshot;

use crate::core::Daemon;
use crate::datapath::DatapathError;
use blob::{BlobError, CarriedNic, VmState};
use hookd_model::mac::MacAddr;

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("domain {0} is not known to hookd")]
    UnknownVm(String),
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("the carried state has NIC {mac}, which domain {vm} has not here")]
    UnknownNic { mac: MacAddr, vm: String },
    #[error("NIC {mac} of domain {vm}: {source}")]
    Datapath {
        mac: MacAddr,
        vm: String,
        source: Box<DatapathError>,
    },
    #[error("reading the firewall state was interrupted: {0}")]
    Interrupted(String),
}

/// What was carried: for logs and `hookctl show`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Carried {
    pub nics: usize,
    pub entries: usize,
    pub bytes: usize,
}

impl Daemon {
    /// Says that migration helpers with this id-list are served (None:
    /// none are), so incoming VMs get a dbus-vmstate object naming them.
    pub fn set_migration_helpers(&mut self, id_list: Option<String>) {
        self.vmstate_ids = id_list;
    }

    /// The id-list of the migration helpers served, if any.
    pub fn migration_helpers(&self) -> Option<&str> {
        self.vmstate_ids.as_deref()
    }

    /// `migrate begin`, on the destination, before anything is made: the
    /// domain's policy and networks are checked as at `prepare` (a VM whose
    /// policy cannot be applied here does not come), and the domain XML is
    /// returned for libvirt to use, with QEMU's dbus-vmstate object added
    /// for a VM with hookd policy when helpers are served. Without them,
    /// the XML is unchanged: a source that carries state then fails the
    /// migration (QEMU: unknown section `dbus-vmstate`), and the VM stays.
    pub(crate) fn incoming(&self, xml: &str) -> Result<String, crate::core::DaemonError> {
        let dom = hookd_model::domain::parse(xml)?;
        self.check_networks(&dom)?;
        self.plan(&dom, hookd_model::plan::Stage::BeforeTaps)?;
        match (&dom.policy, &self.vmstate_ids) {
            (Some(_), Some(ids)) => {
                hookd_model::vmstate::with_object(xml, hookd_model::vmstate::SYSTEM_BUS, ids)
                    .map_err(crate::core::DaemonError::InvalidArgument)
            }
            _ => Ok(xml.to_string()),
        }
    }

    /// The encoded firewall state of domain `uuid` (the source's side).
    /// NICs without a conntrack table (no security groups) carry nothing.
    pub fn save_state(&self, uuid: &str) -> Result<(Vec<u8>, Carried), MigrationError> {
        let rec = self
            .records
            .iter()
            .find(|r| r.uuid == uuid)
            .ok_or_else(|| MigrationError::UnknownVm(uuid.to_string()))?;
        let now = self.dp.ct_clock_ns();
        let mut nics = Vec::new();
        for nic in rec.nics.iter().filter(|n| n.attached()) {
            let Ok(mac) = nic.mac.parse::<MacAddr>() else {
                continue;
            };
            if let Ok(table) = self.dp.ct_table(nic.ifindex) {
                nics.push(CarriedNic::from_table(mac, &table, now));
            }
        }
        let state = VmState {
            uuid: uuid.to_string(),
            nics,
        };
        let bytes = state.encode()?;
        let carried = Carried {
            nics: state.nics.len(),
            entries: state.entry_count(),
            bytes: bytes.len(),
        };
        Ok((bytes, carried))
    }

    /// Loads carried firewall state into domain `uuid`'s NICs (the
    /// destination's side). The blob is checked whole, and every NIC it
    /// names found, before anything is written; a write the kernel refuses
    /// fails the migration, and the destination's half-started VM, tables
    /// and all, goes with it.
    pub fn load_state(&mut self, uuid: &str, bytes: &[u8]) -> Result<Carried, MigrationError> {
        let state = VmState::decode(bytes, uuid)?;
        let rec = self
            .records
            .iter()
            .find(|r| r.uuid == uuid)
            .ok_or_else(|| MigrationError::UnknownVm(uuid.to_string()))?
            .clone();
        let now = self.dp.ct_clock_ns();
        let mut tables = Vec::with_capacity(state.nics.len());
        for carried in &state.nics {
            let nic = rec
                .nics
                .iter()
                .find(|n| n.attached() && n.mac.parse::<MacAddr>() == Ok(carried.mac))
                .ok_or(MigrationError::UnknownNic {
                    mac: carried.mac,
                    vm: rec.name.clone(),
                })?;
            tables.push((carried.mac, nic.ifindex, carried.to_table(nic.ifindex, now)));
        }
        for (mac, ifindex, table) in &tables {
            self.dp
                .load_ct(*ifindex, table)
                .map_err(|source| MigrationError::Datapath {
                    mac: *mac,
                    vm: rec.name.clone(),
                    source: Box::new(source),
                })?;
        }
        Ok(Carried {
            nics: tables.len(),
            entries: state.entry_count(),
            bytes: bytes.len(),
        })
    }
}
