//! Which map entries each NIC owns, so that re-applying a policy or
//! detaching a NIC touches only those.

use aya::maps::lpm_trie::Key;
use aya::maps::{HashMap, LpmTrie, MapData, PerCpuHashMap};
use hookd_bpf::layout::{
    AddrData, AddrKey, FwClassData, FwHitKey, FwRuleData, FwVerdict, NicConfig,
};

/// Which firewall and address entries each NIC owns, so that re-applying a
/// policy or detaching a NIC touches only those, instead of walking maps
/// that every NIC shares (which made attaching N NICs cost N^2). Rebuilt
/// from the pinned maps when hookd starts.
#[derive(Default)]
pub(crate) struct Owned {
    pub(crate) classes: std::collections::HashMap<(u32, u8), Vec<Key<FwClassData>>>,
    pub(crate) rules: std::collections::HashMap<(u32, u8), Vec<Key<FwRuleData>>>,
    pub(crate) addrs: std::collections::HashMap<u32, Vec<AddrKey>>,
    /// Table halves (ifindex, half) a policy switch left behind: no packet
    /// reads them any more, `Datapath::tidy` empties them.
    pub(crate) retired: std::collections::HashSet<(u32, u8)>,
}

impl Owned {
    pub(crate) fn scan(
        classes: &LpmTrie<MapData, FwClassData, u32>,
        rules: &LpmTrie<MapData, FwRuleData, FwVerdict>,
        addrs: &LpmTrie<MapData, AddrData, u32>,
    ) -> Owned {
        let mut o = Owned::default();
        for k in classes.keys().filter_map(Result::ok) {
            let d = k.data();
            o.classes.entry((d.ifindex, d.half)).or_default().push(k);
        }
        for k in rules.keys().filter_map(Result::ok) {
            let d = k.data();
            o.rules.entry((d.ifindex, d.half)).or_default().push(k);
        }
        for k in addrs.keys().filter_map(Result::ok) {
            o.addrs.entry(k.data().ifindex).or_default().push(k);
        }
        o
    }

    /// After a scan: the halves with entries or hit counters that no NIC
    /// uses, left by a hookd that stopped before tidying (or by an older
    /// one, which kept an idle half's hit counters until it wrote that
    /// half again).
    pub(crate) fn retire_idle(
        &mut self,
        nics: &HashMap<MapData, u32, NicConfig>,
        hits: &PerCpuHashMap<MapData, FwHitKey, u64>,
    ) {
        let halves: std::collections::HashSet<(u32, u8)> = self
            .classes
            .keys()
            .chain(self.rules.keys())
            .copied()
            .chain(
                hits.keys()
                    .filter_map(Result::ok)
                    .map(|k| (k.ifindex, k.half)),
            )
            .collect();
        for (ifindex, half) in halves {
            if nics.get(&ifindex, 0).map_or(true, |c| c.fw_gen != half) {
                self.retired.insert((ifindex, half));
            }
        }
    }
}
