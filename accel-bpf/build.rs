//! Compiles the BPF programs with clang. The Rust mirror of the ABI is
//! checked against the BTF of these objects (see abi/tests.rs).

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// (object name, source, extra clang flags)
const BPF_OBJECTS: &[(&str, &str, &[&str])] = &[
    ("datapath", "datapath", &[]),
    // The same datapath with flow control (CO-RE: needs kernel BTF).
    ("datapath_flow", "datapath", &["-DACCEL_FLOW_CONTROL"]),
    ("probes", "probes", &[]),
    ("drain", "drain", &[]),
    ("drain_probe", "drain_probe", &[]),
];

fn main() {
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let src = Path::new("src/bpf");
    // The whole directory: a header added later is covered without a list
    // to keep in step (cargo compares every file's mtime under it).
    println!("cargo:rerun-if-changed=src/bpf");
    println!("cargo:rerun-if-env-changed=CLANG");

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let multiarch = multiarch_include();
    for (name, source, flags) in BPF_OBJECTS {
        let input = src.join(format!("{source}.bpf.c"));
        println!("cargo:rerun-if-changed={}", input.display());
        let output = out.join(format!("{name}.bpf.o"));
        // -g: the objects carry their own BTF (map key/value types, needed
        // for socket storage maps); -O2: the verifier needs optimised code.
        let status = Command::new(&clang)
            .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
            .args(*flags)
            .arg(format!("-I{multiarch}"))
            .arg("-c")
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {clang} ({e}): install the BPF toolchain with \
                     `apt-get install clang llvm libbpf-dev linux-libc-dev`"
                )
            });
        assert!(
            status.success(),
            "clang failed on {}: is libbpf-dev installed?",
            input.display()
        );
    }
}

/// Debian keeps <asm/types.h> under the multiarch directory, which clang
/// does not search when targeting bpf.
fn multiarch_include() -> String {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".into());
    let triple = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        other => panic!("unsupported target architecture {other}"),
    };
    format!("/usr/include/{triple}")
}
