//! The libvirt qemu hook's arguments and exit contract, shared by the hook
//! binary (libvirt-hooks/) and the daemon.
//!
//! libvirt runs `/etc/libvirt/hooks/qemu.d/50-hookd DOMAIN OPERATION
//! SUB-OPERATION EXTRA` with the domain XML on stdin.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Prepare,
    Start,
    Started,
    Stopped,
    Release,
    Migrate,
    Restore,
    Reconnect,
    Attach,
    Other,
}

impl Operation {
    pub fn parse(s: &str) -> Operation {
        match s {
            "prepare" => Self::Prepare,
            "start" => Self::Start,
            "started" => Self::Started,
            "stopped" => Self::Stopped,
            "release" => Self::Release,
            "migrate" => Self::Migrate,
            "restore" => Self::Restore,
            "reconnect" => Self::Reconnect,
            "attach" => Self::Attach,
            _ => Self::Other,
        }
    }

    /// libvirt reads the hook's stdout as the (possibly edited) domain XML
    /// for these operations: the hook passes its input through, or, for an
    /// incoming migration, the XML hookd returns.
    pub fn echoes_xml(self) -> bool {
        matches!(self, Self::Migrate | Self::Restore)
    }

    /// Operations at which a failure stops the VM from starting (or, for
    /// `migrate`, from coming here by migration: the source keeps it). A
    /// VM with hookd policy must not start unprotected, so these fail
    /// closed.
    pub fn gates_start(self) -> bool {
        matches!(
            self,
            Self::Prepare | Self::Start | Self::Started | Self::Migrate
        )
    }

    /// What hookd does for this operation.
    pub fn action(self) -> HookAction {
        match self {
            // At prepare the taps do not exist yet: validate the policy so a
            // bad one stops the start before any resource is made.
            Self::Prepare => HookAction::Validate,
            // The taps exist from `start begin` on, before the guest runs.
            // `started`, `reconnect` and `attach` re-apply idempotently.
            Self::Start | Self::Started | Self::Reconnect | Self::Attach => HookAction::Attach,
            Self::Stopped | Self::Release => HookAction::Detach,
            // `migrate begin` runs on the destination before anything is
            // made: validate, and give QEMU the object that carries the
            // firewall state (crate::vmstate).
            Self::Migrate => HookAction::Incoming,
            Self::Restore | Self::Other => HookAction::Ignore,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookAction {
    Validate,
    /// Validate an incoming migration; answer with its domain XML.
    Incoming,
    Attach,
    Detach,
    Ignore,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookArgs {
    pub domain: String,
    pub operation: String,
    pub sub_operation: String,
    pub extra: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "expected 4 arguments (DOMAIN OPERATION SUB-OPERATION EXTRA) as libvirt passes them, got {0}"
)]
pub struct HookArgsError(pub usize);

/// The longest name or word hookd takes as an argument (a domain or network
/// name, a hook's operation): far above what libvirt passes, and short
/// enough to log and to echo in an error.
pub const MAX_ARG_BYTES: usize = 4096;

/// An argument longer than [`MAX_ARG_BYTES`], refused before it is logged,
/// looked up or kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {len} bytes, more than the {MAX_ARG_BYTES}-byte limit")]
pub struct TooLong {
    pub what: &'static str,
    pub len: usize,
}

/// Refuses `value` (described as `what`) if it is longer than [`MAX_ARG_BYTES`].
pub fn check_length(what: &'static str, value: &str) -> Result<(), TooLong> {
    match value.len() {
        len if len > MAX_ARG_BYTES => Err(TooLong { what, len }),
        _ => Ok(()),
    }
}

impl HookArgs {
    /// Refuses arguments longer than any libvirt passes.
    pub fn check_lengths(&self) -> Result<(), TooLong> {
        check_length("the domain argument", &self.domain)?;
        check_length("the operation", &self.operation)?;
        check_length("the sub-operation", &self.sub_operation)?;
        check_length("the extra argument", &self.extra)
    }

    /// From the arguments after the program name.
    pub fn from_args(args: &[String]) -> Result<HookArgs, HookArgsError> {
        match args {
            [domain, operation, sub, extra] => Ok(HookArgs {
                domain: domain.clone(),
                operation: operation.clone(),
                sub_operation: sub.clone(),
                extra: extra.clone(),
            }),
            _ => Err(HookArgsError(args.len())),
        }
    }

    pub fn op(&self) -> Operation {
        Operation::parse(&self.operation)
    }
}

impl fmt::Display for HookArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.domain, self.operation, self.sub_operation, self.extra
        )
    }
}

