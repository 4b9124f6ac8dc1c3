//! One node process: started with its output appended to a log file,
//! signalled by name, killed when dropped.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The harnesses' own `SYNOD_*` variables: a node refuses to start on a
/// `SYNOD_*` variable that is not a config key, so they are kept out of
/// the nodes' environment (exporting `SYNOD_BIN` made every node exit),
/// as is `SYNOD_LOG`, so a developer's log filter does not change what
/// the tests read in node logs.
pub const HARNESS_ENV: &[&str] = &["SYNOD_BIN", "SYNOD_LOG"];

/// A command that starts `bin` without the harness's variables.
pub fn node_command(bin: &Path) -> Command {
    let mut cmd = Command::new(bin);
    for var in HARNESS_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// A running node process.
pub struct NodeProcess {
    child: Child,
}

impl NodeProcess {
    /// Starts `cmd` (from [`node_command`], with its arguments and
    /// variables) with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> std::io::Result<NodeProcess> {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        let child = cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).spawn().map_err(|e| {
            std::io::Error::new(e.kind(), format!("starting {}: {e}", cmd.get_program().to_string_lossy()))
        })?;
        Ok(NodeProcess { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True once the process has exited (it is reaped).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`).
    pub fn signal(&self, sig: &str) -> std::io::Result<()> {
        let status = Command::new("kill").arg(format!("-{sig}")).arg(self.pid().to_string()).status()?;
        match status.success() {
            true => Ok(()),
            false => Err(std::io::Error::other(format!("kill -{sig} {} failed: {status}", self.pid()))),
        }
    }

    /// kill -9, and reap.
    pub fn kill(mut self) {
        self.kill_now();
    }

    /// SIGTERM, then the exit status; kill -9 if it has not exited within
    /// `within`.
    pub fn stop(mut self, within: Duration) -> std::io::Result<ExitStatus> {
        self.signal("TERM")?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                self.kill_now();
                return Err(std::io::Error::other(format!("did not exit within {within:?} of SIGTERM")));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill_now(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13, defect 9: nodes inherited SYNOD_BIN and refused to start.
    #[test]
    fn nodes_do_not_inherit_the_harness_variables() {
        let cmd = node_command(Path::new("/bin/true"));
        let removed: Vec<_> = cmd.get_envs().filter(|(_, v)| v.is_none()).map(|(k, _)| k.to_owned()).collect();
        assert_eq!(removed, ["SYNOD_BIN", "SYNOD_LOG"]);
    }

    #[test]
    fn a_process_is_logged_signalled_and_stopped() {
        let dir = std::env::temp_dir().join(format!("synod-testkit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("p.log");
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; exec sleep 30"]);
        let mut p = NodeProcess::spawn(cmd, &log).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("started") {
            assert!(Instant::now() < deadline, "the output never reached the log");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!p.exited());
        let status = p.stop(Duration::from_secs(10)).unwrap();
        assert!(!status.success(), "sleep ends by the signal: {status}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
