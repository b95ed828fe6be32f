//! `pods/exec` through kube's own WebSocket client (`Api::<Pod>::exec`): output on channels 1
//! and 2, the exit Status on channel 3, and the refusals before the upgrade.

use accel_fake_apiserver::{ExecExit, ExecReply, FakeApiServer, fixtures};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams};
use kube::{Client, Error};
use serde_json::json;
use tokio::io::AsyncReadExt;

fn client(s: &FakeApiServer) -> Client {
    Client::try_from(s.kube_config()).expect("client from config")
}

struct Ran {
    stdout: String,
    stderr: String,
    status: Option<Status>,
}

async fn exec(
    s: &FakeApiServer,
    pod: &str,
    container: Option<&str>,
    cmd: &[&str],
) -> Result<Ran, Error> {
    let pods: Api<Pod> = Api::namespaced(client(s), "default");
    let mut ap = AttachParams::default().stdout(true).stderr(true);
    if let Some(c) = container {
        ap = ap.container(c);
    }
    let mut p = pods.exec(pod, cmd.to_vec(), &ap).await?;
    let (mut out, mut err) = (p.stdout().unwrap(), p.stderr().unwrap());
    let status = p.take_status().unwrap();
    let (mut o, mut e) = (String::new(), String::new());
    let (r1, r2, status) = tokio::join!(
        out.read_to_string(&mut o),
        err.read_to_string(&mut e),
        status
    );
    r1.unwrap();
    r2.unwrap();
    p.join().await.unwrap();
    Ok(Ran {
        stdout: o,
        stderr: e,
        status,
    })
}

fn api_error(r: Result<Ran, Error>) -> (u16, String) {
    match r {
        Err(Error::Api(s)) => (s.code, s.message),
        Err(other) => panic!("expected an API error, got {other:?}"),
        Ok(r) => panic!("expected an API error, got stdout {:?}", r.stdout),
    }
}

#[tokio::test]
async fn output_and_exit_status_round_trip() {
    let s = FakeApiServer::start().unwrap();
    s.upsert(fixtures::istio_pod(
        "default",
        "web-1",
        "n1",
        &["172.20.0.5"],
    ));
    // More than kube's 1 KiB pipe and the server's 4 KiB frames: reading must be concurrent.
    let big = "0123456789abcdef".repeat(1024);
    let out = big.clone();
    s.set_exec_handler(move |req| match req.command[0].as_str() {
        "ok" => ExecReply::exit(0, out.clone(), "a warning\n"),
        "fail" => ExecReply::exit(3, "partial\n", "error: it broke\n"),
        "missing" => ExecReply {
            stdout: Vec::new(),
            stderr: Vec::new(),
            exit: ExecExit::Error("exec: \"missing\": executable file not found in $PATH".into()),
        },
        _ => ExecReply {
            stdout: b"cut".to_vec(),
            stderr: Vec::new(),
            exit: ExecExit::Dropped,
        },
    });

    let r = exec(&s, "web-1", Some("istio-proxy"), &["ok", "--flag", "a b"])
        .await
        .unwrap();
    assert_eq!(r.stdout, big);
    assert_eq!(r.stderr, "a warning\n");
    assert_eq!(r.status.unwrap().status.as_deref(), Some("Success"));

    let r = exec(&s, "web-1", Some("app"), &["fail"]).await.unwrap();
    assert_eq!(
        (r.stdout.as_str(), r.stderr.as_str()),
        ("partial\n", "error: it broke\n")
    );
    let st = r.status.unwrap();
    assert_eq!(st.reason.as_deref(), Some("NonZeroExitCode"));
    let cause = &st.details.unwrap().causes.unwrap()[0];
    assert_eq!(
        (cause.reason.as_deref(), cause.message.as_deref()),
        (Some("ExitCode"), Some("3"))
    );

    let st = exec(&s, "web-1", Some("app"), &["missing"])
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(
        (st.reason.as_deref(), st.code),
        (Some("InternalError"), Some(500))
    );
    assert!(st.message.unwrap().contains("not found in $PATH"));

    let r = exec(&s, "web-1", Some("app"), &["drop"]).await.unwrap();
    assert_eq!(r.stdout, "cut");
    assert!(r.status.is_none(), "a dropped stream carries no Status");

    let log = s.exec_requests();
    assert_eq!(log.len(), 4);
    assert_eq!(
        (
            log[0].pod.as_str(),
            log[0].container.as_str(),
            log[0].command.clone()
        ),
        (
            "web-1",
            "istio-proxy",
            vec!["ok".to_string(), "--flag".into(), "a b".into()]
        )
    );
    assert_eq!(log[0].protocol, "v5.channel.k8s.io");
    assert!(log[0].stdout && log[0].stderr && !log[0].stdin && !log[0].tty);
    let counted = s.request_counts().by_path();
    assert_eq!(
        counted.get(&(
            "get".to_string(),
            "/api/v1/namespaces/default/pods/web-1/exec".to_string()
        )),
        Some(&4)
    );
}

