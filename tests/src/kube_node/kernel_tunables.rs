//! The kubelet sets six machine-wide kernel settings when it starts (overcommit, panic on
//! oops, reboot 10 s after a panic, key quotas) and offers no way to leave them alone other
//! than refusing to start when they differ. A test node must not change the machine it runs
//! on, so the values are saved before a kubelet starts and written back once it has set them
//! (it does so once, when its container manager starts). Nodes of one test process start one
//! at a time around this; the lock is process-wide, not machine-wide.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use tokio::sync::{Mutex, MutexGuard};

/// The settings the kubelet's container manager writes, as paths under /proc/sys, and the
/// values it writes (pkg/kubelet/cm's setupKernelTunables).
const TUNABLES: [(&str, &str); 6] = [
    ("vm/overcommit_memory", "1"),
    ("vm/panic_on_oom", "0"),
    ("kernel/panic", "10"),
    ("kernel/panic_on_oops", "1"),
    ("kernel/keys/root_maxkeys", "1000000"),
    ("kernel/keys/root_maxbytes", "25000000"),
];

/// How long after the node turned Ready the kubelet may still be writing them.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

static STARTING: Mutex<()> = Mutex::const_new(());

/// The values from before a kubelet started; written back on drop, also when the start
/// failed.
pub(super) struct SavedKernelTunables {
    values: Vec<(PathBuf, String)>,
    _one_start_at_a_time: MutexGuard<'static, ()>,
}

impl SavedKernelTunables {
    /// Waits for other nodes of this process to finish starting, then reads the values.
    pub(super) async fn save() -> Self {
        let guard = STARTING.lock().await;
        let values = TUNABLES
            .iter()
            .map(|(tunable, _)| PathBuf::from("/proc/sys").join(tunable))
            .filter_map(|path| {
                let value = std::fs::read_to_string(&path).ok()?;
                Some((path, value.trim().to_string()))
            })
            .collect();
        Self { values, _one_start_at_a_time: guard }
    }

    /// Waits (bounded) until the kubelet has written all its values, then puts the saved ones
    /// back.
    pub(super) async fn restore_once_written(self) {
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        while Instant::now() < deadline && !all_written() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(self);
    }
}

fn all_written() -> bool {
    TUNABLES.iter().all(|(tunable, value)| {
        std::fs::read_to_string(PathBuf::from("/proc/sys").join(tunable))
            .is_ok_and(|current| current.trim() == *value)
    })
}

impl Drop for SavedKernelTunables {
    fn drop(&mut self) {
        for (path, value) in &self.values {
            if std::fs::read_to_string(path).is_ok_and(|current| current.trim() != value) {
                let _ = std::fs::write(path, value);
            }
        }
    }
}
