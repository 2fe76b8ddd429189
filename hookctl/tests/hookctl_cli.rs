//! hookctl as an operator runs it: explain needs no daemon; commands that need
//! hookd fail with exit status 3 and a clear message when it is absent.

use std::io::Write;
use std::process::{Command, Stdio};

fn hookctl(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hookctl"))
        .args(args)
        // A bus address where nothing listens: hookd is "down".
        .env(
            "DBUS_SYSTEM_BUS_ADDRESS",
            "unix:path=/nonexistent/hookd-test-bus",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let o = child.wait_with_output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn fixture(name: &str) -> String {
    format!(
        "{}/../model/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn explain_a_file_and_stdin() {
    let (code, out, _) = hookctl(&["explain", &fixture("bridge-policy-multi.xml")], None);
    assert_eq!(code, 0);
    assert!(out.contains("anti-spoofing"), "{out}");
    let xml = std::fs::read_to_string(fixture("ethernet-unmanaged.xml")).unwrap();
    let (code, out, _) = hookctl(&["explain", "-", "--json"], Some(&xml));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["managed"], false);
    assert_eq!(v["nics"][0]["mode"]["mode"], "counters-only");
}

#[test]
fn explain_reports_the_error_line_and_fails() {
    let (code, out, err) = hookctl(&["explain", &fixture("bad-port.xml")], None);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(
        err.contains("line 8: <hookd:rule> attribute 'ports': port 70000"),
        "{err}"
    );
    let (code, _, err) = hookctl(&["explain", "/nonexistent.xml"], None);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent.xml"), "{err}");
}

#[test]
fn daemon_commands_say_hookd_is_unreachable() {
    for args in [
        &["domains"][..],
        &["show", "vm1"],
        &["policy", "get", "vm1"],
        &["policy", "set", "vm1", "-"],
        &["policy", "edit", "vm1"],
    ] {
        let (code, _, err) = hookctl(args, None);
        assert_eq!(code, 3, "{args:?}: {err}");
        assert!(err.contains("cannot reach hookd"), "{err}");
    }
}

#[test]
fn policy_subcommands_are_documented_in_help() {
    let (code, out, _) = hookctl(&["policy", "--help"], None);
    assert_eq!(code, 0);
    for sub in ["validate", "get", "set", "remove", "edit"] {
        assert!(out.contains(sub), "{sub} missing from:\n{out}");
    }
    let (code, out, _) = hookctl(&["policy", "set", "--help"], None);
    assert_eq!(code, 0);
    assert!(out.contains("--no-persist"), "{out}");
}
