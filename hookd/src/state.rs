//! What hookd attached, per domain, kept under the run directory so that a
//! restarted daemon (and `stopped` XML without `<target dev>`) knows what to
//! detach. One JSON file per domain, written atomically.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicRecord {
    pub mac: String,
    pub kind: String,
    pub tap: String,
    pub ifindex: u32,
    /// "anti-spoofing", "counters only" or "not attached: ..."
    pub mode: String,
    /// How the programs are attached: tcx or netlink; empty when not attached.
    pub attach: String,
    pub addresses: Vec<String>,
    /// Security-group rules in force (empty for records of older hookd).
    #[serde(default)]
    pub rules: Vec<crate::plan::RuleInfo>,
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
                mode: "anti-spoofing".into(),
                attach: "tcx".into(),
                addresses: vec!["192.0.2.10/32".into()],
                rules: vec![],
            }],
            xml: String::new(),
        };
        sd.save(&rec).unwrap();
        std::fs::write(tmp.path().join("domains/broken.json"), "{").unwrap();
        let (recs, errs) = sd.load_all();
        assert_eq!(recs, vec![rec]);
        assert_eq!(errs.len(), 1);
        sd.remove("u1").unwrap();
        sd.remove("u1").unwrap();
        assert!(sd.load_all().0.is_empty());
    }
}
