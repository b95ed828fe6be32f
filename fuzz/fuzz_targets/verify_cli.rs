//! The `verify` command line (every flag value an operator or a script can
//! pass), split on NUL bytes into argv: parsing must fail cleanly, never
//! panic, and what parses must turn into a capture configuration or a
//! clean error.
#![no_main]

use accel_verify::VerifyArgs;
use clap::Parser;
use libfuzzer_sys::fuzz_target;

#[derive(Parser, Debug)]
#[command(name = "verify", no_binary_name = false)]
struct Cli {
    #[command(flatten)]
    args: VerifyArgs,
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let argv = std::iter::once("verify").chain(text.split('\0'));
    if let Ok(cli) = Cli::try_parse_from(argv) {
        let _ = cli.args.netns_target();
        let _ = cli.args.capture_config();
    }
});
