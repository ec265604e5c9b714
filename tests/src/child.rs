//! Child processes that cannot outlive the test: killed (with their process group) when the
//! handle drops, including during a panic's unwinding. Their output goes to a log file that a
//! failing test prints.

use std::{
    fs::File,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running child process and the file its stdout and stderr go to.
pub struct ChildProcess {
    name: String,
    child: Child,
    log_path: PathBuf,
}

impl ChildProcess {
    /// Spawns `command` in a process group of its own, writing its output to
    /// `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> anyhow::Result<Self> {
        let log_path = log_dir.join(format!("{name}.log"));
        let log = File::create(&log_path)?;
        command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).process_group(0);
        let child = command.spawn().map_err(|err| {
            anyhow::anyhow!("starting {name} ({:?}): {err}", command.get_program())
        })?;
        Ok(Self { name: name.to_string(), child, log_path })
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the output goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The output so far (for assertions and failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Fails with the process's log if it has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => {
                anyhow::bail!("{} exited with {status}; its log:\n{}", self.name, self.log())
            }
        }
    }

    /// Sends `signal` (e.g. libc SIGTERM = 15) and waits up to `timeout` for the exit status.
    pub fn signal_and_wait(
        &mut self,
        signal: i32,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        send_signal(self.child.id() as i32, signal);
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                anyhow::bail!("{} did not exit within {timeout:?} of signal {signal}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // The whole group: some daemons fork helpers.
        send_signal(-(self.child.id() as i32), SIGKILL);
        let _ = self.child.wait();
    }
}

const SIGKILL: i32 = 9;

fn send_signal(pid: i32, signal: i32) {
    // `kill` from procps avoids unsafe libc calls in the harness.
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
