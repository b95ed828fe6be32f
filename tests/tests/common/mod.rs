//! Helpers shared by the suites that drive the installer (its crate is a
//! dev-dependency, so they cannot live in the accel-tests library).

use std::path::Path;

/// `accel-installer` run in-process with `args` against `kubeconfig`
/// (polling every 100 ms, as the tests' fake API server answers at once).
/// Returns its exit code and its stdout and stderr together, also echoed
/// to the test's output.
pub fn run_installer(kubeconfig: &Path, args: &[&str]) -> (i32, String) {
    let kubeconfig = kubeconfig.display().to_string();
    let mut argv = vec![
        "accel-installer",
        "--kubeconfig",
        &kubeconfig,
        "--poll-interval",
        "100ms",
    ];
    argv.extend_from_slice(args);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = accel_installer::run(argv, &mut out, &mut err, false);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&err)
    );
    eprintln!("$ accel-installer {}\n{text}", args.join(" "));
    (code, text)
}
