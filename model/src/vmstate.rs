//! QEMU's `dbus-vmstate` object, which carries hookd's firewall state in a
//! VM's migration stream (docs/migration.md). Both QEMUs need it: the
//! source gets it from hookd over QMP once the VM runs; the destination
//! from the libvirt `migrate` hook, which adds it to the incoming domain
//! XML as a QEMU command-line argument. Pure.

/// The object's QOM id, also how hookd recognises one it added.
pub const OBJECT_ID: &str = "hookd-vmstate";
/// libvirt's namespace for QEMU command-line passthrough.
pub const QEMU_NS: &str = "http://libvirt.org/schemas/domain/qemu/1.0";
/// The system bus, where hookd's helpers are, as QEMU must address it.
pub const SYSTEM_BUS: &str = "unix:path=/run/dbus/system_bus_socket";

/// The object's properties as QMP's `object-add` and `-object` (JSON
/// form) take them. `bus` and `id_list` are hookd's own strings; they must
/// hold nothing that JSON or an XML attribute would need escaped.
pub fn object_json(bus: &str, id_list: &str) -> Result<String, String> {
    for (what, v) in [("bus address", bus), ("id-list", id_list)] {
        if v.chars()
            .any(|c| matches!(c, '"' | '\\' | '\'' | '<' | '>' | '&') || c.is_control())
        {
            return Err(format!(
                "dbus-vmstate {what} {v:?} has characters it may not hold"
            ));
        }
    }
    Ok(format!(
        r#"{{"qom-type":"dbus-vmstate","id":"{OBJECT_ID}","addr":"{bus}","id-list":"{id_list}"}}"#
    ))
}

/// The QMP command that adds the object to a running QEMU.
pub fn object_add_command(bus: &str, id_list: &str) -> Result<String, String> {
    Ok(format!(
        r#"{{"execute":"object-add","arguments":{}}}"#,
        object_json(bus, id_list)?
    ))
}

/// Does the domain XML already give QEMU hookd's object (a VM that came
/// here by migration carries it in its XML from then on)?
/// libvirt writes the XML back in its own form (prefix `qemu:`, quotes
/// as `&quot;`), so the arguments are read as XML, not searched as text.
pub fn has_object(xml: &str) -> bool {
    let json_id = format!(r#""id":"{OBJECT_ID}""#);
    let kv_id = format!("id={OBJECT_ID}");
    qemu_args(xml)
        .iter()
        .any(|a| a.contains(&json_id) || a.split(',').any(|kv| kv == kv_id))
}

/// The values of the `<arg>` elements in libvirt's QEMU namespace (what
/// it passes on QEMU's command line); none when the XML does not parse.
fn qemu_args(xml: &str) -> Vec<String> {
    use quick_xml::events::Event;
    use quick_xml::name::ResolveResult;
    let mut reader = quick_xml::NsReader::from_str(xml);
    let mut args = Vec::new();
    loop {
        match reader.read_resolved_event() {
            Ok((ResolveResult::Bound(ns), Event::Empty(e) | Event::Start(e)))
                if ns.as_ref() == QEMU_NS && e.local_name().as_ref() == "arg" =>
            {
                if let Some(v) = e.try_get_attribute("value").ok().flatten()
                    && let Ok(v) = v.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                {
                    args.push(v.into_owned());
                }
            }
            Ok((_, Event::Eof)) | Err(_) => return args,
            Ok(_) => {}
        }
    }
}

/// The domain XML with hookd's object added to QEMU's command line, once:
/// XML that has it already is returned as it is. The element declares
/// libvirt's QEMU namespace itself, so the root element is left alone.
pub fn with_object(xml: &str, bus: &str, id_list: &str) -> Result<String, String> {
    if has_object(xml) {
        return Ok(xml.to_string());
    }
    let end = xml
        .rfind("</domain>")
        .ok_or("the domain XML has no </domain> end tag")?;
    let arg = format!(
        "  <hookdqemu:commandline xmlns:hookdqemu='{QEMU_NS}'>\n    \
         <hookdqemu:arg value='-object'/>\n    <hookdqemu:arg value='{}'/>\n  \
         </hookdqemu:commandline>\n",
        object_json(bus, id_list)?
    );
    let mut out = String::with_capacity(xml.len() + arg.len());
    out.push_str(&xml[..end]);
    out.push_str(&arg);
    out.push_str(&xml[end..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = "<domain type='qemu'>\n  <name>vm1</name>\n</domain>\n";

    #[test]
    fn the_object_is_added_once_and_the_xml_stays_well_formed() {
        let once = with_object(XML, SYSTEM_BUS, "hookd-0,hookd-1").unwrap();
        assert!(has_object(&once) && !has_object(XML));
        assert_eq!(with_object(&once, SYSTEM_BUS, "hookd-0").unwrap(), once);
        assert!(once.ends_with("</domain>\n"));
        // The document still parses, with the argument in libvirt's namespace.
        let args = qemu_args(&once);
        assert_eq!(args[0], "-object");
        assert_eq!(
            args[1],
            r#"{"qom-type":"dbus-vmstate","id":"hookd-vmstate","addr":"unix:path=/run/dbus/system_bus_socket","id-list":"hookd-0,hookd-1"}"#
        );
    }

    #[test]
    fn the_object_is_found_in_the_xml_libvirt_writes_back() {
        // libvirt's own form of the argument, after a migration: its
        // prefix, its quoting.
        let back = "<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>\n  \
            <name>vm1</name>\n  <qemu:commandline>\n    <qemu:arg value='-object'/>\n    \
            <qemu:arg value='{&quot;qom-type&quot;:&quot;dbus-vmstate&quot;,&quot;id&quot;:&quot;hookd-vmstate&quot;}'/>\n  \
            </qemu:commandline>\n</domain>\n";
        assert!(has_object(back));
        assert_eq!(with_object(back, SYSTEM_BUS, "hookd-0").unwrap(), back);
        // The key=value form, too; another object's id, or the id outside
        // QEMU's namespace, is not hookd's.
        let kv = back.replace(
            "{&quot;qom-type&quot;:&quot;dbus-vmstate&quot;,&quot;id&quot;:&quot;hookd-vmstate&quot;}",
            "dbus-vmstate,id=hookd-vmstate,addr=x",
        );
        assert!(has_object(&kv));
        assert!(!has_object(
            &kv.replace("id=hookd-vmstate", "id=hookd-vmstate2")
        ));
        assert!(!has_object(
            &back.replace("http://libvirt.org/schemas/domain/qemu/1.0", "urn:x")
        ));
    }

    #[test]
    fn hostile_strings_and_documents_are_refused() {
        assert!(object_json("unix:path=/x\"}", "a").is_err());
        assert!(object_json(SYSTEM_BUS, "a'/><x").is_err());
        assert!(with_object("<domain>", SYSTEM_BUS, "a").is_err());
        let cmd = object_add_command(SYSTEM_BUS, "hookd-0").unwrap();
        assert!(
            cmd.starts_with(r#"{"execute":"object-add","arguments":{"qom-type""#),
            "{cmd}"
        );
    }
}
