//! A libvirt domain XML document, as the hook, `ValidatePolicy`,
//! `hookctl explain` and libvirt's events hand it to hookd: parsed, planned
//! and explained, with the fail-closed property checked: whatever the hook
//! would decide when hookd is down must not start a domain that carries
//! policy as unmanaged.
#![no_main]

use hookd_model::{domain, explain, plan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = domain::parse(xml);
    if let Ok(dom) = &parsed {
        if dom.policy.is_some() {
            // The hook's cheap check, used when hookd cannot be reached.
            assert!(
                domain::mentions_hookd_policy(xml),
                "a domain with hookd policy that the hook would take for unmanaged"
            );
        }
        for stage in [plan::Stage::BeforeTaps, plan::Stage::TapsExist] {
            let _ = plan::plan_domain(dom, true, stage);
            let _ = plan::plan_domain(dom, false, stage);
        }
        let _ = plan::warnings(dom);
        // Parsing is a function of the text.
        assert_eq!(domain::parse(xml).ok().as_ref(), Some(dom));
    } else if let Err(e) = &parsed {
        // An error names where: a line, or what is missing.
        let text = e.to_string();
        assert!(!text.is_empty());
    }
    if let Ok(x) = explain::explain(xml) {
        let _ = x.render();
    }
    let _ = explain::validate(xml);
});
