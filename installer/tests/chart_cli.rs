//! `accel-installer render|install --chart DIR`, and the image version
//! check (`--image`, `--allow-version-mismatch`) on both sources.

use std::path::{Path, PathBuf};

use accel_fake_apiserver::{FakeApiServer, fixtures};
use serde_json::Value;

use accel_installer::manifests::{self, Options};

fn chart_dir() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/helm/sidecar-accel")
        .display()
        .to_string()
}

struct Run {
    code: i32,
    out: String,
    err: String,
}

fn run(args: &[&str]) -> Run {
    let mut argv = vec!["accel-installer"];
    argv.extend_from_slice(args);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = accel_installer::run(argv, &mut out, &mut err, false);
    Run {
        code,
        out: String::from_utf8(out).unwrap(),
        err: String::from_utf8(err).unwrap(),
    }
}

fn yaml_docs(text: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).unwrap();
    let mut docs: Vec<Value> = docs.into_iter().filter(|d| !d.is_null()).collect();
    docs.sort_by_key(manifests::describe);
    docs
}

#[test]
fn render_from_the_chart_prints_what_render_from_kustomize_does() {
    let dir = chart_dir();
    for extra in [
        vec![],
        vec!["--observability"],
        vec!["--observability", "--pod-monitor"],
    ] {
        let mut chart = vec![
            "render",
            "--chart",
            &dir,
            "--log-level",
            "debug",
            "-n",
            "mesh",
        ];
        chart.extend(&extra);
        let mut kustomize = vec!["render", "--log-level", "debug", "-n", "mesh"];
        kustomize.extend(&extra);
        let (c, k) = (run(&chart), run(&kustomize));
        assert_eq!((c.code, k.code), (0, 0), "{}{}", c.err, k.err);
        assert_eq!(yaml_docs(&c.out), yaml_docs(&k.out), "{extra:?}");
    }
    let r = run(&[
        "render",
        "--chart",
        &dir,
        "--set",
        "podAcceleration=proxy-only",
    ]);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(r.out.contains("--pod-acceleration=proxy-only"), "{}", r.out);
}

