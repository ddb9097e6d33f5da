//! Running the Samba command-line tools: bounded in time, output captured, and an environment
//! we choose (so secrets reach only the tool that needs them, never an argument list).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::text::truncate;

/// Where the tools are and how long one run may take.
#[derive(Debug, Clone)]
pub struct ToolPaths {
    /// `smbstatus`: lists open files and sessions from the lock databases (needs root).
    pub smbstatus: PathBuf,
    /// `net`: MS-SRVS NetFileEnum and NetFileClose over `\pipe\srvsvc` (port 445 only).
    pub net: PathBuf,
    /// `testparm`: the effective smb.conf, includes resolved.
    pub testparm: PathBuf,
}

impl Default for ToolPaths {
    fn default() -> Self {
        Self {
            smbstatus: "smbstatus".into(),
            net: "net".into(),
            testparm: "testparm".into(),
        }
    }
}

/// What a finished tool run left behind.
#[derive(Debug)]
pub(super) struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// The exit code; `None` when a signal ended the tool.
    pub code: Option<i32>,
    pub elapsed: Duration,
}

impl Output {
    /// The first line of stderr, bounded, for messages and logs.
    pub fn stderr_excerpt(&self) -> String {
        excerpt(&self.stderr)
    }
}

/// Why a tool could not be run to completion.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The program could not be started (not installed, not executable).
    #[error("could not run {tool}: {source}")]
    Spawn {
        /// The program.
        tool: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The program ran longer than allowed and was killed.
    #[error("{tool} did not finish within {secs} s and was stopped")]
    Timeout {
        /// The program.
        tool: String,
        /// The limit.
        secs: u64,
    },
    /// The program exited unsuccessfully.
    #[error("{tool} failed ({status}){}", stderr_suffix(.stderr))]
    Failed {
        /// The program and its subcommand.
        tool: String,
        /// `exit code N` or `killed by a signal`.
        status: String,
        /// A bounded excerpt of its stderr (the tools never print credentials).
        stderr: String,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

/// The most bytes of a tool's stderr that reach a message.
const EXCERPT_BYTES: usize = 240;

/// A single-line, bounded, lossy excerpt of tool output.
pub(super) fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    truncate(&joined, EXCERPT_BYTES)
}

/// One tool invocation.
pub(super) struct Run<'a> {
    /// Name for messages (`smbstatus -L`, `net rpc file close`).
    pub label: &'a str,
    pub program: &'a std::path::Path,
    pub args: Vec<String>,
    /// Extra environment on top of the minimal one every tool gets.
    pub env: Vec<(&'static str, String)>,
    pub timeout: Duration,
}

impl Run<'_> {
    /// Runs the tool to completion. A non-zero exit is not an error here: callers decide what
    /// each code means.
    pub async fn output(self) -> Result<Output, ToolError> {
        let mut cmd = tokio::process::Command::new(self.program);
        cmd.args(&self.args)
            // Start from nothing: the service's own environment may hold its account key or
            // the RPC password, and no tool needs them unless we pass them on purpose.
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            // smbstatus prints open times in the local zone and the C locale's day and month
            // names; pin both so the parser sees one format.
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let started = Instant::now();
        let child = cmd.spawn().map_err(|source| ToolError::Spawn {
            tool: self.label.to_owned(),
            source,
        })?;
        let out = match tokio::time::timeout(self.timeout, child.wait_with_output()).await {
            Ok(Ok(out)) => out,
            Ok(Err(source)) => {
                return Err(ToolError::Spawn {
                    tool: self.label.to_owned(),
                    source,
                });
            }
            // Dropping the future drops the child, and kill_on_drop stops it.
            Err(_) => {
                return Err(ToolError::Timeout {
                    tool: self.label.to_owned(),
                    secs: self.timeout.as_secs(),
                });
            }
        };
        Ok(Output {
            stdout: out.stdout,
            stderr: out.stderr,
            code: out.status.code(),
            elapsed: started.elapsed(),
        })
    }

    /// Runs the tool and insists on exit code 0.
    pub async fn success(self) -> Result<Output, ToolError> {
        let label = self.label.to_owned();
        let out = self.output().await?;
        if out.code == Some(0) {
            Ok(out)
        } else {
            Err(ToolError::Failed {
                tool: label,
                status: status_text(out.code),
                stderr: out.stderr_excerpt(),
            })
        }
    }
}

/// `exit code N` or `killed by a signal`.
pub(super) fn status_text(code: Option<i32>) -> String {
    match code {
        Some(c) => format!("exit code {c}"),
        None => "killed by a signal".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_single_line_and_bounded() {
        assert_eq!(excerpt(b"\n a \n\n b\n"), "a | b");
        let long = "é".repeat(500);
        let cut = excerpt(long.as_bytes());
        assert!(cut.len() <= EXCERPT_BYTES + "…".len());
        assert!(cut.ends_with('…'));
    }

    #[tokio::test]
    async fn runs_with_a_clean_environment_and_reports_failures() {
        // HOME is set in any test process; the child must not inherit it.
        let out = Run {
            label: "sh",
            program: std::path::Path::new("/bin/sh"),
            args: vec!["-c".into(), "echo \"$TZ $LC_ALL ${HOME:-unset}\"".into()],
            env: vec![],
            timeout: Duration::from_secs(5),
        }
        .success()
        .await
        .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "UTC C unset");

        let err = Run {
            label: "sh -c exit 3",
            program: std::path::Path::new("/bin/sh"),
            args: vec!["-c".into(), "echo oops >&2; exit 3".into()],
            env: vec![],
            timeout: Duration::from_secs(5),
        }
        .success()
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "sh -c exit 3 failed (exit code 3): oops");

        let err = Run {
            label: "sleep",
            program: std::path::Path::new("/bin/sleep"),
            args: vec!["5".into()],
            env: vec![],
            timeout: Duration::from_millis(100),
        }
        .output()
        .await
        .unwrap_err();
        assert!(matches!(err, ToolError::Timeout { .. }), "{err}");

        let err = Run {
            label: "missing",
            program: std::path::Path::new("/nonexistent/tool"),
            args: vec![],
            env: vec![],
            timeout: Duration::from_secs(1),
        }
        .output()
        .await
        .unwrap_err();
        assert!(matches!(err, ToolError::Spawn { .. }), "{err}");
    }
}
