//! A small namespace-aware element tree with line numbers, built with
//! quick-xml under hard limits. Domain XML and hookd's policy are read from
//! it; nothing here knows about libvirt.

use quick_xml::NsReader;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use smol_str::SmolStr;

/// Largest document accepted. libvirt's own domain XML is far smaller; the
/// cap keeps a hostile caller from making hookd allocate without bound.
pub const MAX_XML_BYTES: usize = 4 * 1024 * 1024;
/// Deepest element nesting accepted.
pub const MAX_DEPTH: usize = 64;
/// Most elements accepted in one document.
pub const MAX_ELEMENTS: usize = 200_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    pub ns: Option<SmolStr>,
    pub name: SmolStr,
    pub value: SmolStr,
}

/// An element of the tree. Names and values are short strings held
/// inline (`SmolStr`): a 1,000-rule policy is some 10,000 of them, and an
/// allocation each was most of the time to parse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// Namespace URI, None when unqualified.
    pub ns: Option<SmolStr>,
    /// Local name.
    pub name: SmolStr,
    /// Prefixed name as written, for messages (`hookd:rule`).
    pub qname: SmolStr,
    pub attrs: Vec<Attr>,
    pub children: Vec<Element>,
    pub text: String,
    /// 1-based line of the start tag.
    pub line: u32,
    /// Bytes of the source the element spans, start tag to end tag.
    pub span: std::ops::Range<usize>,
    /// Where its end tag starts (`span.end` for an empty element): content
    /// is inserted there.
    pub content_end: usize,
}

impl Element {
    /// Unqualified children named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children
            .iter()
            .filter(move |c| c.ns.is_none() && c.name == name)
    }

    pub fn child<'a>(&'a self, name: &'a str) -> Option<&'a Element> {
        self.children_named(name).next()
    }

    /// Value of the unqualified attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|a| a.ns.is_none() && a.name == name)
            .map(|a| a.value.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("XML is {size} bytes, more than the {max}-byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("line {line}: malformed XML: {message}")]
    Malformed { line: u32, message: String },
    #[error("line {line}: elements nested deeper than {MAX_DEPTH} levels")]
    TooDeep { line: u32 },
    #[error("line {line}: more than {MAX_ELEMENTS} elements")]
    TooManyElements { line: u32 },
    #[error("line {line}: unknown namespace prefix '{prefix}'")]
    UnknownPrefix { line: u32, prefix: String },
    #[error("no root element")]
    Empty,
}

/// Tracks the line number of a byte offset, moving forward only.
struct Lines<'a> {
    text: &'a [u8],
    pos: usize,
    line: u32,
}

impl Lines<'_> {
    fn at(&mut self, pos: usize) -> u32 {
        let pos = pos.min(self.text.len());
        if pos > self.pos {
            self.line += self.text[self.pos..pos]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u32;
            self.pos = pos;
        }
        self.line
    }
}

fn ns_of(r: ResolveResult<'_>, line: u32) -> Result<Option<SmolStr>, XmlError> {
    match r {
        ResolveResult::Bound(ns) => Ok(Some(SmolStr::new(ns.as_ref()))),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(prefix) => Err(XmlError::UnknownPrefix { line, prefix }),
    }
}

fn malformed(line: u32, e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed {
        line,
        message: e.to_string(),
    }
}

fn element(reader: &NsReader<&[u8]>, e: &BytesStart<'_>, line: u32) -> Result<Element, XmlError> {
    let (ns, local) = reader.resolver().resolve_element(e.name());
    let mut el = Element {
        ns: ns_of(ns, line)?,
        name: SmolStr::new(local.as_ref()),
        qname: SmolStr::new(e.name().as_ref()),
        attrs: Vec::new(),
        children: Vec::new(),
        text: String::new(),
        line,
        span: 0..0,
        content_end: 0,
    };
    for a in e.attributes() {
        let a = a.map_err(|err| malformed(line, err))?;
        let key = a.key.as_ref();
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let (ns, local) = reader.resolver().resolve_attribute(a.key);
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|err| malformed(line, err))?;
        el.attrs.push(Attr {
            ns: ns_of(ns, line)?,
            name: SmolStr::new(local.as_ref()),
            value: SmolStr::new(value),
        });
    }
    Ok(el)
}

