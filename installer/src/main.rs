//! `accel-installer`: see the library (`accel_installer`) and README.md.

use std::io::IsTerminal;

fn main() {
    let tty = std::io::stdout().is_terminal();
    let code = accel_installer::run(
        std::env::args_os(),
        &mut std::io::stdout(),
        &mut std::io::stderr(),
        tty,
    );
    std::process::exit(code);
}