/// What the call to hookd came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// hookd did its job.
    Done(String),
    /// hookd answered with an error (invalid policy, attach failure).
    Refused(String),
    /// hookd could not be reached, or did not answer in time.
    Unreachable(String),
}

/// Exit status and stderr line for the hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub message: Option<String>,
}

/// The exit contract of DESIGN.md: non-zero only when a VM with hookd policy
/// is being started and its policy was not applied; a VM without policy is
/// never blocked by hookd.
pub fn decide_exit(args: &HookArgs, has_policy: bool, outcome: &Outcome) -> Exit {
    let blocks = args.op().gates_start() && has_policy;
    match outcome {
        Outcome::Done(_) => Exit {
            code: 0,
            message: None,
        },
        Outcome::Refused(why) if blocks => Exit {
            code: 1,
            message: Some(format!(
                "hookd: refusing to start domain '{}' unprotected: {why}",
                args.domain
            )),
        },
        Outcome::Unreachable(why) if blocks => Exit {
            code: 1,
            message: Some(format!(
                "hookd: domain '{}' carries hookd policy but hookd is not available ({why}); \
                 start hookd (systemctl start hookd) and retry",
                args.domain
            )),
        },
        Outcome::Refused(why) | Outcome::Unreachable(why) => Exit {
            code: 0,
            message: Some(format!(
                "hookd: warning: {} {} for domain '{}': {why}",
                args.operation, args.sub_operation, args.domain
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(op: &str) -> HookArgs {
        let v: Vec<String> = ["vm1", op, "begin", "-"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        HookArgs::from_args(&v).unwrap()
    }

    #[test]
    fn argument_count_and_lengths_are_checked() {
        assert_eq!(HookArgs::from_args(&["a".into()]), Err(HookArgsError(1)));
        let mut long = args("start");
        assert_eq!(long.check_lengths(), Ok(()));
        long.extra = "x".repeat(MAX_ARG_BYTES);
        assert_eq!(long.check_lengths(), Ok(()));
        long.extra.push('x');
        let e = long.check_lengths().unwrap_err();
        assert_eq!(
            e.to_string(),
            "the extra argument is 4097 bytes, more than the 4096-byte limit"
        );
        assert!(HookArgs::from_args(&[]).is_err());
        assert_eq!(args("start").op(), Operation::Start);
        assert_eq!(args("bogus").op(), Operation::Other);
    }

    #[test]
    fn actions_per_operation() {
        assert_eq!(Operation::Prepare.action(), HookAction::Validate);
        assert_eq!(Operation::Start.action(), HookAction::Attach);
        assert_eq!(Operation::Started.action(), HookAction::Attach);
        assert_eq!(Operation::Reconnect.action(), HookAction::Attach);
        assert_eq!(Operation::Stopped.action(), HookAction::Detach);
        assert_eq!(Operation::Release.action(), HookAction::Detach);
        assert_eq!(Operation::Migrate.action(), HookAction::Incoming);
        assert!(Operation::Migrate.echoes_xml() && Operation::Restore.echoes_xml());
        assert!(!Operation::Start.echoes_xml());
    }

    #[test]
    fn exit_contract() {
        let down = Outcome::Unreachable("no socket".into());
        let refused = Outcome::Refused("line 3: bad".into());
        let done = Outcome::Done("ok".into());
        // policy + start-gating operation + failure => non-zero
        for op in ["prepare", "start", "started", "migrate"] {
            assert_eq!(decide_exit(&args(op), true, &down).code, 1, "{op}");
            assert_eq!(decide_exit(&args(op), true, &refused).code, 1, "{op}");
            assert_eq!(decide_exit(&args(op), true, &done).code, 0, "{op}");
        }
        let e = decide_exit(&args("start"), true, &refused);
        assert!(e.message.unwrap().contains("line 3: bad"));
        // no policy => never blocked, but warned
        for op in ["prepare", "start", "started", "stopped"] {
            let e = decide_exit(&args(op), false, &down);
            assert_eq!(e.code, 0);
            assert!(e.message.unwrap().contains("warning"));
        }
        // teardown never fails, even for managed VMs
        assert_eq!(decide_exit(&args("stopped"), true, &down).code, 0);
        assert_eq!(decide_exit(&args("release"), true, &refused).code, 0);
    }
}
