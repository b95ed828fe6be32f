//! Kernel matrix: the real daemon on Debian's own kernels under qemu (TCG).
//!
//! Default (CI): the 5.10 guest, the floor. `ACCEL_KERNEL_MATRIX=1`: 5.10,
//! 6.1, 6.12 and this machine's kernel, and the table in
//! tests/kernels/README.md is regenerated. Each guest runs
//! tests/kernels/guest-init.sh: the daemon's probes and self-test,
//! byte-checked loopback traffic in a child cgroup, an unload, and the gate's
//! refusal path (`--kernel-release 5.4.0`).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use accel_test_harness::{TestEnv, Value, counter_of, daemon_bin, parse_load_report, require_root};

static LOADGEN: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| accel_test_harness::loadgen_bin().display().to_string());
static DRIVER: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| accel_test_harness::integrity_bin().display().to_string());
const GUEST_BYTES: u64 = 10 * (1 + 100 + 1500 + 65536 + 1048576);

struct Row {
    kernel: String,
    btf: bool,
    checks: Vec<(String, bool)>,
    accelerated: bool,
    redirected: u64,
    integrity: String,
    loopback_paired: u64,
    refused_netns: u64,
    gate_refusal: bool,
    unload_ok: bool,
    /// Peak TCP memory (KiB) of a slow-reader stream: plain, accelerated,
    /// and how often the sender fell back to TCP.
    flow: Option<(u64, u64, u64)>,
    /// The default mode (`auto`): application sockets that left the
    /// sockhash for being blocking, senders to applications that used TCP
    /// by policy, bytes redirected (the applications' own sends), and the
    /// guard runs' errors (none: byte-exact, no EAGAIN).
    guard: Option<Guard>,
    /// Short TCP phases: a non-blocking writer's TCP_NOTSENT_LOWAT at the
    /// end, the kernel's refusals, flow control's switches to TCP, and the
    /// stream's errors.
    phases: Option<Phases>,
    gate_note: &'static str,
    seconds: f64,
}

struct Phases {
    lowat: i64,
    refused: u64,
    to_tcp: u64,
    errors: Vec<String>,
}

struct Guard {
    left_blocking: u64,
    receives_by_tcp: u64,
    redirected: u64,
    errors: Vec<String>,
}

fn section<'a>(out: &'a str, name: &str) -> &'a str {
    let begin = format!("@@BEGIN {name}\n");
    let end = format!("@@END {name}");
    out.split_once(&begin)
        .and_then(|(_, rest)| rest.split_once(&end))
        .map(|(s, _)| s)
        .unwrap_or_else(|| panic!("guest output lacks section {name}:\n{out}"))
}

fn json_in(s: &str) -> Value {
    let start = s.find('{').unwrap_or_else(|| panic!("no JSON in {s}"));
    serde_json::from_str(&s[start..]).unwrap_or_else(|e| panic!("bad JSON ({e}) in {s}"))
}

