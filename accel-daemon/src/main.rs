//! `accel-daemon`: the node daemon of sidecar acceleration.
//!
//! `run` puts the sockmap datapath on the node (or adopts the one already
//! pinned), `status` reports it, `unload` removes it without losing data.

mod bpf_sys;
mod cli;
mod datapath;
mod drain;
mod endpoints;
mod gate;
mod held;
mod host;
mod kubernetes;
mod lend;
mod node_agent;
mod probes;
mod reconcile;
mod run;
mod selftest;
mod server;
mod state;
mod status;
mod unload;
mod verify;
mod verify_pod;

use std::process::ExitCode;

use clap::Parser;
use tracing::error;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = matches!(&cli.command, Command::Run(a) if a.log_json);
    init_logging(json);
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Status(args) => status::status(args),
        Command::Unload(args) => unload::unload(args),
        Command::Verify(args) => {
            return verify::run(
                &args.capture,
                args.pod.as_deref(),
                &args.pin_dir,
                &args.state_dir,
            );
        }
        Command::SelfTestWorker { pin_dir, as_uid } => {
            selftest::worker(&pin_dir, as_uid).map(|r| {
                println!("{}", serde_json::to_string(&r).unwrap_or_default());
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line for the operator; log pipelines get it as JSON too.
            if json {
                error!("{e:#}");
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(json: bool) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter =
        tracing_subscriber::EnvFilter::try_new(kubernetes::log_filter(rust_log.as_deref()))
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(kubernetes::log_filter(None)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