/// Text of a general reference (`&amp;`, `&#x41;`); other entities are refused.
fn resolve_ref(name: &str, line: u32) -> Result<String, XmlError> {
    let c = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => {
            let code = if let Some(hex) = name.strip_prefix("#x") {
                u32::from_str_radix(hex, 16).ok()
            } else if let Some(dec) = name.strip_prefix('#') {
                dec.parse().ok()
            } else {
                None
            };
            return code
                .and_then(char::from_u32)
                .map(String::from)
                .ok_or_else(|| malformed(line, format!("unknown entity &{name};")));
        }
    };
    Ok(c.to_string())
}

/// Parses `text` into its root element.
pub fn parse(text: &str) -> Result<Element, XmlError> {
    parse_with(text, None)
}

/// Parses `text`, keeping elements of namespace `opaque` without their
/// content (no children, no text; their spans as usual): for callers that
/// only cut such an element out or copy its text, so that a large policy
/// is not built into a tree only to be thrown away. Their content is still
/// read to its end tag, so the document stays checked for nesting.
pub fn parse_opaque(text: &str, opaque: &str) -> Result<Element, XmlError> {
    parse_with(text, Some(opaque))
}

fn parse_with(text: &str, opaque: Option<&str>) -> Result<Element, XmlError> {
    if text.len() > MAX_XML_BYTES {
        return Err(XmlError::TooLarge {
            size: text.len(),
            max: MAX_XML_BYTES,
        });
    }
    // quick-xml skips a byte-order mark without counting it in its
    // positions; skip it here so spans index `text` itself.
    let base = if text.starts_with('\u{feff}') { 3 } else { 0 };
    // It would skip a second one too, and the spans would be off by it; a
    // mark anywhere but the very start is not XML anyway.
    if text[base..].starts_with('\u{feff}') {
        return Err(malformed(
            1,
            "a byte-order mark after the start of the document",
        ));
    }
    let mut reader = NsReader::from_str(&text[base..]);
    reader.config_mut().check_end_names = true;
    let pos = |r: &NsReader<&[u8]>| base + r.buffer_position() as usize;
    let mut lines = Lines {
        text: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let start = pos(&reader);
        let line = lines.at(start);
        let event = reader.read_event().map_err(|e| {
            let line = lines.at(base + reader.error_position() as usize);
            malformed(line, e)
        })?;
        // Whitespace before '<' belongs to the previous text event, so the
        // tag's own line is where the non-blank input starts.
        let tag_line = line;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(XmlError::TooManyElements { line: tag_line });
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(XmlError::TooDeep { line: tag_line });
                }
                if root.is_some() {
                    return Err(malformed(tag_line, "content after the root element"));
                }
                let mut el = element(&reader, e, tag_line)?;
                el.span = start..pos(&reader);
                el.content_end = el.span.end;
                let open = matches!(event, Event::Start(_));
                if open && opaque.is_some() && el.ns.as_deref() == opaque {
                    let content = reader.read_to_end(e.name()).map_err(|err| {
                        let line = lines.at(base + reader.error_position() as usize);
                        malformed(line, err)
                    })?;
                    el.content_end = base + content.end as usize;
                    el.span.end = pos(&reader);
                    attach(&mut stack, &mut root, el);
                } else if open {
                    stack.push(el);
                } else {
                    attach(&mut stack, &mut root, el);
                }
            }
            Event::End(_) => {
                if let Some(mut el) = stack.pop() {
                    el.content_end = start;
                    el.span.end = pos(&reader);
                    attach(&mut stack, &mut root, el);
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t.xml10_content());
                } else if !t.trim().is_empty() {
                    return Err(malformed(tag_line, "text outside the root element"));
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&t);
                }
            }
            Event::GeneralRef(r) => {
                let name = r.to_string();
                let s = resolve_ref(&name, tag_line)?;
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&s);
                }
            }
            // A DOCTYPE is accepted and ignored: entities it declares are
            // never expanded (a reference to one is refused above), so no
            // entity expansion can blow up the input.
            Event::DocType(_) | Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if let Some(open) = stack.last() {
        return Err(malformed(
            lines.at(text.len()),
            format!("<{}> (line {}) is never closed", open.qname, open.line),
        ));
    }
    root.ok_or(XmlError::Empty)
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_lines_and_entities() {
        let xml = "<domain>\n  <name>a&amp;b&#x41;</name>\n  <metadata>\n    <x:p xmlns:x=\"urn:x\" x:k=\"v\" k=\"w\"/>\n  </metadata>\n</domain>";
        let root = parse(xml).unwrap();
        assert_eq!(root.name, "domain");
        assert_eq!(root.child("name").unwrap().text, "a&bA");
        assert_eq!(root.child("name").unwrap().line, 2);
        let p = &root.child("metadata").unwrap().children[0];
        assert_eq!(p.ns.as_deref(), Some("urn:x"));
        assert_eq!(p.qname, "x:p");
        assert_eq!(p.line, 4);
        assert_eq!(p.attr("k"), Some("w"));
        assert_eq!(p.attrs.len(), 2);
        assert_eq!(
            &xml[p.span.clone()],
            "<x:p xmlns:x=\"urn:x\" x:k=\"v\" k=\"w\"/>"
        );
        let meta = root.child("metadata").unwrap();
        assert!(xml[meta.span.clone()].starts_with("<metadata>"));
        assert!(xml[meta.content_end..].starts_with("</metadata>"));
        assert!(xml[meta.span.clone()].ends_with("</metadata>"));
    }

    #[test]
    fn opaque_elements_keep_their_spans_but_not_their_content() {
        let xml = "\u{feff}<domain>\n <metadata>\n  <h:policy xmlns:h=\"urn:h\">\n   <h:policy><h:x/></h:policy>\n   <h:rule a=\"1\">t</h:rule>\n  </h:policy>\n </metadata>\n <devices><interface/></devices>\n</domain>";
        let full = parse(xml).unwrap();
        let root = parse_opaque(xml, "urn:h").unwrap();
        let (p, q) = (
            &root.child("metadata").unwrap().children[0],
            &full.child("metadata").unwrap().children[0],
        );
        assert!(p.children.is_empty() && p.text.is_empty());
        assert_eq!(q.children.len(), 2);
        // The same spans and lines as a full parse, inner element of the
        // same name included, and what follows is parsed as before.
        assert_eq!(
            (&p.span, p.content_end, p.line),
            (&q.span, q.content_end, 3)
        );
        assert!(xml[p.content_end..].starts_with("</h:policy>\n </metadata>"));
        assert_eq!(root.child("devices"), full.child("devices"));
        assert_eq!(root.child("devices").unwrap().line, 8);
        // Content that does not nest is still refused, with its line.
        let bad = "<domain><metadata>\n<h:policy xmlns:h=\"urn:h\">\n<h:a></h:b></h:policy></metadata></domain>";
        let err = parse_opaque(bad, "urn:h").unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn a_second_byte_order_mark_is_refused() {
        let xml = "\u{feff}\u{feff}<domain><metadata/></domain>";
        let err = parse(xml).unwrap_err().to_string();
        assert!(err.contains("byte-order mark"), "{err}");
    }

    #[test]
    fn spans_index_the_text_after_a_byte_order_mark() {
        let xml = "\u{feff}<domain>\n<metadata><m/></metadata></domain>";
        let root = parse(xml).unwrap();
        let meta = root.child("metadata").unwrap();
        assert_eq!(meta.line, 2);
        assert_eq!(&xml[meta.span.clone()], "<metadata><m/></metadata>");
        assert!(xml[meta.content_end..].starts_with("</metadata>"));
    }

    #[test]
    fn limits_and_malformed_input_are_errors() {
        assert!(matches!(
            parse(&"x".repeat(MAX_XML_BYTES + 1)),
            Err(XmlError::TooLarge { .. })
        ));
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(matches!(parse(&deep), Err(XmlError::TooDeep { .. })));
        assert!(matches!(
            parse("<a>\n<b></a>"),
            Err(XmlError::Malformed { line: 2, .. })
        ));
        assert!(matches!(parse("<a>"), Err(XmlError::Malformed { .. })));
        let bomb = "<!DOCTYPE a [<!ENTITY x \"y\"><!ENTITY y \"&x;&x;\">]><a>&y;</a>";
        assert!(
            matches!(parse(bomb), Err(XmlError::Malformed { .. })),
            "entities are never expanded"
        );
        assert_eq!(parse("<!DOCTYPE domain><domain/>").unwrap().name, "domain");
        assert!(matches!(
            parse("<a>&x;</a>"),
            Err(XmlError::Malformed { .. })
        ));
        assert!(matches!(
            parse("<p:a/>"),
            Err(XmlError::UnknownPrefix { .. })
        ));
        assert!(matches!(parse(""), Err(XmlError::Empty)));
        assert!(matches!(parse("<a/><b/>"), Err(XmlError::Malformed { .. })));
    }
}