#[test]
fn render_from_the_chart_reads_values_files() {
    let file = std::env::temp_dir().join(format!("accel-chart-values-{}.yaml", std::process::id()));
    std::fs::write(
        &file,
        "podAcceleration: app-safe\nnodeSelector:\n  pool: mesh\n",
    )
    .unwrap();
    let (dir, path) = (chart_dir(), file.display().to_string());
    let r = run(&[
        "render",
        "--chart",
        &dir,
        "-f",
        &path,
        "--set",
        "nodeSelector.pool=edge",
    ]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(r.code, 0, "{}", r.err);
    let ds = yaml_docs(&r.out)
        .into_iter()
        .find(|o| o["kind"] == "DaemonSet")
        .unwrap();
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(
        pod["nodeSelector"]["pool"], "edge",
        "--set wins over --values"
    );
    assert!(
        pod["containers"][0]["args"]
            .to_string()
            .contains("--pod-acceleration=app-safe")
    );
}

#[test]
fn bad_chart_input_fails_naming_the_value() {
    let dir = chart_dir();
    let r = run(&["render", "--chart", &dir, "--set", "podAcceleration=fast"]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.err.trim(),
        r#"error: invalid values: podAcceleration: "fast" is not one of auto, app-safe, all, proxy-only"#
    );
    let r = run(&["render", "--chart", &dir, "--set", "proxyUid=istio"]);
    assert_eq!(r.code, 1);
    assert!(
        r.err.contains(r#"proxyUid: "istio" is not an integer"#),
        "{}",
        r.err
    );
    let r = run(&["render", "--chart", "/nonexistent/chart"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("/nonexistent/chart/Chart.yaml"), "{}", r.err);
    // --set and --values belong to --chart.
    let r = run(&["render", "--set", "podAcceleration=all"]);
    assert_eq!(r.code, 2, "{}", r.err);
}

#[test]
fn an_image_of_another_version_is_refused_unless_allowed() {
    let ours = env!("CARGO_PKG_VERSION");
    let dir = chart_dir();
    for source in [vec![], vec!["--chart", &dir]] {
        for image in [
            format!("example.com/accel:{ours}"),
            format!("example.com/accel:v{ours}"),
        ] {
            let mut args = vec!["render", "--image", &image];
            args.extend(&source);
            let r = run(&args);
            assert_eq!(r.code, 0, "{image}: {}", r.err);
            assert!(r.out.contains(&format!("image: {image}")), "{}", r.out);
        }
        let mut args = vec!["render", "--image", "r.example:5000/accel:9.9.9"];
        args.extend(&source);
        let r = run(&args);
        assert_eq!(r.code, 1, "{source:?}");
        assert!(
            r.err.contains("version 9.9.9") && r.err.contains(&format!("version {ours}")),
            "{}",
            r.err
        );
        assert!(r.err.contains("--allow-version-mismatch"), "{}", r.err);
        args.push("--allow-version-mismatch");
        let r = run(&args);
        assert_eq!(r.code, 0, "{}", r.err);
        assert!(
            r.out.contains("image: r.example:5000/accel:9.9.9"),
            "{}",
            r.out
        );
        // A digest alone says no version.
        let mut args = vec!["render", "--image", "example.com/accel@sha256:00ff"];
        args.extend(&source);
        let r = run(&args);
        assert_eq!(r.code, 1);
        assert!(r.err.contains("has no tag"), "{}", r.err);
    }
    // The chart's own tag is checked too.
    let r = run(&["render", "--chart", &dir, "--set", "image.tag=0.0.9"]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("version 0.0.9"), "{}", r.err);
    // install refuses before contacting any cluster.
    let r = run(&[
        "--kubeconfig",
        "/nonexistent/kubeconfig",
        "install",
        "--image",
        "example.com/accel:9.9.9",
    ]);
    assert_eq!(r.code, 1);
    assert!(r.err.contains("version 9.9.9"), "{}", r.err);
    assert!(!r.err.contains("kubeconfig"), "{}", r.err);
}

#[test]
fn install_from_the_chart_applies_the_kustomize_objects() {
    let server = FakeApiServer::start().unwrap();
    server.set_prometheus_operator(true);
    server.upsert(fixtures::node(
        "n1",
        "6.1.0-18-cloud-amd64",
        "Alibaba Cloud Linux 3",
    ));
    let kubeconfig: PathBuf =
        std::env::temp_dir().join(format!("accel-chart-kc-{}", std::process::id()));
    server.write_kubeconfig(&kubeconfig, "a").unwrap();
    let kc = kubeconfig.display().to_string();
    let dir = chart_dir();
    let r = run(&[
        "--kubeconfig",
        &kc,
        "--poll-interval",
        "50ms",
        "install",
        "--chart",
        &dir,
        "--set",
        "metrics.podMonitor.enabled=true",
    ]);
    let _ = std::fs::remove_file(&kubeconfig);
    assert_eq!(r.code, 0, "{}{}", r.out, r.err);
    let expected = manifests::render(&Options {
        monitor: manifests::Monitor::PodMonitor,
        ..Options::default()
    })
    .unwrap();
    for obj in &expected {
        let info = manifests::kind_info(
            obj["apiVersion"].as_str().unwrap(),
            obj["kind"].as_str().unwrap(),
        )
        .unwrap();
        let ns = info
            .namespaced
            .then(|| obj["metadata"]["namespace"].as_str().unwrap());
        let stored = server
            .get(
                info.api_version,
                info.kind,
                ns,
                obj["metadata"]["name"].as_str().unwrap(),
            )
            .unwrap_or_else(|| panic!("{} not applied", manifests::describe(obj)));
        for field in ["spec", "rules", "subjects", "roleRef"] {
            assert_eq!(
                stored.get(field),
                obj.get(field),
                "{} {field}",
                manifests::describe(obj)
            );
        }
        assert!(
            r.out
                .contains(&format!("applied {}", manifests::describe(obj))),
            "{}",
            r.out
        );
    }
    assert!(r.out.contains("rollout complete"), "{}", r.out);
}
