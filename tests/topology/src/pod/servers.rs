//! The pod's servers: the echo app (port 8080) and nginx (port 80).

use std::{
    fs,
    process::{Command, Stdio},
};

use super::Pod;
use crate::{ECHO_PORT, HTTP_FILE, HTTP_PORT, pod_bin};

impl Pod {
    /// The echo app on 0.0.0.0:8080 and [::]:8080. Returns its PID.
    pub fn start_echo(&self) -> u32 {
        self.start_echo_with(self.command(pod_bin()))
    }

    /// [`Pod::start_echo`] running as `uid`/`gid`, as most application
    /// images do (not root, not the sidecar's 1337).
    pub fn start_echo_as(&self, uid: u32, gid: u32) -> u32 {
        self.start_echo_with(self.command_as(pod_bin(), uid, gid))
    }

    fn start_echo_with(&self, mut cmd: Command) -> u32 {
        let log = self.dir.join("echo.log");
        let logf = fs::File::create(&log).expect("echo log");
        cmd.args([
            "echo",
            "--listen",
            &format!("0.0.0.0:{ECHO_PORT}"),
            "--listen",
            &format!("[::]:{ECHO_PORT}"),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(logf);
        let pid = self.spawn("echo", &mut cmd);
        let ok = self.wait_listening_quiet(ECHO_PORT, 2);
        self.assert_running("echo", &log);
        assert!(ok, "echo app of pod {} never listened", self.name);
        pid
    }

    /// nginx serving `content` at [`HTTP_FILE`] on port 80 (v4 and v6),
    /// `daemon off`, one process, its own config/pid/temp dirs. Returns its PID.
    pub fn start_nginx(&self, content: &[u8]) -> u32 {
        self.start_nginx_with(content, true)
    }

    /// [`Pod::start_nginx`] choosing `sendfile on|off` (sendfile sends
    /// through splice, not sendmsg: it matters to an sk_msg datapath).
    pub fn start_nginx_with(&self, content: &[u8], sendfile: bool) -> u32 {
        self.start_nginx_files(&[(HTTP_FILE, content)], sendfile)
    }

    /// nginx on port 80 serving each `(path, content)`. Keep-alive
    /// connections are never closed by a request count, so a load generator
    /// keeps its connections for the whole run.
    pub fn start_nginx_files(&self, files: &[(&str, &[u8])], sendfile: bool) -> u32 {
        let sendfile = if sendfile { "on" } else { "off" };
        let d = self.dir.join("nginx");
        let www = d.join("www");
        fs::create_dir_all(&www).expect("nginx dirs");
        fs::create_dir_all(d.join("tmp")).expect("nginx tmp");
        for (path, content) in files {
            fs::write(www.join(path.trim_start_matches('/')), content).expect("write file");
        }
        let dd = d.display();
        let conf = format!(
            "daemon off;
master_process off;
worker_processes 1;
pid {dd}/nginx.pid;
error_log {dd}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile {sendfile};
    keepalive_timeout 60s;
    keepalive_requests 100000000;
    default_type application/octet-stream;
    client_body_temp_path {dd}/tmp/body;
    proxy_temp_path {dd}/tmp/proxy;
    fastcgi_temp_path {dd}/tmp/fastcgi;
    uwsgi_temp_path {dd}/tmp/uwsgi;
    scgi_temp_path {dd}/tmp/scgi;
    server {{
        listen 0.0.0.0:{HTTP_PORT};
        listen [::]:{HTTP_PORT} ipv6only=on;
        root {dd}/www;
    }}
}}
"
        );
        let conf_path = d.join("nginx.conf");
        fs::write(&conf_path, conf).expect("write nginx.conf");
        let log = d.join("error.log");
        let logf = fs::File::create(d.join("stderr.log")).expect("nginx stderr");
        let mut cmd = self.command("nginx");
        cmd.arg("-p")
            .arg(&d)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logf);
        let pid = self.spawn("nginx", &mut cmd);
        let ok = self.wait_listening_quiet(HTTP_PORT, 2);
        self.assert_running("nginx", &d.join("stderr.log"));
        assert!(
            ok,
            "nginx of pod {} never listened; log:\n{}",
            self.name,
            fs::read_to_string(&log).unwrap_or_default()
        );
        pid
    }
}
