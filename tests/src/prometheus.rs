//! A real Prometheus (the `cmd/prometheus` server of Prometheus 3, built without its UI) that
//! scrapes the daemons and evaluates rule files, for the checks of what a cluster's Prometheus
//! would see: which series exist, and which alerts fire. Its configuration and TSDB live in a
//! temporary directory; it listens on a free loopback port, or inside a lab namespace where the
//! lab's addresses are in reach; every wait is bounded and the process is killed when the handle
//! drops.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    child::ChildProcess, lab::in_namespace, ports::free_loopback_addr, tools::cached_tool,
};

/// How long Prometheus may take to report ready (it replays an empty TSDB: well under a second).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Bound on every single API request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the waits ask again.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Prometheus' usual port, used inside a namespace of the test's own.
const NAMESPACE_PORT: u16 = 9090;

/// One scrape job: `/metrics` of every target, over plain HTTP or, with a bearer token, over
/// HTTPS without verifying the certificate (as the announcers' self-made one must be scraped).
#[derive(Clone, Debug)]
pub struct ScrapeJob {
    /// The `job` label.
    pub name: String,
    /// host:port of each target, as reached from where Prometheus runs.
    pub targets: Vec<SocketAddr>,
    /// HTTPS with this file's content as bearer token; `None`: plain HTTP.
    pub bearer_token_file: Option<PathBuf>,
}

/// What Prometheus scrapes and evaluates, and how often.
#[derive(Clone, Debug)]
pub struct PrometheusConfig {
    /// The scrape jobs.
    pub jobs: Vec<ScrapeJob>,
    /// Rule files' contents (a `groups:` document each, YAML or JSON).
    pub rule_files: Vec<String>,
    /// Both the scrape and the rule evaluation interval.
    pub interval: Duration,
}

/// A running Prometheus.
pub struct Prometheus {
    // Declared before `dir` so that the process is killed before its files go away.
    process: Mutex<ChildProcess>,
    dir: tempfile::TempDir,
    base_url: String,
    http: reqwest::Client,
}

/// A series' labels.
pub type Labels = BTreeMap<String, String>;

/// One sample of an instant query's answer.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The series' labels (with `__name__` where the query kept it).
    pub labels: Labels,
    /// Its value.
    pub value: f64,
}

/// A target as `/api/v1/targets` reports it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    /// Its labels after relabelling (`job`, `instance`).
    pub labels: Labels,
    /// The URL scraped.
    pub scrape_url: String,
    /// "up", "down" or "unknown" (not scraped yet).
    pub health: String,
    /// Why the last scrape failed.
    #[serde(default)]
    pub last_error: String,
}

/// An alert as `/api/v1/alerts` reports it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `alertname` and the series' labels plus the rule's.
    pub labels: Labels,
    /// The rule's annotations, expanded.
    #[serde(default)]
    pub annotations: Labels,
    /// "pending" or "firing".
    pub state: String,
}

impl Alert {
    /// The `alertname` label.
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map(String::as_str).unwrap_or("")
    }
}

impl Prometheus {
    /// Starts Prometheus on a free loopback port with `config` and waits until it is ready.
    pub async fn start(config: &PrometheusConfig) -> anyhow::Result<Self> {
        let listen = free_loopback_addr();
        Self::start_at(config, Command::new(cached_tool("prometheus")), listen, listen).await
    }