#[tokio::test]
async fn refusals_before_the_upgrade_are_api_errors() {
    let s = FakeApiServer::start().unwrap();
    s.set_exec_handler(|_| ExecReply::exit(0, "", ""));
    s.upsert(fixtures::istio_pod(
        "default",
        "web-1",
        "n1",
        &["172.20.0.5"],
    ));
    let mut pending = fixtures::plain_pod("default", "pending", "n1", &[]);
    pending["spec"].as_object_mut().unwrap().remove("nodeName");
    pending["status"] = json!({"phase": "Pending"});
    s.upsert(pending);
    let mut done = fixtures::plain_pod("default", "done", "n1", &[]);
    done["status"]["phase"] = json!("Succeeded");
    s.upsert(done);

    let (code, msg) = api_error(exec(&s, "nope", None, &["x"]).await);
    assert_eq!((code, msg.as_str()), (404, "pods \"nope\" not found"));
    let (code, msg) = api_error(exec(&s, "web-1", None, &["x"]).await);
    assert_eq!(code, 400);
    assert!(msg.contains("choose one of: [app istio-proxy]"), "{msg}");
    let (code, msg) = api_error(exec(&s, "web-1", Some("nginx"), &["x"]).await);
    assert_eq!(
        (code, msg.as_str()),
        (400, "container nginx is not valid for pod web-1")
    );
    let (code, msg) = api_error(exec(&s, "pending", None, &["x"]).await);
    assert_eq!(
        (code, msg.as_str()),
        (400, "pod pending does not have a host assigned")
    );
    let (code, msg) = api_error(exec(&s, "done", None, &["x"]).await);
    assert_eq!(code, 400);
    assert!(msg.contains("current phase is Succeeded"), "{msg}");

    // The upgrade is authorized as get, then (Kubernetes 1.35+) also as create.
    for verb in ["get", "create"] {
        s.forbid(verb, "pods/exec");
        let (code, msg) = api_error(exec(&s, "web-1", Some("app"), &["x"]).await);
        assert_eq!(code, 403);
        let want = format!(
            "cannot {verb} resource \"pods/exec\" in API group \"\" in the namespace \"default\""
        );
        assert!(msg.contains(&want), "{msg}");
        s.allow(verb, "pods/exec");
    }
    assert!(
        s.exec_requests().is_empty(),
        "nothing refused reaches the handler"
    );
}

#[tokio::test]
async fn without_a_handler_the_exec_says_so() {
    let s = FakeApiServer::start().unwrap();
    s.upsert(fixtures::plain_pod(
        "default",
        "web-1",
        "n1",
        &["172.20.0.5"],
    ));
    let st = exec(&s, "web-1", None, &["x"])
        .await
        .unwrap()
        .status
        .unwrap();
    assert!(st.message.unwrap().contains("set_exec_handler"));
}
