//! Running a command in a pod's container through the API (pods/exec over
//! WebSocket, as `kubectl exec` does) and collecting its output and exit
//! status.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::Api;
use kube::api::AttachParams;
use tokio::io::AsyncReadExt;

/// How the command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// It ran and exited with this status.
    Code(i32),
    /// The kubelet or the container runtime could not run it (their message).
    NotRun(String),
    /// The stream ended without an exit status.
    Unknown,
}

/// What the command printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit: Exit,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The API server refused the exec or could not be reached; nothing ran.
    #[error(transparent)]
    Start(#[from] kube::Error),
    /// The stream broke while the command ran.
    #[error("the exec stream broke: {0}")]
    Stream(String),
    /// No exit status within the deadline.
    #[error("no exit status within {0:?}")]
    Timeout(Duration),
}

/// How long stdout and stderr may take to end once the exit status came
/// (or the stream ended without one).
const DRAIN: Duration = Duration::from_secs(2);

/// Runs `command` in `container` of pod `pod` (in `api`'s namespace), no
/// stdin, no TTY; gives up after `deadline`.
pub async fn run(
    api: &Api<Pod>,
    pod: &str,
    container: &str,
    command: &[String],
    deadline: Duration,
) -> Result<Output, ExecError> {
    let params = AttachParams::default()
        .container(container)
        .stdout(true)
        .stderr(true);
    let session = async {
        let mut proc = api.exec(pod, command.to_vec(), &params).await?;
        let (Some(mut out), Some(mut err), Some(status)) =
            (proc.stdout(), proc.stderr(), proc.take_status())
        else {
            return Err(ExecError::Stream(
                "the client returned no stdout, stderr or status".into(),
            ));
        };
        let mut status = Box::pin(status);
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        let mut exit = None;
        let ended = {
            // Concurrently: the client's pipes hold 1 KiB, so an unread
            // stream stalls the others.
            let reads = async {
                tokio::try_join!(out.read_to_end(&mut stdout), err.read_to_end(&mut stderr))
            };
            tokio::pin!(reads);
            loop {
                tokio::select! {
                    r = &mut reads => break Some(r),
                    s = &mut status, if exit.is_none() => exit = Some(s),
                    // kube 5 leaves the pipes open when the stream breaks
                    // (its task ends without shutting them): the status
                    // (None) is then the only sign.
                    () = tokio::time::sleep(DRAIN), if exit.is_some() => break None,
                }
            }
        };
        drop((out, err));
        let failure = match ended {
            Some(Ok(_)) => None,
            Some(Err(e)) => Some(e.to_string()),
            None => Some("the output did not end".to_string()),
        };
        let status = match exit {
            Some(s) => s,
            None if failure.is_none() => status.await,
            None => None,
        };
        // The client's own error says best why the stream broke.
        let joined = proc.join().await.map_err(|e| e.to_string());
        if let Some(what) = failure {
            return Err(ExecError::Stream(joined.err().unwrap_or(what)));
        }
        joined.map_err(ExecError::Stream)?;
        Ok(Output {
            stdout,
            stderr,
            exit: exit_of(status),
        })
    };
    tokio::time::timeout(deadline, session)
        .await
        .map_err(|_| ExecError::Timeout(deadline))?
}

/// The kubelet's Status on the error channel: `Success`, `NonZeroExitCode`
/// with the code as the `ExitCode` cause, or why the command did not run.
fn exit_of(status: Option<Status>) -> Exit {
    let Some(s) = status else {
        return Exit::Unknown;
    };
    if s.status.as_deref() == Some("Success") {
        return Exit::Code(0);
    }
    let code = (s.reason.as_deref() == Some("NonZeroExitCode"))
        .then(|| s.details.as_ref()?.causes.as_ref())
        .flatten()
        .and_then(|causes| {
            causes
                .iter()
                .find(|c| c.reason.as_deref() == Some("ExitCode"))
        })
        .and_then(|c| c.message.as_deref()?.trim().parse::<i32>().ok());
    match code {
        Some(code) => Exit::Code(code),
        None => Exit::NotRun(
            s.message
                .or(s.reason)
                .unwrap_or_else(|| "no reason given".into()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(v: serde_json::Value) -> Option<Status> {
        Some(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn exit_statuses() {
        assert_eq!(exit_of(None), Exit::Unknown);
        assert_eq!(
            exit_of(status(serde_json::json!({"status": "Success"}))),
            Exit::Code(0)
        );
        let failed = serde_json::json!({"status": "Failure", "reason": "NonZeroExitCode",
            "message": "command terminated with non-zero exit code",
            "details": {"causes": [{"reason": "ExitCode", "message": "3"}]}});
        assert_eq!(exit_of(status(failed)), Exit::Code(3));
        let not_run = serde_json::json!({"status": "Failure", "reason": "InternalError",
            "message": "exec: \"accel-daemon\": executable file not found in $PATH"});
        assert_eq!(
            exit_of(status(not_run)),
            Exit::NotRun("exec: \"accel-daemon\": executable file not found in $PATH".into())
        );
        let odd = serde_json::json!({"status": "Failure", "reason": "NonZeroExitCode",
            "message": "no code", "details": {"causes": [{"reason": "ExitCode", "message": "x"}]}});
        assert_eq!(exit_of(status(odd)), Exit::NotRun("no code".into()));
    }
}
