//! `accel-daemon status`: the daemon's last state and the live datapath.

use std::path::Path;

use anyhow::Result;

use crate::{
    cli::StatusArgs,
    datapath::Datapath,
    report::{DatapathReport, Status},
    state::DaemonState,
};

pub fn status(args: StatusArgs) -> Result<()> {
    let daemon = DaemonState::read(&args.state_dir);
    let daemon_running = daemon.as_ref().is_some_and(|d| {
        Path::new(&format!("/proc/{}", d.pid)).exists() && d.pid != std::process::id()
    });
    let (datapath, datapath_error) = if !args.pin_dir.exists()
        && daemon_running
        && daemon.as_ref().is_some_and(|d| d.accelerated)
    {
        // The daemon still runs a datapath whose pins are gone.
        let why = daemon
            .as_ref()
            .map(|d| d.pin_problem.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| {
                "they were removed; the daemon re-pins them at its next sync".into()
            });
        (
            None,
            Some(format!(
                "the running daemon's datapath has no pins at {}: {why}",
                args.pin_dir.display()
            )),
        )
    } else if args.pin_dir.exists() {
        match Datapath::open(&args.pin_dir)
            .map_err(anyhow::Error::from)
            .and_then(|dp| DatapathReport::read(&dp))
        {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(format!("{e:#}"))),
        }
    } else {
        (None, None)
    };
    let status = Status {
        daemon_running,
        daemon,
        datapath,
        datapath_error,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        status.print_human();
    }
    Ok(())
}