fn checks_of(status: &Value) -> Vec<(String, bool)> {
    status["daemon"]["checks"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap_or("").to_string(),
                        c["ok"] == true,
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn boot(package: &str, work: &Path) -> Row {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels");
    let out = Command::new(here.join("build-guest.sh"))
        .arg(package)
        .arg(work)
        .arg(daemon_bin())
        .arg(LOADGEN.as_str())
        .arg(DRIVER.as_str())
        .output()
        .expect("FAILING LOUDLY: cannot run tests/kernels/build-guest.sh");
    assert!(
        out.status.success(),
        "building the {package} guest failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |k: &str| {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{k}=")).map(PathBuf::from))
            .unwrap_or_else(|| panic!("build-guest.sh printed no {k}: {line}"))
    };
    let (kernel, initrd) = (field("KERNEL"), field("INITRD"));
    let started = Instant::now();
    let qemu = Command::new("timeout")
        .args([
            "900",
            "qemu-system-x86_64",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "1024",
        ])
        .args(["-smp", "1", "-nographic", "-no-reboot", "-kernel"])
        .arg(&kernel)
        .arg("-initrd")
        .arg(&initrd)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .output()
        .expect("FAILING LOUDLY: qemu-system-x86_64 is needed (apt-get install qemu-system-x86)");
    let console = String::from_utf8_lossy(&qemu.stdout).replace('\r', "");
    assert!(
        console.contains("@@DONE"),
        "{package}: the guest did not finish:\n{console}"
    );
    let kernel_release = console
        .lines()
        .find_map(|l| l.split_once("@@KERNEL ").map(|(_, k)| k.trim()))
        .unwrap_or("?")
        .to_string();
    let status = json_in(section(&console, "status"));
    let after = json_in(section(&console, "status-after"));
    let gate = json_in(section(&console, "gate"));
    let flow_peak = |marker: &str| -> u64 {
        let line = console
            .lines()
            .find_map(|l| l.split_once(marker).map(|(_, v)| v.trim()));
        let v: Vec<u64> = line
            .unwrap_or("")
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        assert_eq!(
            v.first(),
            Some(&0),
            "{package}: {marker} stream failed:\n{console}"
        );
        v.get(1).copied().unwrap_or(0) * 4
    };
    let flow_status = json_in(section(&console, "status-flow"));
    let phases_status = json_in(section(&console, "status-phases"));
    let phases_report: Value = section(&console, "phases")
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_default();
    let pair = &phases_report["pairs"]["Nonblock->Read"];
    let mut phase_errors: Vec<String> = pair["errors"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e.to_string())
        .collect();
    if phases_report["errors"] != 0 || pair["bytes_received"] != 16 << 20 {
        phase_errors.push(format!("stream report: {phases_report}"));
    }
    let phases = Phases {
        lowat: pair["notsent_lowat"][0].as_i64().unwrap_or(-1),
        refused: counter_of(&phases_status, "tcp_phase_options_refused"),
        to_tcp: counter_of(&phases_status, "flow_reader_behind_to_tcp")
            - counter_of(&flow_status, "flow_reader_behind_to_tcp"),
        errors: phase_errors,
    };
    let (g0, g1) = (
        json_in(section(&console, "status-guard-before")),
        json_in(section(&console, "status-guard")),
    );
    let grew = |c: &str| counter_of(&g1, c) - counter_of(&g0, c);
    let guard_reports: Vec<Value> = section(&console, "guard")
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let mut guard_errors: Vec<String> = guard_reports
        .iter()
        .flat_map(|r| r["errors"].as_array().cloned().unwrap_or_default())
        .map(|e| e.to_string())
        .collect();
    if guard_reports.len() != 3 {
        guard_errors.push(format!("{} of 3 guard runs reported", guard_reports.len()));
    }
    let guard = Guard {
        left_blocking: grew("app_blocking_seen_later"),
        receives_by_tcp: grew("app_receives_by_tcp"),
        redirected: grew("redirect_bytes"),
        errors: guard_errors,
    };
    let load: accel_test_harness::LoadReport = serde_json::from_str(
        section(&console, "loadgen")
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or("{}"),
    )
    .unwrap_or_else(|e| panic!("{package}: loadgen report ({e}):\n{console}"));
    let accelerated = status["daemon"]["accelerated"] == true;
    let redirected = if accelerated {
        counter_of(&after, "redirect_bytes") - counter_of(&status, "redirect_bytes")
    } else {
        0
    };
    Row {
        kernel: kernel_release,
        btf: console.contains("@@BTF yes"),
        checks: checks_of(&status),
        accelerated,
        redirected,
        integrity: if load.errors.is_empty() && load.bytes_each_way == GUEST_BYTES {
            format!("{} B each way, byte-exact", load.bytes_each_way)
        } else {
            format!("FAILED: {:?}", load.errors)
        },
        loopback_paired: if accelerated {
            counter_of(&after, "passive_paired")
        } else {
            0
        },
        refused_netns: if accelerated {
            counter_of(&after, "refused_netns_mismatch")
        } else {
            0
        },
        gate_refusal: gate["daemon"]["accelerated"] == false
            && gate["daemon"]["reason"]
                .as_str()
                .unwrap_or("")
                .contains("5.10"),
        unload_ok: console.contains("@@UNLOAD_RC 0"),
        flow: Some((
            flow_peak("@@FLOW_PLAIN"),
            flow_peak("@@FLOW_ACCEL"),
            counter_of(&flow_status, "flow_reader_behind_to_tcp"),
        )),
        guard: Some(guard),
        phases: Some(phases),
        gate_note: "unaccelerated, ready, says why",
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// The host row, measured natively (this machine has no kernel image to boot).
fn host_row() -> Row {
    let env = TestEnv::new("kmatrix-host");
    let started = Instant::now();
    let _daemon = env.start_daemon(&[]);
    let status = env.status_json();
    let mut cmd = Command::new(LOADGEN.as_str());
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{}", accel_test_harness::free_port()))
        .args(["--conns", "10", "--sizes", "1,100,1500,65536,1048576"])
        .stdin(Stdio::null());
    let _procs = env.in_cgroup(&mut cmd);
    let out = cmd.output().expect("loadgen");
    let load = parse_load_report(&out);
    let after = env.status_json();
    let unload = env.unload();
    Row {
        kernel: status["daemon"]["kernel_release"]
            .as_str()
            .unwrap_or("?")
            .to_string(),
        btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
        checks: checks_of(&status),
        accelerated: status["daemon"]["accelerated"] == true,
        redirected: counter_of(&after, "redirect_bytes") - counter_of(&status, "redirect_bytes"),
        integrity: if load.errors.is_empty() && load.bytes_each_way == GUEST_BYTES {
            format!("{} B each way, byte-exact", load.bytes_each_way)
        } else {
            format!("FAILED: {:?}", load.errors)
        },
        loopback_paired: counter_of(&after, "passive_paired"),
        refused_netns: counter_of(&after, "refused_netns_mismatch"),
        gate_refusal: true,
        unload_ok: unload.status.success(),
        flow: None,
        guard: None,
        phases: None,
        gate_note: "see tests/daemon.rs",
        seconds: started.elapsed().as_secs_f64(),
    }
}

fn has(row: &Row, needle: &str) -> &'static str {
    match row.checks.iter().find(|(n, _)| n.contains(needle)) {
        Some((_, true)) => "yes",
        Some((_, false)) => "no",
        None => "-",
    }
}

fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| kernel | BTF | hdr options | sk_storage in sk_msg | netns cookie (sock_ops) | netns cookie (sk_msg) | FIONREAD counts TCP bytes (I-4) | flow control | accelerated | redirected | integrity | loopback pairs | netns refusals | slow reader: peak TCP memory plain / accelerated (fallbacks) | default mode: blocking apps left / sent to apps by TCP / redirected | short TCP phases: unsent mark / refusals (switches to TCP) | gate refusal (`--kernel-release 5.4.0`) | unload | time |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        t += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} B | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} s |\n",
            r.kernel,
            if r.btf { "yes" } else { "no" },
            has(r, "header options"),
            has(r, "sk_msg: socket storage"),
            has(r, "sock_ops: bpf_get_netns_cookie"),
            has(r, "sk_msg: bpf_get_netns_cookie"),
            has(r, "FIONREAD counts TCP bytes"),
            has(r, "flow control"),
            if r.accelerated { "yes" } else { "no" },
            r.redirected,
            r.integrity,
            r.loopback_paired,
            r.refused_netns,
            match r.flow {
                Some((plain, accel, n)) => format!("{plain} / {accel} KiB ({n})"),
                None => "see tests/flow_control.rs".to_string(),
            },
            match &r.guard {
                Some(g) if g.errors.is_empty() => format!(
                    "{} / {} / {} B, 0 EAGAIN, byte-exact",
                    g.left_blocking, g.receives_by_tcp, g.redirected
                ),
                Some(g) => format!("FAILED: {}", g.errors.join("; ")),
                None => "see tests/transparency.rs".to_string(),
            },
            match &r.phases {
                Some(p) if p.errors.is_empty() =>
                    format!("{} / {} ({}), byte-exact", p.lowat, p.refused, p.to_tcp),
                Some(p) => format!("FAILED: {}", p.errors.join("; ")),
                None => "see tests/stream_leave.rs".to_string(),
            },
            if r.gate_refusal {
                r.gate_note
            } else {
                "FAILED"
            },
            if r.unload_ok { "clean" } else { "FAILED" },
            r.seconds
        );
    }
    t
}

