//! hookd's `<policy>` inside a domain's `<metadata>`, as text: read it out of
//! a domain XML, check a policy document on its own, and splice a new policy
//! into a domain XML (the document hookd then applies and records, so
//! tracing and re-adoption see the policy in force).

use crate::domain::{self, DomainError};
use crate::policy::{self, Policy, PolicyError};
use crate::xml_tree::{self, Element};

/// A checked policy document: its parsed form and its element's text
/// (without any `<?xml?>` declaration or comments around it).
#[derive(Debug, Clone)]
pub struct PolicyDocument {
    pub policy: Policy,
    pub text: String,
    /// The document line `text` starts on.
    pub line: u32,
}

/// Checks a standalone `<policy xmlns="urn:hookd:policy:1">` document.
/// Line numbers in errors are the document's own.
pub fn parse_policy_document(text: &str) -> Result<PolicyDocument, DomainError> {
    let root = xml_tree::parse(text)?;
    if root.ns.as_deref() != Some(policy::NAMESPACE) || root.name != "policy" {
        return Err(PolicyError {
            line: root.line,
            element: root.qname.to_string(),
            attribute: None,
            message: format!(
                "a policy document's root element is <policy> in namespace {}",
                policy::NAMESPACE
            ),
        }
        .into());
    }
    Ok(PolicyDocument {
        policy: policy::parse_policy(&root)?,
        text: text[root.span.clone()].to_string(),
        line: root.line,
    })
}

/// The text of the domain's hookd policy element, if it has one.
pub fn policy_text(domain_xml: &str) -> Result<Option<String>, DomainError> {
    let root = xml_tree::parse_opaque(domain_xml, policy::NAMESPACE)?;
    Ok(domain::policy_element(&root)?.map(|el| domain_xml[el.span.clone()].to_string()))
}

/// `domain_xml` with its hookd policy replaced by `doc` (`None` removes
/// it), everything else kept byte for byte; and the domain the new XML
/// describes. The old XML is parsed once, its old policy only read past
/// (it is cut out), and the checked policy not again (line numbers are
/// moved to where things now sit), which keeps XML work off a large policy
/// change's latency.
pub fn with_policy_document(
    domain_xml: &str,
    doc: Option<&PolicyDocument>,
) -> Result<(String, domain::Domain), DomainError> {
    let root = xml_tree::parse_opaque(domain_xml, policy::NAMESPACE)?;
    let mut dom = domain::from_tree(&root)?;
    let existing = domain::policy_element(&root)?;
    // What is cut out of the old XML and what goes in its place: the new
    // policy over the old one, or last in <metadata> (made when missing;
    // `<el/>` becomes `<el>...</el>`), or nothing.
    let (cut, lead, trail) = match (doc, existing, root.child("metadata")) {
        (None, None, _) => return Ok((domain_xml.to_string(), dom)),
        (_, Some(el), _) => (el.span.clone(), String::new(), String::new()),
        (Some(_), None, meta) => {
            let (name, wrap, open, close) = match meta {
                Some(meta) => ("metadata", meta, "", ""),
                None => ("domain", &root, "<metadata>", "</metadata>"),
            };
            let empty =
                wrap.content_end == wrap.span.end && domain_xml[..wrap.span.end].ends_with("/>");
            if empty {
                let tag = &domain_xml[wrap.span.start..wrap.span.end - 2];
                (
                    wrap.span.clone(),
                    format!("{tag}>{open}"),
                    format!("{close}</{name}>"),
                )
            } else {
                (
                    wrap.content_end..wrap.content_end,
                    open.to_string(),
                    close.to_string(),
                )
            }
        }
    };
    let text = doc.map_or("", |d| d.text.as_str());
    let xml = format!(
        "{}{lead}{text}{trail}{}",
        &domain_xml[..cut.start],
        &domain_xml[cut.end..]
    );
    let lines = |t: &str| t.bytes().filter(|b| *b == b'\n').count() as i64;
    // NICs after the splice move by the lines it added or removed.
    let moved = lines(&lead) + lines(text) + lines(&trail) - lines(&domain_xml[cut.clone()]);
    if root
        .child("devices")
        .is_some_and(|d| d.span.start >= cut.end)
    {
        for nic in &mut dom.interfaces {
            policy::shift_line(&mut nic.line, moved);
        }
    }
    if let Some(doc) = doc {
        let line = lines(&xml[..cut.start + lead.len()]) + 1;
        let mut policy = doc.policy.clone();
        policy.shift_lines(line - i64::from(doc.line));
        dom.policy = Some(policy);
    }
    Ok((xml, dom))
}

/// A policy element as libvirt's `virDomainSetMetadata` takes it: without
/// prefixes or namespace declarations, since libvirt puts the element in
/// hookd's namespace itself (under the key "hookd"). Elements of other
/// namespaces keep theirs, declared on themselves.
pub fn unqualified(policy_text: &str) -> Result<String, DomainError> {
    let root = xml_tree::parse(policy_text)?;
    let mut w = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
    write_unqualified(&mut w, &root).map_err(|e| xml_tree::XmlError::Malformed {
        line: root.line,
        message: e.to_string(),
    })?;
    Ok(String::from_utf8_lossy(&w.into_inner()).into_owned())
}

