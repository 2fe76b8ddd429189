//! The networks hookd knows: defined over D-Bus (kept, one file each, in
//! `<state_dir>/networks/`) or by configuration management (read from
//! `/etc/hookd/networks.d/*.xml`, never written by hookd). Every change is
//! validated alone and against the other networks before anything is
//! written, and a file is replaced atomically (written beside, renamed).

use hookd_model::network::{self, Network};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where a definition came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Defined over D-Bus: this file under the state directory.
    Defined(PathBuf),
    /// A file of configuration management's, read-only to hookd.
    Config(PathBuf),
}

impl Source {
    pub fn path(&self) -> &Path {
        match self {
            Source::Defined(p) | Source::Config(p) => p,
        }
    }
}

/// A network and the document that defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub network: Network,
    pub xml: String,
    pub source: Source,
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkStoreError {
    /// The document is invalid (the message names element, attribute, line).
    #[error("{0}")]
    Invalid(String),
    #[error("no network '{0}' is defined")]
    NotFound(String),
    /// A change that would break NICs that use the network, or one the
    /// store may not make (a definition from /etc).
    #[error("{0}")]
    Refused(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> NetworkStoreError {
    move |source| NetworkStoreError::Io { what, source }
}

/// The largest network document accepted.
pub const MAX_NETWORK_BYTES: usize = 64 * 1024;

pub struct NetworkStore {
    /// `<state_dir>/networks`; None: definitions live in memory only (tests
    /// of the core that need no files).
    dir: Option<PathBuf>,
    networks: BTreeMap<String, Definition>,
}

impl NetworkStore {
    /// Networks kept in memory only.
    pub fn in_memory() -> NetworkStore {
        NetworkStore {
            dir: None,
            networks: BTreeMap::new(),
        }
    }

    /// Reads the definitions under `dir` (created at the first definition) and
    /// `config_dir` (may be absent). A file that is invalid, or conflicts
    /// with one read before it, is skipped with an error in the log, so
    /// one bad file does not keep hookd from starting; files are read in
    /// name order, configuration management's first.
    pub fn open(dir: &Path, config_dir: &Path) -> Result<NetworkStore, NetworkStoreError> {
        let mut store = NetworkStore {
            dir: Some(dir.to_owned()),
            networks: BTreeMap::new(),
        };
        for (d, config) in [(config_dir, true), (dir, false)] {
            let mut files: Vec<PathBuf> = match std::fs::read_dir(d) {
                Ok(rd) => rd
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "xml"))
                    .collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(io(format!("listing {}", d.display()))(e)),
            };
            files.sort();
            for path in files {
                let source = if config {
                    Source::Config(path.clone())
                } else {
                    Source::Defined(path.clone())
                };
                if let Err(e) = store.read_file(&path, source) {
                    tracing::error!(file = %path.display(), error = %e, "network definition skipped");
                }
            }
        }
        Ok(store)
    }

    fn read_file(&mut self, path: &Path, source: Source) -> Result<(), NetworkStoreError> {
        let xml =
            std::fs::read_to_string(path).map_err(io(format!("reading {}", path.display())))?;
        let def = self.check(&xml, source)?;
        if let Some(old) = self.networks.get(&def.network.name) {
            return Err(NetworkStoreError::Refused(format!(
                "network {} is already defined by {}",
                def.network.name,
                old.source.path().display()
            )));
        }
        self.networks.insert(def.network.name.clone(), def);
        Ok(())
    }

    /// Validates `xml` alone and against every other network.
    fn check(&self, xml: &str, source: Source) -> Result<Definition, NetworkStoreError> {
        if xml.len() > MAX_NETWORK_BYTES {
            return Err(NetworkStoreError::Invalid(format!(
                "the network document is {} bytes, more than the {MAX_NETWORK_BYTES}-byte limit",
                xml.len()
            )));
        }
        let network =
            network::parse_document(xml).map_err(|e| NetworkStoreError::Invalid(e.to_string()))?;
        let others = self
            .networks
            .values()
            .filter(|d| d.network.name != network.name)
            .map(|d| &d.network);
        network::check_set(&network, others).map_err(NetworkStoreError::Invalid)?;
        Ok(Definition {
            network,
            xml: xml.to_string(),
            source,
        })
    }

    /// Defines a network, or replaces the definition of the same name.
    /// `users` names what uses the network now (NICs of running domains):
    /// a definition they use is not replaced. Returns the new definition
    /// and whether it replaced one.
    pub fn define(
        &mut self,
        xml: &str,
        users: impl Fn(&str) -> Vec<String>,
    ) -> Result<(Definition, bool), NetworkStoreError> {
        let probe = self.check(xml, Source::Defined(PathBuf::new()))?;
        let name = probe.network.name.clone();
        let replaced = match self.networks.get(&name) {
            Some(old) => {
                if let Source::Config(p) = &old.source {
                    return Err(NetworkStoreError::Refused(format!(
                        "network {name} is defined by {}, which configuration management owns; change it there",
                        p.display()
                    )));
                }
                if old.network != probe.network {
                    unused(&name, &users)?;
                }
                true
            }
            None => false,
        };
        let source = match &self.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
                let path = dir.join(format!("{name}.xml"));
                write_atomically(&path, xml)?;
                Source::Defined(path)
            }
            None => Source::Defined(PathBuf::new()),
        };
        let def = Definition { source, ..probe };
        self.networks.insert(name, def.clone());
        Ok((def, replaced))
    }

    /// Removes a network nothing uses.
    pub fn undefine(
        &mut self,
        name: &str,
        users: impl Fn(&str) -> Vec<String>,
    ) -> Result<Definition, NetworkStoreError> {
        let def = self
            .networks
            .get(name)
            .ok_or_else(|| NetworkStoreError::NotFound(name.to_string()))?;
        if let Source::Config(p) = &def.source {
            return Err(NetworkStoreError::Refused(format!(
                "network {name} is defined by {}, which configuration management owns; remove it there",
                p.display()
            )));
        }
        unused(name, &users)?;
        if self.dir.is_some() {
            let path = def.source.path();
            std::fs::remove_file(path).map_err(io(format!("removing {}", path.display())))?;
        }
        self.networks
            .remove(name)
            .ok_or_else(|| NetworkStoreError::NotFound(name.to_string()))
    }

    pub fn get(&self, name: &str) -> Option<&Definition> {
        self.networks.get(name)
    }

    /// Every definition, by name.
    pub fn list(&self) -> impl Iterator<Item = &Definition> {
        self.networks.values()
    }
}

