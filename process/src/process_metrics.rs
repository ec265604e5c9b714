//! The standard `process_*` metrics every Prometheus client library exports (CPU, memory, file
//! descriptors, start time), read from `/proc/self` at scrape time; and a gauge that follows a
//! `Readiness`. Registered by `AdminServer::bind`, so every daemon has them.

use std::{fmt, fs};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};

use crate::Readiness;

/// Clock ticks per second in `/proc/<pid>/stat`: the kernel's USER_HZ, which is 100 on every
/// architecture Linux exposes it on (`sysconf(_SC_CLK_TCK)` would need unsafe code for a
/// constant).
const TICKS_PER_SECOND: f64 = 100.0;

/// What one scrape read; a value that could not be read is left out of the scrape.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessSample {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident set size, in bytes.
    pub resident_bytes: Option<f64>,
    /// Virtual memory size, in bytes.
    pub virtual_bytes: Option<f64>,
    /// File descriptors open.
    pub open_fds: Option<f64>,
    /// The soft limit on open file descriptors.
    pub max_fds: Option<f64>,
    /// Start time since the Unix epoch, in seconds.
    pub start_time_seconds: Option<f64>,
}

impl ProcessSample {
    /// Reads this process's figures.
    pub fn read() -> Self {
        let stat = fs::read_to_string("/proc/self/stat").ok();
        let stat = stat.as_deref().and_then(StatFields::parse);
        let boot_time = fs::read_to_string("/proc/stat").ok().and_then(|text| boot_time(&text));
        Self {
            cpu_seconds: stat.as_ref().map(|s| (s.utime + s.stime) as f64 / TICKS_PER_SECOND),
            resident_bytes: fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|text| resident_bytes(&text)),
            virtual_bytes: stat.as_ref().map(|s| s.vsize as f64),
            open_fds: fs::read_dir("/proc/self/fd").ok().map(|dir| dir.count() as f64),
            max_fds: fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|text| max_open_files(&text)),
            start_time_seconds: stat
                .as_ref()
                .zip(boot_time)
                .map(|(s, boot)| boot as f64 + s.starttime as f64 / TICKS_PER_SECOND),
        }
    }
}

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, PartialEq)]
struct StatFields {
    utime: u64,
    stime: u64,
    starttime: u64,
    vsize: u64,
}

impl StatFields {
    /// Parses the line; the command name (field 2) is in parentheses and may hold spaces and
    /// parentheses itself, so fields are counted from the last `)`.
    fn parse(line: &str) -> Option<Self> {
        let after_name = &line[line.rfind(')')? + 1..];
        // Field 3 (state) is the first after the name: field N is at index N - 3.
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
        Some(Self {
            utime: field(14)?,
            stime: field(15)?,
            starttime: field(22)?,
            vsize: field(23)?,
        })
    }
}

/// `VmRSS` of `/proc/<pid>/status`, in bytes: the resident set without needing the page size
/// that `stat` counts it in.
fn resident_bytes(status: &str) -> Option<f64> {
    let line = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?;
    let kib: f64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024.0)
}

/// `btime` of `/proc/stat`: when the machine booted, in seconds since the epoch.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines().find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

/// The soft limit of `Max open files` in `/proc/<pid>/limits`.
fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    match soft {
        "unlimited" => Some(f64::INFINITY),
        soft => soft.parse().ok(),
    }
}

/// The `process_*` metrics, read at each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let sample = ProcessSample::read();
        if let Some(seconds) = sample.cpu_seconds {
            // The text encoder appends `_total` to counters.
            let counter = ConstCounter::new(seconds);
            counter.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                sample.resident_bytes,
            ),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes.", sample.virtual_bytes),
            ("process_open_fds", "Number of open file descriptors.", sample.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors.", sample.max_fds),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                sample.start_time_seconds,
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// A gauge that is 1 while `readiness` says ready (what /readyz answers), else 0, read at
/// scrape time so that it can never disagree with /readyz.
#[derive(Debug)]
pub struct ReadinessGauge {
    name: &'static str,
    help: &'static str,
    readiness: Readiness,
}

impl ReadinessGauge {
    /// The gauge `name` following `readiness`; register it with `Registry::register_collector`.
    pub fn new(name: &'static str, help: &'static str, readiness: Readiness) -> Self {
        Self { name, help, readiness }
    }
}

impl Collector for ReadinessGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let gauge = ConstGauge::new(i64::from(self.readiness.state().is_ok()));
        gauge.encode(encoder.encode_descriptor(self.name, self.help, None, gauge.metric_type())?)
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::{encoding::text::encode, registry::Registry};

    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_end_of_the_command_name() {
        let line = "4242 (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 \
                    12345 987654 321 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            StatFields::parse(line),
            Some(StatFields { utime: 250, stime: 50, starttime: 12345, vsize: 987654 })
        );
        assert_eq!(StatFields::parse("garbage"), None);
    }

    #[test]
    fn limits_and_boot_time() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max processes             127431               127431               processes\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024.0));
        assert_eq!(boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"), Some(1_700_000_000));
        assert_eq!(resident_bytes("Name:\tx\nVmRSS:\t    2048 kB\n"), Some(2048.0 * 1024.0));
    }

    #[test]
    fn this_process_is_measured() {
        let sample = ProcessSample::read();
        assert!(sample.cpu_seconds.is_some_and(|s| s >= 0.0), "{sample:?}");
        assert!(sample.resident_bytes.is_some_and(|b| b > 1e5), "{sample:?}");
        assert!(sample.virtual_bytes >= sample.resident_bytes, "{sample:?}");
        assert!(sample.open_fds.is_some_and(|n| n >= 3.0), "{sample:?}");
        assert!(sample.max_fds >= sample.open_fds, "{sample:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        let started = sample.start_time_seconds.unwrap();
        assert!(started <= now.as_secs_f64() + 1.0 && started > now.as_secs_f64() - 86400.0);
    }

    #[test]
    fn collectors_encode_the_standard_names() {
        let readiness = Readiness::new("starting");
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ProcessCollector));
        registry.register_collector(Box::new(ReadinessGauge::new(
            "test_ready",
            "1 when ready",
            readiness.clone(),
        )));
        let scrape = |registry: &Registry| {
            let mut text = String::new();
            encode(&mut text, registry).unwrap();
            text
        };
        let text = scrape(&registry);
        for name in [
            "# TYPE process_cpu_seconds counter\nprocess_cpu_seconds_total ",
            "# TYPE process_resident_memory_bytes gauge",
            "# TYPE process_virtual_memory_bytes gauge",
            "# TYPE process_open_fds gauge",
            "# TYPE process_max_fds gauge",
            "# TYPE process_start_time_seconds gauge",
            "test_ready 0\n",
        ] {
            assert!(text.contains(name), "{name} missing:\n{text}");
        }
        readiness.set_ready();
        assert!(scrape(&registry).contains("test_ready 1\n"));
        readiness.set_not_ready("lost the API");
        assert!(scrape(&registry).contains("test_ready 0\n"));
    }
}
