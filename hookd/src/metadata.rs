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
}

/// Checks a standalone `<policy xmlns="urn:hookd:policy:1">` document.
/// Line numbers in errors are the document's own.
pub fn parse_policy_document(text: &str) -> Result<PolicyDocument, DomainError> {
    let root = xml_tree::parse(text)?;
    if root.ns.as_deref() != Some(policy::NAMESPACE) || root.name != "policy" {
        return Err(PolicyError {
            line: root.line,
            element: root.qname.clone(),
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
    })
}

/// The text of the domain's hookd policy element, if it has one.
pub fn policy_text(domain_xml: &str) -> Result<Option<String>, DomainError> {
    let root = xml_tree::parse(domain_xml)?;
    Ok(domain::policy_element(&root)?.map(|el| domain_xml[el.span.clone()].to_string()))
}

/// `domain_xml` with its hookd policy replaced by `policy` (`None` removes
/// it). Everything else in the document is kept byte for byte.
pub fn with_policy(domain_xml: &str, policy: Option<&str>) -> Result<String, DomainError> {
    let root = xml_tree::parse(domain_xml)?;
    let splice = |at: std::ops::Range<usize>, with: &str| {
        format!("{}{with}{}", &domain_xml[..at.start], &domain_xml[at.end..])
    };
    let existing = domain::policy_element(&root)?;
    let meta = root.child("metadata");
    Ok(match (existing, meta, policy) {
        (Some(el), _, new) => splice(el.span.clone(), new.unwrap_or("")),
        (None, _, None) => domain_xml.to_string(),
        (None, Some(meta), Some(new)) => insert_into(domain_xml, meta, new, "metadata"),
        (None, None, Some(new)) => {
            insert_into(domain_xml, &root, &format!("<metadata>{new}</metadata>"), "domain")
        }
    })
}

/// Inserts `content` as the last child of `el` (turning `<el/>` into
/// `<el>content</el>`).
fn insert_into(xml: &str, el: &Element, content: &str, name: &str) -> String {
    if el.content_end == el.span.end && xml[..el.span.end].ends_with("/>") {
        let open = &xml[el.span.start..el.span.end - 2];
        format!(
            "{}{open}>{content}</{name}>{}",
            &xml[..el.span.start],
            &xml[el.span.end..]
        )
    } else {
        format!(
            "{}{content}{}",
            &xml[..el.content_end],
            &xml[el.content_end..]
        )
    }
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
        for meta in [
            "",
            "  <metadata/>\n",
            "  <metadata>\n    <other xmlns='urn:x'/>\n  </metadata>\n",
            "  <metadata><h:policy xmlns:h='urn:hookd:policy:1'><h:interface/></h:policy></metadata>\n",
        ] {
            let xml = with_policy(&domain(meta), Some(POLICY)).unwrap();
            let dom = domain::parse(&xml).unwrap();
            let p = dom.policy.expect("policy present");
            assert_eq!(p.interfaces.len(), 1, "{xml}");
            assert!(p.interfaces[0].ingress.is_some(), "{xml}");
            assert_eq!(policy_text(&xml).unwrap().as_deref(), Some(POLICY));
            if meta.contains("urn:x") {
                assert!(xml.contains("<other xmlns='urn:x'/>"), "other metadata kept");
            }
            let removed = with_policy(&xml, None).unwrap();
            assert!(domain::parse(&removed).unwrap().policy.is_none());
            assert_eq!(policy_text(&removed).unwrap(), None);
        }
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