#[test]
fn the_daemon_runs_on_debians_kernels() {
    require_root();
    let matrix = std::env::var_os("ACCEL_KERNEL_MATRIX").is_some();
    let mut kernels = vec!["linux-image-5.10.0-32-cloud-amd64-unsigned"];
    if matrix {
        kernels.push("linux-image-6.1.0-56-cloud-amd64-unsigned");
        // Debian 13 (trixie)'s kernel; trixie-security carries the same ABI.
        kernels.push("linux-image-6.12.117+deb13-cloud-amd64-unsigned");
    }
    let work = std::env::temp_dir().join(format!("accel-kernels-{}", std::process::id()));
    let mut rows: Vec<Row> = kernels.iter().map(|k| boot(k, &work)).collect();
    if matrix {
        rows.push(host_row());
    }
    let _ = std::fs::remove_dir_all(&work);
    let t = table(&rows);
    eprintln!("{t}");
    for r in &rows {
        assert!(
            r.accelerated,
            "{}: the datapath must run on this kernel\n{t}",
            r.kernel
        );
        assert!(
            r.redirected >= 2 * GUEST_BYTES,
            "{}: traffic not redirected\n{t}",
            r.kernel
        );
        assert!(
            r.integrity.ends_with("byte-exact"),
            "{}: {}",
            r.kernel,
            r.integrity
        );
        assert_eq!(r.refused_netns, 0, "{}: loopback pairs refused", r.kernel);
        assert!(
            r.loopback_paired >= 10,
            "{}: loopback pairs not paired",
            r.kernel
        );
        assert!(r.gate_refusal && r.unload_ok, "{}\n{t}", r.kernel);
        if let Some(g) = &r.guard {
            assert!(
                g.errors.is_empty() && g.left_blocking >= 20 && g.receives_by_tcp >= 10,
                "{}: the default mode's guard\n{t}",
                r.kernel
            );
            assert!(
                g.redirected > 0,
                "{}: default mode redirected nothing\n{t}",
                r.kernel
            );
        }
        if let Some(p) = &r.phases {
            // Either outcome is correct: the mark, or a counted refusal
            // (the old, long phases). The table says which.
            assert!(
                p.errors.is_empty()
                    && p.to_tcp > 0
                    && (p.lowat == i64::from(accel_bpf::abi::PHASE_NOTSENT_LOWAT) || p.refused > 0),
                "{}: short TCP phases\n{t}",
                r.kernel
            );
        }
        if let Some((plain, accel, fallbacks)) = r.flow {
            assert!(
                fallbacks > 0,
                "{}: flow control never engaged\n{t}",
                r.kernel
            );
            assert!(
                accel <= (4 * plain).max(16 * 1024),
                "{}: slow reader queued {accel} KiB (plain {plain} KiB)\n{t}",
                r.kernel
            );
        }
    }
    if matrix {
        let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/README.md");
        let text = std::fs::read_to_string(&readme).unwrap_or_default();
        let head = text
            .split("<!-- matrix -->")
            .next()
            .unwrap_or("")
            .to_string();
        std::fs::write(&readme, format!("{head}<!-- matrix -->\n{t}"))
            .expect("write tests/kernels/README.md");
    }
}