/// Refuses to change network `name` while `users` names what uses it.
fn unused(name: &str, users: &impl Fn(&str) -> Vec<String>) -> Result<(), NetworkStoreError> {
    let u = users(name);
    if u.is_empty() {
        return Ok(());
    }
    Err(NetworkStoreError::Refused(format!(
        "network {name} is in use by {}; move them to another network or stop them first",
        u.join(", ")
    )))
}

/// Writes `path` so that a reader sees the old file or the new one, whole.
fn write_atomically(path: &Path, text: &str) -> Result<(), NetworkStoreError> {
    let tmp = path.with_extension("xml.tmp");
    std::fs::write(&tmp, text).map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(format!("renaming {} to {}", tmp.display(), path.display()))(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, vni: u32, prefix: &str, gw: &str) -> String {
        format!(
            "<network xmlns='urn:hookd:network:1' name='{name}' tenant='acme' vni='{vni}'>\n\
             <subnet prefix='{prefix}' gateway='{gw}'/>\n</network>\n"
        )
    }

    fn nobody(_: &str) -> Vec<String> {
        Vec::new()
    }

    #[test]
    fn definitions_persist_and_are_read_back() {
        let (state, etc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dir = state.path().join("networks");
        let mut s = NetworkStore::open(&dir, etc.path()).unwrap();
        let (d, replaced) = s
            .define(&doc("blue", 10, "198.51.100.0/24", "198.51.100.1"), nobody)
            .unwrap();
        assert!(!replaced);
        assert_eq!(d.source, Source::Defined(dir.join("blue.xml")));
        // Redefining the same name replaces it.
        let (_, replaced) = s
            .define(&doc("blue", 10, "198.51.100.0/25", "198.51.100.1"), nobody)
            .unwrap();
        assert!(replaced);
        let again = NetworkStore::open(&dir, etc.path()).unwrap();
        assert_eq!(
            again.get("blue").unwrap().network.subnets[0]
                .prefix
                .to_string(),
            "198.51.100.0/25"
        );
        let mut again = again;
        again.undefine("blue", nobody).unwrap();
        assert!(!dir.join("blue.xml").exists());
        assert!(matches!(
            again.undefine("blue", nobody),
            Err(NetworkStoreError::NotFound(_))
        ));
    }

    #[test]
    fn an_invalid_or_conflicting_definition_changes_nothing() {
        let (state, etc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dir = state.path().join("networks");
        let mut s = NetworkStore::open(&dir, etc.path()).unwrap();
        s.define(&doc("blue", 10, "198.51.100.0/24", "198.51.100.1"), nobody)
            .unwrap();
        let e = s
            .define(&doc("red", 10, "203.0.113.0/24", "203.0.113.1"), nobody)
            .unwrap_err();
        assert!(
            e.to_string().contains("VNI 10 is already network blue's"),
            "{e}"
        );
        let e = s
            .define(&doc("red", 11, "198.51.100.0/26", "198.51.100.1"), nobody)
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("overlaps 198.51.100.0/24 of network blue"),
            "{e}"
        );
        let e = s.define("<network", nobody).unwrap_err();
        assert!(matches!(e, NetworkStoreError::Invalid(_)), "{e}");
        assert_eq!(s.list().count(), 1);
        let files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(files, ["blue.xml"]);
    }

    #[test]
    fn a_network_in_use_is_neither_changed_nor_removed() {
        let mut s = NetworkStore::in_memory();
        let xml = doc("blue", 10, "198.51.100.0/24", "198.51.100.1");
        s.define(&xml, nobody).unwrap();
        let users = |_: &str| vec!["vm1 (52:54:00:00:00:0a)".to_string()];
        let e = s
            .define(&doc("blue", 10, "198.51.100.0/25", "198.51.100.1"), users)
            .unwrap_err();
        assert!(
            e.to_string().contains("in use by vm1 (52:54:00:00:00:0a)"),
            "{e}"
        );
        // The same definition again is no change.
        s.define(&xml, users).unwrap();
        let e = s.undefine("blue", users).unwrap_err();
        assert!(e.to_string().contains("in use by vm1"), "{e}");
        assert!(s.get("blue").is_some());
    }

    #[test]
    fn configuration_management_owns_its_files() {
        let (state, etc) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(
            etc.path().join("blue.xml"),
            doc("blue", 10, "198.51.100.0/24", "198.51.100.1"),
        )
        .unwrap();
        // Invalid, and a VNI conflict: skipped, the rest is read.
        std::fs::write(etc.path().join("bad.xml"), "<network").unwrap();
        std::fs::write(
            etc.path().join("dup.xml"),
            doc("dup", 10, "203.0.113.0/24", "203.0.113.1"),
        )
        .unwrap();
        std::fs::write(etc.path().join("notes.txt"), "not a definition").unwrap();
        let mut s = NetworkStore::open(&state.path().join("n"), etc.path()).unwrap();
        let names: Vec<&str> = s.list().map(|d| d.network.name.as_str()).collect();
        assert_eq!(names, ["blue"]);
        assert!(matches!(s.get("blue").unwrap().source, Source::Config(_)));
        let e = s.undefine("blue", nobody).unwrap_err();
        assert!(
            e.to_string().contains("configuration management owns"),
            "{e}"
        );
        let e = s
            .define(&doc("blue", 10, "198.51.100.0/25", "198.51.100.1"), nobody)
            .unwrap_err();
        assert!(e.to_string().contains("change it there"), "{e}");
        assert!(etc.path().join("blue.xml").exists());
    }
}