fn write_unqualified(w: &mut quick_xml::Writer<Vec<u8>>, el: &Element) -> std::io::Result<()> {
    use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
    let mut start = BytesStart::new(el.name.as_str());
    if let Some(ns) = el.ns.as_deref().filter(|ns| *ns != policy::NAMESPACE) {
        start.push_attribute(("xmlns", ns));
    }
    for a in el.attrs.iter().filter(|a| a.ns.is_none()) {
        start.push_attribute((a.name.as_str(), a.value.as_str()));
    }
    if el.children.is_empty() && el.text.trim().is_empty() {
        return w.write_event(Event::Empty(start));
    }
    w.write_event(Event::Start(start))?;
    if !el.text.trim().is_empty() {
        w.write_event(Event::Text(BytesText::new(el.text.trim())))?;
    }
    for c in &el.children {
        write_unqualified(w, c)?;
    }
    w.write_event(Event::End(BytesEnd::new(el.name.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = r#"<policy xmlns="urn:hookd:policy:1"><interface><ingress default="deny"/></interface></policy>"#;

    fn domain(meta: &str) -> String {
        format!("<domain type='qemu'>\n  <name>vm</name>\n{meta}  <devices/>\n</domain>\n")
    }

    #[test]
    fn splices_into_every_shape_of_metadata() {
        // The domain returned carries the line numbers the new XML has,
        // wherever the policy lands and whatever precedes it in its document.
        let multi_line = "<?xml version='1.0'?>\n<!-- a comment -->\n<policy xmlns=\"urn:hookd:policy:1\">\n <interface>\n  <ingress default=\"deny\">\n   <rule action=\"allow\" protocol=\"tcp\" ports=\"22\"/>\n  </ingress>\n </interface>\n</policy>\n";
        let doc = parse_policy_document(multi_line).unwrap();
        let with_nic = |meta: &str| {
            format!(
                "<domain>\n<name>d</name>\n{meta}<devices>\n<interface type='bridge'>\n<mac address='52:54:00:00:00:0a'/></interface>\n</devices>\n</domain>"
            )
        };
        for old in [
            with_nic(""),
            with_nic("<metadata/>\n"),
            with_nic(
                "<metadata>\n<h:policy xmlns:h='urn:hookd:policy:1'>\n\n\n\n<h:interface/></h:policy>\n</metadata>\n",
            ),
            domain(""),
            domain("  <metadata/>\n"),
            domain(
                "  <metadata>\n\n  <h:policy xmlns:h='urn:hookd:policy:1'>\n<h:interface/></h:policy></metadata>\n",
            ),
            "<domain><name>d</name></domain>".to_string(),
            "<domain>\n<name>d</name><metadata/></domain>".to_string(),
        ] {
            let (xml, spliced) = with_policy_document(&old, Some(&doc)).unwrap();
            assert_eq!(spliced, domain::parse(&xml).unwrap(), "{xml}");
            let (removed, dom) = with_policy_document(&xml, None).unwrap();
            assert_eq!(dom, domain::parse(&removed).unwrap(), "{removed}");
        }
        for meta in [
            "",
            "  <metadata/>\n",
            "  <metadata>\n    <other xmlns='urn:x'/>\n  </metadata>\n",
            "  <metadata><h:policy xmlns:h='urn:hookd:policy:1'><h:interface/></h:policy></metadata>\n",
        ] {
            let doc = parse_policy_document(POLICY).unwrap();
            let (xml, spliced) = with_policy_document(&domain(meta), Some(&doc)).unwrap();
            let dom = domain::parse(&xml).unwrap();
            assert_eq!(spliced, dom, "the domain returned is the new XML's");
            let p = dom.policy.expect("policy present");
            assert_eq!(p.interfaces.len(), 1, "{xml}");
            assert!(p.interfaces[0].ingress.is_some(), "{xml}");
            assert_eq!(policy_text(&xml).unwrap().as_deref(), Some(POLICY));
            if meta.contains("urn:x") {
                assert!(
                    xml.contains("<other xmlns='urn:x'/>"),
                    "other metadata kept"
                );
            }
            let (removed, dom) = with_policy_document(&xml, None).unwrap();
            assert!(dom.policy.is_none());
            assert!(domain::parse(&removed).unwrap().policy.is_none());
            assert_eq!(policy_text(&removed).unwrap(), None);
        }
    }

    #[test]
    fn unqualified_for_libvirt_keeps_the_policy() {
        let prefixed = "<h:policy xmlns:h='urn:hookd:policy:1'>\n <h:interface mac='52:54:00:00:00:0a'>\n  <h:ingress default='deny'><h:rule action='allow' protocol='tcp' ports='22' remote='198.51.100.0/24'/></h:ingress>\n </h:interface>\n</h:policy>";
        let plain = unqualified(prefixed).unwrap();
        assert!(!plain.contains("h:") && !plain.contains("xmlns"), "{plain}");
        // Put back in hookd's namespace, it is the same policy.
        let again = plain.replacen("<policy", "<policy xmlns='urn:hookd:policy:1'", 1);
        let without_lines = |text: &str| {
            let mut p = parse_policy_document(text).unwrap().policy;
            for i in &mut p.interfaces {
                i.line = 0;
                for r in i.ingress.iter_mut().flat_map(|d| d.rules.iter_mut()) {
                    r.line = 0;
                }
            }
            p.interfaces
        };
        assert_eq!(without_lines(&again), without_lines(prefixed));
    }

    #[test]
    fn policy_documents_are_checked_on_their_own() {
        let doc = parse_policy_document(&format!("<?xml version='1.0'?>\n{POLICY}\n")).unwrap();
        assert_eq!(doc.text, POLICY);
        let e = parse_policy_document("<policy/>").unwrap_err().to_string();
        assert!(e.contains("urn:hookd:policy:1"), "{e}");
        let e = parse_policy_document(
            "<policy xmlns='urn:hookd:policy:1'>\n<interface>\n<ingress default='maybe'/>\n</interface></policy>",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("line 3:"), "{e}");
        assert!(e.contains("default"), "{e}");
    }
}