    /// Starts Prometheus inside network namespace `namespace`, listening on every address there
    /// (port 9090), and waits until it is ready. The test process reaches its API at
    /// `reachable_at`, an address of the namespace it can route to.
    pub async fn start_in(
        namespace: &str,
        reachable_at: IpAddr,
        config: &PrometheusConfig,
    ) -> anyhow::Result<Self> {
        let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, NAMESPACE_PORT));
        let reached = SocketAddr::new(reachable_at, NAMESPACE_PORT);
        let command = in_namespace(namespace, &cached_tool("prometheus"));
        Self::start_at(config, command, listen, reached).await
    }

    async fn start_at(
        config: &PrometheusConfig,
        mut command: Command,
        listen: SocketAddr,
        reached: SocketAddr,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("metallb-prometheus-").tempdir()?;
        let config_path = write_config(dir.path(), config)?;
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address={listen}"));
        let process = ChildProcess::spawn("prometheus", command, dir.path())?;
        let http = reqwest::Client::builder().no_proxy().timeout(REQUEST_TIMEOUT).build()?;
        let prometheus =
            Self { process: Mutex::new(process), dir, base_url: format!("http://{reached}"), http };
        prometheus.wait_ready().await?;
        Ok(prometheus)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            self.ensure_running()?;
            let url = format!("{}/-/ready", self.base_url);
            match self.http.get(&url).send().await {
                Ok(response) if response.status().is_success() => return Ok(()),
                Ok(response) => last = format!("{}", response.status()),
                Err(err) => last = err.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "Prometheus not ready within {START_TIMEOUT:?} ({last}); log:\n{}",
            self.log()
        )
    }

    /// Base URL of the HTTP API, e.g. `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// Directory holding the configuration, rule files, TSDB and log; removed on drop.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Prometheus' output so far.
    pub fn log(&self) -> String {
        self.process.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).log()
    }

    /// Fails with the log if Prometheus has exited.
    pub fn ensure_running(&self) -> anyhow::Result<()> {
        self.process.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).ensure_running()
    }

    /// Every scrape target with its health.
    pub async fn targets(&self) -> anyhow::Result<Vec<Target>> {
        let data = self.get("/api/v1/targets", &[("state", "active")]).await?;
        Ok(serde_json::from_value(data["activeTargets"].clone())?)
    }

    /// Waits until every target's last scrape succeeded; fails naming those that did not.
    pub async fn wait_for_targets_up(&self, timeout: Duration) -> anyhow::Result<Vec<Target>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_running()?;
            let targets = self.targets().await?;
            if !targets.is_empty() && targets.iter().all(|target| target.health == "up") {
                return Ok(targets);
            }
            if Instant::now() >= deadline {
                let mut message = format!("not every target up within {timeout:?}:");
                for target in &targets {
                    let _ = write!(
                        message,
                        "\n  {} {}: {} {}",
                        target.labels.get("job").map(String::as_str).unwrap_or("?"),
                        target.scrape_url,
                        target.health,
                        target.last_error
                    );
                }
                anyhow::bail!(message);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The names of every series Prometheus holds (`/api/v1/label/__name__/values`).
    pub async fn metric_names(&self) -> anyhow::Result<Vec<String>> {
        let data = self.get("/api/v1/label/__name__/values", &[]).await?;
        Ok(serde_json::from_value(data)?)
    }

    /// An instant query's samples.
    pub async fn query(&self, expr: &str) -> anyhow::Result<Vec<Sample>> {
        let data = self.get("/api/v1/query", &[("query", expr)]).await?;
        anyhow::ensure!(data["resultType"] == "vector", "{expr}: not a vector: {data}");
        let mut samples = Vec::new();
        for result in data["result"].as_array().into_iter().flatten() {
            let labels = serde_json::from_value(result["metric"].clone())?;
            let value = result["value"][1].as_str().unwrap_or("NaN").parse().unwrap_or(f64::NAN);
            samples.push(Sample { labels, value });
        }
        Ok(samples)
    }

    /// The alerts that are pending or firing.
    pub async fn alerts(&self) -> anyhow::Result<Vec<Alert>> {
        let data = self.get("/api/v1/alerts", &[]).await?;
        Ok(serde_json::from_value(data["alerts"].clone())?)
    }

    /// Waits until an alert named `name` fires and `predicate` holds for it; returns it. Fails
    /// after `timeout` listing the alerts it saw.
    pub async fn wait_for_firing(
        &self,
        name: &str,
        predicate: impl Fn(&Alert) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<Alert> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            self.ensure_running()?;
            seen = match self.alerts().await {
                Ok(alerts) => alerts,
                Err(_) if Instant::now() < deadline => seen,
                Err(err) => return Err(err),
            };
            let found = seen
                .iter()
                .find(|alert| alert.name() == name && alert.state == "firing" && predicate(alert));
            if let Some(alert) = found {
                return Ok(alert.clone());
            }
            if Instant::now() >= deadline {
                anyhow::bail!("{name} not firing within {timeout:?}; alerts: {seen:?}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// GETs an API path; the `data` of a `status: success` answer.
    async fn get(&self, path: &str, query: &[(&str, &str)]) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base_url);
        let response = self.http.get(&url).query(query).send().await?;
        let status = response.status();
        let body = response.text().await?;
        let answer: Value = serde_json::from_str(&body)
            .map_err(|err| anyhow::anyhow!("GET {path}: {status}: not JSON ({err}): {body}"))?;
        anyhow::ensure!(answer["status"] == "success", "GET {path}: {status}: {body}");
        Ok(answer["data"].clone())
    }
}

/// Writes prometheus.yml and the rule files into `dir`; returns the configuration's path. The
/// configuration is JSON, which is YAML.
fn write_config(dir: &Path, config: &PrometheusConfig) -> anyhow::Result<PathBuf> {
    let interval = format!("{}ms", config.interval.as_millis());
    let mut rule_files = Vec::new();
    for (index, rules) in config.rule_files.iter().enumerate() {
        let path = dir.join(format!("rules-{index}.yaml"));
        std::fs::write(&path, rules)?;
        rule_files.push(path.to_string_lossy().into_owned());
    }
    let jobs: Vec<Value> = config.jobs.iter().map(|job| scrape_config(job, &interval)).collect();
    let document = json!({
        "global": {
            "scrape_interval": interval,
            "scrape_timeout": interval,
            "evaluation_interval": interval,
        },
        "rule_files": rule_files,
        "scrape_configs": jobs,
    });
    let path = dir.join("prometheus.yml");
    std::fs::write(&path, serde_json::to_string_pretty(&document)?)?;
    Ok(path)
}

fn scrape_config(job: &ScrapeJob, interval: &str) -> Value {
    let targets: Vec<String> = job.targets.iter().map(SocketAddr::to_string).collect();
    let mut config = json!({
        "job_name": job.name,
        "scrape_interval": interval,
        "metrics_path": "/metrics",
        "static_configs": [{"targets": targets}],
    });
    if let Some(token) = &job.bearer_token_file {
        config["scheme"] = json!("https");
        config["tls_config"] = json!({"insecure_skip_verify": true});
        config["authorization"] =
            json!({"type": "Bearer", "credentials_file": token.to_string_lossy()});
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_jobs_carry_the_token_file_and_skip_verification() {
        let dir = tempfile::tempdir().unwrap();
        let config = PrometheusConfig {
            jobs: vec![
                ScrapeJob {
                    name: "plain".into(),
                    targets: vec!["127.0.0.1:7472".parse().unwrap()],
                    bearer_token_file: None,
                },
                ScrapeJob {
                    name: "secure".into(),
                    targets: vec!["192.0.2.11:7474".parse().unwrap()],
                    bearer_token_file: Some("/tmp/token".into()),
                },
            ],
            rule_files: vec!["groups: []\n".into()],
            interval: Duration::from_millis(500),
        };
        let path = write_config(dir.path(), &config).unwrap();
        let written: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(written["global"]["evaluation_interval"], "500ms");
        let jobs = written["scrape_configs"].as_array().unwrap();
        assert_eq!(jobs[0]["static_configs"][0]["targets"], json!(["127.0.0.1:7472"]));
        assert!(jobs[0].get("scheme").is_none());
        assert_eq!(jobs[1]["scheme"], "https");
        assert_eq!(jobs[1]["authorization"]["credentials_file"], "/tmp/token");
        let rules = written["rule_files"][0].as_str().unwrap();
        assert_eq!(std::fs::read_to_string(rules).unwrap(), "groups: []\n");
    }
}
