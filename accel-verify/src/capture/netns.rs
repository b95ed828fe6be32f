//! Which network namespace to capture in ([`NetnsTarget`]), opening its
//! namespace file, and shell quoting for the printed cross-check command.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{Result, VerifyError};

/// Which network namespace to capture in.
///
/// `#[non_exhaustive]` because `Pod { namespace, name }` (resolved to a pid
/// through the CRI) will be added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum NetnsTarget {
    /// The namespace of the calling process.
    Host,
    /// A namespace file, e.g. `/run/netns/NAME` or `/proc/PID/ns/net`.
    Path(PathBuf),
    /// The network namespace of a running process.
    Pid(u32),
}

impl NetnsTarget {
    /// Label used in connection keys and reports.
    pub fn label(&self) -> String {
        match self {
            NetnsTarget::Host => "host".to_string(),
            NetnsTarget::Path(p) => p.display().to_string(),
            NetnsTarget::Pid(pid) => format!("pid:{pid}"),
        }
    }

    /// The namespace file to `setns` into, if any.
    pub fn ns_path(&self) -> Option<PathBuf> {
        match self {
            NetnsTarget::Host => None,
            NetnsTarget::Path(p) => Some(p.clone()),
            NetnsTarget::Pid(pid) => Some(PathBuf::from(format!("/proc/{pid}/ns/net"))),
        }
    }

    /// Shell prefix that runs a command in this namespace (empty for host),
    /// for the printed tcpdump cross-check.
    pub fn shell_prefix(&self) -> String {
        match self {
            NetnsTarget::Host => String::new(),
            NetnsTarget::Path(p) => match (p.parent(), p.file_name()) {
                (Some(dir), Some(name)) if dir == Path::new("/run/netns") => {
                    format!("ip netns exec {} ", shell_quote(&name.to_string_lossy()))
                }
                _ => format!("nsenter --net={} ", shell_quote(&p.to_string_lossy())),
            },
            NetnsTarget::Pid(pid) => format!("nsenter -t {pid} -n "),
        }
    }

    /// Opens the namespace file on the calling thread, mapping errors to
    /// operator-facing ones. `None` for [`NetnsTarget::Host`].
    pub(super) fn open(&self) -> Result<Option<File>> {
        let Some(path) = self.ns_path() else {
            return Ok(None);
        };
        if let NetnsTarget::Pid(0) = self {
            return Err(VerifyError::BadValue {
                flag: "--pid",
                value: "0".into(),
                hint: "give the pid of a process in the target namespace",
            });
        }
        match File::open(&path) {
            Ok(f) => Ok(Some(f)),
            Err(e) => Err(match (self, e.kind()) {
                (NetnsTarget::Pid(pid), std::io::ErrorKind::NotFound) => {
                    VerifyError::NoSuchPid(*pid)
                }
                (_, std::io::ErrorKind::NotFound) => VerifyError::NetnsNotFound(path),
                _ => VerifyError::from_io("opening the network namespace file", e),
            }),
        }
    }
}

/// Quotes `s` for a POSIX shell when it contains anything unusual.
pub(crate) fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-:@%+=,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
