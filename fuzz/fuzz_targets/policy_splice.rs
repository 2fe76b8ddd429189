//! `SetPolicy` and `hookctl policy set`: a standalone policy document
//! spliced into a domain's XML. The input is two documents split at the
//! first NUL byte: the domain, then the policy. What the splice returns must
//! be what parsing its output gives (it moves line numbers instead of
//! parsing again), and the unqualified form libvirt stores must mean the
//! same policy.
#![no_main]

use hookd_model::{domain, metadata};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (dom_xml, policy_xml) = text.split_once('\0').unwrap_or((text, ""));
    let doc = metadata::parse_policy_document(policy_xml).ok();
    if let Some(doc) = &doc {
        let bare = metadata::unqualified(&doc.text).expect("a parsed policy re-writes");
        // libvirt puts the element back in hookd's namespace.
        let requalified = bare.replacen("<policy", "<policy xmlns=\"urn:hookd:policy:1\"", 1);
        let again = metadata::parse_policy_document(&requalified)
            .unwrap_or_else(|e| panic!("unqualified form refused: {e}\n{requalified}"));
        let lineless = |mut p: hookd_model::policy::Policy| {
            p.each_line(|l| *l = 0);
            p
        };
        assert_eq!(lineless(again.policy), lineless(doc.policy.clone()));
    }
    for d in [doc.as_ref(), None] {
        if let Ok((xml, dom)) = metadata::with_policy_document(dom_xml, d) {
            let reparsed = domain::parse(&xml)
                .unwrap_or_else(|e| panic!("the spliced document does not parse: {e}\n{xml}"));
            assert_eq!(reparsed, dom, "splice and parse disagree\n{xml}");
        }
    }
    let _ = metadata::policy_text(dom_xml);
});
