//! The libvirt hook's input: its arguments and the domain XML on stdin.
//! The input is NUL-separated: up to five arguments, then stdin. Checks the
//! exit contract: the hook fails a start only for a domain that carries
//! policy, at an operation that gates the start, and never when hookd did
//! its job.
#![no_main]

use hookd_model::hook::{self, HookArgs, Outcome};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts: Vec<&str> = text.splitn(6, '\0').collect();
    let stdin = if parts.len() == 6 {
        parts.pop().unwrap_or_default()
    } else {
        ""
    };
    let argv: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
    let Ok(args) = HookArgs::from_args(&argv) else {
        assert_ne!(argv.len(), 4);
        return;
    };
    let op = args.op();
    let _ = (op.action(), op.echoes_xml(), args.to_string());
    let has_policy = hookd_model::domain::mentions_hookd_policy(stdin);
    for outcome in [
        Outcome::Done("ok".into()),
        Outcome::Refused("refused".into()),
        Outcome::Unreachable("down".into()),
    ] {
        let exit = hook::decide_exit(&args, has_policy, &outcome);
        if exit.code != 0 {
            assert!(
                has_policy && op.gates_start(),
                "blocked a start it must not"
            );
            assert!(!matches!(outcome, Outcome::Done(_)));
            assert!(exit.message.is_some(), "a refusal says why");
        }
        if has_policy && op.gates_start() && !matches!(outcome, Outcome::Done(_)) {
            assert_ne!(exit.code, 0, "a domain with policy started unprotected");
        }
    }
});
