//! What hookd attached, per domain, kept under the run directory so that a
//! restarted daemon (and `stopped` XML without `<target dev>`) knows what to
//! detach. One JSON file per domain, written atomically.

use crate::datapath::Attachment;
use hookd_model::plan::{NicMode, RuleInfo};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicRecord {
    pub mac: String,
    pub kind: String,
    pub tap: String,
    pub ifindex: u32,
    pub mode: NicState,
    /// How the programs are attached; None when they are not. Written as
    /// "tcx", "netlink" or "" (what older hookd wrote, and reads).
    #[serde(
        default,
        serialize_with = "attach_text::write",
        deserialize_with = "attach_text::read"
    )]
    pub attach: Option<Attachment>,
    pub addresses: Vec<String>,
    /// Security-group rules in force (empty for records of older hookd).
    #[serde(default)]
    pub rules: Vec<RuleInfo>,
    /// The hookd network the NIC is on, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
}

impl NicRecord {
    /// Whether hookd's programs are on this NIC's tap.
    pub fn attached(&self) -> bool {
        self.attach.is_some()
    }
}

/// What hookd does with a NIC, as recorded, or why it does nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "StateText", into = "String")]
pub enum NicState {
    /// Policy present: enforced (see `NicMode::Enforced` for its stages).
    Enforced,
    /// No policy: counted, never filtered.
    CountersOnly,
    /// Left alone, for this reason.
    NotAttached { reason: String },
}

impl NicState {
    /// The state a planned NIC will be in.
    pub fn of(mode: &NicMode) -> NicState {
        match mode {
            NicMode::Enforced(_) => NicState::Enforced,
            NicMode::CountersOnly => NicState::CountersOnly,
            NicMode::NotAttached { reason } => NicState::NotAttached {
                reason: reason.clone(),
            },
        }
    }
}

impl std::fmt::Display for NicState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NicState::Enforced => f.write_str("anti-spoofing"),
            NicState::CountersOnly => f.write_str("counters only"),
            NicState::NotAttached { reason } => write!(f, "not attached: {reason}"),
        }
    }
}

/// A NIC state as the state files (and D-Bus) spell it, the same text as
/// older hookd, so records written by either load in the other.
#[derive(Deserialize)]
#[serde(transparent)]
struct StateText(String);

impl From<StateText> for NicState {
    fn from(StateText(s): StateText) -> NicState {
        match s.as_str() {
            "anti-spoofing" => NicState::Enforced,
            "counters only" => NicState::CountersOnly,
            other => NicState::NotAttached {
                reason: other
                    .strip_prefix("not attached: ")
                    .unwrap_or(other)
                    .to_string(),
            },
        }
    }
}

impl From<NicState> for String {
    fn from(s: NicState) -> String {
        s.to_string()
    }
}

mod attach_text {
    use super::Attachment;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn write<S: Serializer>(a: &Option<Attachment>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(a.map_or("", Attachment::name))
    }

    pub fn read<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Attachment>, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "" => Ok(None),
            t => Attachment::parse(t)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("unknown attachment '{t}'"))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainRecord {
    pub name: String,
    pub uuid: String,
    pub managed: bool,
    /// Hook operation at which hookd attached (start, started, reconnect...).
    pub attached_at: String,
    pub generation: u64,
    pub nics: Vec<NicRecord>,
    /// The domain XML the policy was applied from (for tracing packets
    /// through it); empty in records of older hookd.
    #[serde(default)]
    pub xml: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

pub struct StateDir {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

impl StateDir {
    pub fn open(run_dir: &Path) -> Result<StateDir, StateError> {
        let dir = run_dir.join("domains");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        Ok(StateDir { dir })
    }

    fn path(&self, uuid: &str) -> PathBuf {
        self.dir.join(format!("{uuid}.json"))
    }

    pub fn save(&self, rec: &DomainRecord) -> Result<(), StateError> {
        let path = self.path(&rec.uuid);
        let json = serde_json::to_vec_pretty(rec).map_err(|source| StateError::Json {
            path: path.clone(),
            source,
        })?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir).map_err(io(&path))?;
        tmp.write_all(&json).map_err(io(&path))?;
        tmp.persist(&path).map_err(|e| StateError::Io {
            path: path.clone(),
            source: e.error,
        })?;
        Ok(())
    }

    pub fn remove(&self, uuid: &str) -> Result<(), StateError> {
        let path = self.path(uuid);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Every saved record; unreadable files are returned as errors beside them.
    pub fn load_all(&self) -> (Vec<DomainRecord>, Vec<StateError>) {
        let mut recs = Vec::new();
        let mut errs = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) => return (recs, vec![io(&self.dir)(e)]),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path) {
                Ok(bytes) => match serde_json::from_slice(&bytes) {
                    Ok(r) => recs.push(r),
                    Err(source) => errs.push(StateError::Json { path, source }),
                },
                Err(e) => errs.push(io(&path)(e)),
            }
        }
        recs.sort_by(|a: &DomainRecord, b| a.name.cmp(&b.name));
        (recs, errs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_remove() {
        let tmp = tempfile::tempdir().unwrap();
        let sd = StateDir::open(tmp.path()).unwrap();
        let rec = DomainRecord {
            name: "vm1".into(),
            uuid: "u1".into(),
            managed: true,
            attached_at: "start".into(),
            generation: 1,
            nics: vec![NicRecord {
                mac: "52:54:00:00:00:0a".into(),
                kind: "bridge".into(),
                tap: "vnet0".into(),
                ifindex: 7,
                mode: NicState::Enforced,
                attach: Some(Attachment::Tcx),
                addresses: vec!["192.0.2.10/32".into()],
                rules: vec![],
                network: None,
            }],
            xml: String::new(),
        };
        sd.save(&rec).unwrap();
        let text = std::fs::read_to_string(tmp.path().join("domains/u1.json")).unwrap();
        assert!(text.contains(r#""attach": "tcx""#), "{text}");
        std::fs::write(tmp.path().join("domains/broken.json"), "{").unwrap();
        let (recs, errs) = sd.load_all();
        assert_eq!(recs, vec![rec]);
        assert_eq!(errs.len(), 1);
        sd.remove("u1").unwrap();
        sd.remove("u1").unwrap();
        assert!(sd.load_all().0.is_empty());
    }

    /// Records written by hookd before typed records still load.
    #[test]
    fn older_records_load() {
        let old = r#"{"name":"vm1","uuid":"u1","managed":false,"attached_at":"start",
            "generation":3,"nics":[{"mac":"52:54:00:00:00:0a","kind":"bridge","tap":"vnet0",
            "ifindex":0,"mode":"not attached: no <target dev> in the XML","attach":"",
            "addresses":[]},{"mac":"52:54:00:00:00:0b","kind":"bridge","tap":"vnet1",
            "ifindex":9,"mode":"anti-spoofing","attach":"netlink","addresses":[]}]}"#;
        let rec: DomainRecord = serde_json::from_str(old).unwrap();
        assert_eq!(rec.nics[0].attach, None);
        assert_eq!(
            rec.nics[0].mode,
            NicState::NotAttached {
                reason: "no <target dev> in the XML".into()
            }
        );
        assert_eq!(rec.nics[1].attach, Some(Attachment::Netlink));
        assert_eq!(rec.nics[1].mode, NicState::Enforced);
        assert!(serde_json::from_str::<DomainRecord>(&old.replace("netlink", "xdp")).is_err());
    }
}
