//! Tier 1: what a daemon does with the records of the one before it, on
//! the fake data plane. The kernel side of adoption (program swaps, map
//! versions) is tested on real taps in upgrade.rs.

use hookd::core::Daemon;
use hookd::core::records::StateDir;
use hookd_model::hook::HookArgs;
use hookd_testkit::plane::FakePlane;
use hookd_testkit::xml::{DomainXml, policy};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const UUID: &str = "00000000-0000-4000-8000-0000000000d1";
const MAC: &str = "52:54:00:00:00:0a";

fn domain_xml() -> String {
    DomainXml::new("vm1", UUID)
        .metadata(&policy(&format!(
            "<hookd:interface mac='{MAC}'><hookd:address prefix='192.0.2.10/32'/></hookd:interface>"
        )))
        .nic("ethernet", MAC, Some("tap-a"))
        .to_string()
}

const DENY_ALL: &str = "<policy xmlns='urn:hookd:policy:1'><interface mac='52:54:00:00:00:0a'>\
    <address prefix='192.0.2.10/32'/><ingress default='deny'/></interface></policy>";

#[test]
fn a_nic_whose_programs_could_not_be_replaced_takes_no_change_until_they_are() {
    let run = tempfile::tempdir().unwrap();
    let mut a = Daemon::new(
        Box::new(FakePlane::quiet()),
        StateDir::open(run.path()).unwrap(),
        true,
    );
    let args = HookArgs {
        domain: "vm1".into(),
        operation: "start".into(),
        sub_operation: "begin".into(),
        extra: "-".into(),
    };
    a.hook_event(&args, &domain_xml()).unwrap();
    drop(a);

    // The next daemon cannot swap its programs onto the tap.
    let works = Arc::new(AtomicBool::new(false));
    let (plane, calls) = FakePlane::upgrading(works.clone());
    let mut b = Daemon::new(Box::new(plane), StateDir::open(run.path()).unwrap(), true);
    assert_eq!(b.records().len(), 1, "adopted");
    assert!(calls.lock().unwrap().contains(&"refresh tap-a".to_string()));

    // Its old programs may read maps a change would not reach: refused,
    // and the record keeps the policy it had.
    let e = b.set_policy("vm1", Some(DENY_ALL)).unwrap_err().to_string();
    assert!(
        e.contains("tap-a still runs the programs of an earlier hookd"),
        "{e}"
    );
    assert!(!b.find("vm1").unwrap().xml.contains("default='deny'"));

    // Once the swap works, the change goes through (and is not retried
    // again after that).
    works.store(true, Ordering::SeqCst);
    b.set_policy("vm1", Some(DENY_ALL)).unwrap();
    assert!(b.find("vm1").unwrap().xml.contains("deny"));
    calls.lock().unwrap().clear();
    b.set_policy("vm1", None).unwrap();
    let after: Vec<String> = calls.lock().unwrap().clone();
    assert!(!after.iter().any(|c| c.starts_with("refresh")), "{after:?}");
}
