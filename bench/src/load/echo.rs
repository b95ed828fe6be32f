//! The echo server `load --proto tcp|connect` runs against.

use std::{
    io::{self, Write},
    net::SocketAddr,
    thread,
};

use anyhow::{Context, Result, bail};
use clap::Args;

/// A thread-per-connection echo server (`accel-bench echo-server`, and the
/// unit tests): every byte read is written back.
pub fn serve_echo(listener: std::net::TcpListener) {
    for s in listener.incoming() {
        let Ok(s) = s else { continue };
        thread::spawn(move || {
            let _ = s.set_nodelay(true);
            accel_topology::sock::echo_until_eof(s);
        });
    }
}

#[derive(Args, Debug, Clone)]
pub struct EchoServerArgs {
    /// Address to listen on (port 0: any; the bound address is printed as
    /// `LISTEN <addr>`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
}

pub fn echo_server(a: EchoServerArgs) -> Result<()> {
    let l =
        std::net::TcpListener::bind(a.listen).with_context(|| format!("binding {}", a.listen))?;
    println!("LISTEN {}", l.local_addr()?);
    io::stdout().flush()?;
    serve_echo(l);
    bail!("listener closed")
}
