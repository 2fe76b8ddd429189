//! Writes man pages and shell completions generated from the clap
//! definitions in `hookd::cli` and `hookctl::cli`: `hookd-gen-docs OUTDIR` creates
//! OUTDIR/man/{hookd.8,hookctl.1} and OUTDIR/completions/{hookctl.bash,
//! _hookctl,hookctl.fish}. Used by packaging; not installed.

use clap::CommandFactory;
use clap_complete::Shell;
use hookctl::cli::Hookctl;
use hookd::cli::DaemonArgs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn man(cmd: clap::Command, section: &str, dir: &Path) -> std::io::Result<()> {
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .section(section)
        .render(&mut out)?;
    std::fs::write(dir.join(format!("{name}.{section}")), out)
}

fn run(out: &Path) -> std::io::Result<()> {
    let man_dir = out.join("man");
    let comp_dir = out.join("completions");
    std::fs::create_dir_all(&man_dir)?;
    std::fs::create_dir_all(&comp_dir)?;
    man(DaemonArgs::command(), "8", &man_dir)?;
    let ctl = Hookctl::command();
    for sub in ctl.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("hookctl-{}", sub.get_name());
        man(sub.clone().name(name), "1", &man_dir)?;
    }
    man(ctl, "1", &man_dir)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Hookctl::command(), "hookctl", &comp_dir)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: hookd-gen-docs OUTDIR");
        return ExitCode::from(2);
    };
    match run(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hookd-gen-docs: {}: {e}", out.display());
            ExitCode::FAILURE
        }
    }
}
