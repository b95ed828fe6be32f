//! `accel-daemon unload`: remove the datapath without losing data in flight.

use std::time::Duration;

use anyhow::{Result, bail};
use tracing::warn;

use crate::{
    cli::UnloadArgs,
    datapath::{self, Datapath, DatapathError},
    host,
};

pub fn unload(args: UnloadArgs) -> Result<()> {
    host::check_privileges()?;
    host::raise_memlock_limit(&host::running_kernel()?);
    if let Some(cg) = &args.cgroup {
        host::check_cgroup2_dir(cg)?;
    }
    if !args.pin_dir.exists() {
        println!(
            "nothing to unload: {} does not exist",
            args.pin_dir.display()
        );
        return Ok(());
    }
    let dp = match Datapath::open(&args.pin_dir) {
        Ok(dp) => dp,
        Err(e @ DatapathError::Foreign { .. }) => {
            warn!(error = %e, "pins are incomplete or foreign; removing what is there");
            if !datapath::retire_foreign(
                &args.pin_dir,
                Duration::from_secs(args.drain_timeout),
                args.force,
            ) {
                bail!(
                    "sockets still hold unread redirected data; run unload again later or add --force"
                );
            }
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let program_id = dp.link_program_id();
    let report = dp.unload(Duration::from_secs(args.drain_timeout), args.force)?;
    println!(
        "unloaded {}: sock_ops program {program_id} detached, {} sockets returned to plain TCP; \
         receive queues {} after {:.1}s",
        args.pin_dir.display(),
        report.sockets_released,
        if report.drain_proven {
            "proven empty"
        } else {
            "not inspectable (see the warning above), waited"
        },
        report.drained_for.as_secs_f64()
    );
    Ok(())
}
