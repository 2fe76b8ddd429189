//! hookctl: the operator's client for hookd.

use clap::Parser;
use hookctl::cli::{Command, Hookctl, NetworkCommand, PolicyCommand};
use hookctl::output::{Failure, Outcome};
use hookctl::{domains, events, networks, policy};
use std::process::ExitCode;

async fn run(cli: Hookctl) -> Outcome {
    let json = cli.json;
    match cli.cmd {
        Command::Domains => domains::domains(json).await,
        Command::Show { domain } => domains::show(&domain, json).await,
        Command::Stats => domains::stats(json).await,
        Command::Migrations => domains::migrations(json).await,
        Command::Health => domains::health(json).await,
        Command::Events { domain } => events::recent(domain.as_deref(), json).await,
        Command::Monitor => events::monitor(json).await,
        Command::Policy(PolicyCommand::Validate { file }) => policy::validate(&file, json).await,
        Command::Network(NetworkCommand::Define { file }) => networks::define(&file, json).await,
        Command::Network(NetworkCommand::Undefine { name }) => {
            networks::undefine(&name, json).await
        }
        Command::Network(NetworkCommand::List) => networks::list(json).await,
        Command::Network(NetworkCommand::Show { name }) => networks::show(&name, json).await,
        Command::Policy(PolicyCommand::Get { domain }) => policy::get(&domain, json).await,
        Command::Policy(PolicyCommand::Set {
            domain,
            file,
            no_persist,
        }) => {
            let text = hookctl::output::read_input(&file)?;
            policy::set(&domain, &text, !no_persist, json).await
        }
        Command::Policy(PolicyCommand::Remove { domain, no_persist }) => {
            policy::set(&domain, "", !no_persist, json).await
        }
        Command::Policy(PolicyCommand::Edit { domain, no_persist }) => {
            policy::edit(&domain, !no_persist, json).await
        }
        Command::Trace {
            domain,
            mac,
            direction,
            remote,
            protocol,
            port,
            icmp_type,
            icmp_code,
            live,
        } => {
            let t = policy::TraceArgs {
                domain: &domain,
                mac: &mac,
                direction: &direction,
                remote: &remote,
                protocol: &protocol,
                port,
                icmp_type,
                icmp_code,
            };
            if live {
                policy::trace_live(t, json).await
            } else {
                policy::trace(t, json).await
            }
        }
        Command::Explain { file, networks } => policy::explain(&file, &networks, json).await,
    }
}

fn main() -> ExitCode {
    let cli = Hookctl::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hookctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(out) => {
            print!("{out}");
            if !out.ends_with('\n') {
                println!();
            }
            ExitCode::SUCCESS
        }
        Err(Failure(code, msg)) => {
            eprintln!("hookctl: {msg}");
            ExitCode::from(code)
        }
    }
}
