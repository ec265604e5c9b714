//! Write-back off the reconcile loop. The loop hands each Service's newest outcome to this
//! queue and goes on with the next events; the queue writes them several at a time.
//!
//! Status comes first: under a burst, every waiting status write goes before any annotation or
//! Event, because the status is what users (and their tooling) wait for. Writes to one Service
//! never overlap and never run out of order: a newer outcome waits for the write in progress and
//! replaces any older one still waiting, whose details are then skipped. A failed write is
//! reported back to the loop, which decides again from the current state (the Service may have
//! changed in between, and a stale write must not be repeated blindly).

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
    time::Instant,
};

use futures::{StreamExt, stream::FuturesUnordered};
use k8s_openapi::api::core::v1::Service;
use metallb_proto::pb;
use tokio::sync::mpsc;

use crate::{metrics::WatcherMetrics, writeback::Writer};

/// A Service, as (namespace, name).
pub type Key = (String, String);

/// Writes to the API server at once; each is one small patch or Event.
const CONCURRENCY: usize = 32;

/// What to write to a Service.
#[derive(Clone, Debug)]
pub enum Write {
    /// Show the allocator's outcome; `announce` adds an Event (only for news).
    Outcome { outcome: pb::ServiceOutcome, announce: bool },
    /// Take back what we wrote: the Service is no longer a LoadBalancer of ours.
    Clear,
}

struct Job {
    service: Arc<Service>,
    write: Write,
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Status,
    Details,
}

/// The sending side; the writing runs in its own task until this is dropped.
pub struct WriteQueue {
    jobs: mpsc::UnboundedSender<(Key, Job)>,
}

impl WriteQueue {
    /// Starts the writing task. Keys whose write failed are sent to `failed`; the writes'
    /// duration, failures and the queue's depth go to `metrics`.
    pub fn spawn(
        writer: Writer,
        failed: mpsc::UnboundedSender<Key>,
        metrics: WatcherMetrics,
    ) -> Self {
        let (jobs, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(writer, receiver, failed, metrics));
        Self { jobs }
    }

    /// Queues `write` for `service`, replacing any write for it that has not started.
    pub fn push(&self, key: Key, service: Arc<Service>, write: Write) {
        // The task only ends when this sender is dropped, so sending cannot fail while we hold it.
        let _ = self.jobs.send((key, Job { service, write }));
    }
}

/// The queue's bookkeeping, apart from the I/O so its rules read in one place.
#[derive(Default)]
struct Schedule {
    /// The newest job per Service that has not started.
    waiting: HashMap<Key, Job>,
    /// Services whose waiting job can start, oldest first.
    status_ready: VecDeque<Key>,
    /// Jobs whose status is written and whose details are next.
    details_ready: VecDeque<(Key, Job)>,
    /// Services with a write in progress.
    busy: HashSet<Key>,
}

impl Schedule {
    fn add(&mut self, key: Key, job: Job) {
        let already_waiting = self.waiting.insert(key.clone(), job).is_some();
        // A waiting job is already in `status_ready`, or a busy one puts it there when done.
        if !already_waiting && !self.busy.contains(&key) {
            self.status_ready.push_back(key);
        }
    }

    /// The next write to start: any status before any details; details of a Service that has a
    /// newer job are dropped, the newer job writes everything.
    fn next(&mut self) -> Option<(Key, Job, Phase)> {
        if let Some(key) = self.status_ready.pop_front() {
            let job = self.waiting.remove(&key).expect("a ready Service has a waiting job");
            self.busy.insert(key.clone());
            return Some((key, job, Phase::Status));
        }
        while let Some((key, job)) = self.details_ready.pop_front() {
            if self.waiting.contains_key(&key) || self.busy.contains(&key) {
                continue;
            }
            self.busy.insert(key.clone());
            return Some((key, job, Phase::Details));
        }
        None
    }

    /// Records a finished write.
    fn finish(&mut self, key: Key, job: Job, phase: Phase, succeeded: bool) {
        self.busy.remove(&key);
        if self.waiting.contains_key(&key) {
            self.status_ready.push_back(key);
        } else if succeeded && phase == Phase::Status && matches!(job.write, Write::Outcome { .. })
        {
            self.details_ready.push_back((key, job));
        }
    }

    /// Writes waiting to start.
    fn depth(&self) -> usize {
        self.waiting.len() + self.details_ready.len()
    }

    fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.details_ready.is_empty() && self.busy.is_empty()
    }
}

async fn run(
    writer: Writer,
    mut jobs: mpsc::UnboundedReceiver<(Key, Job)>,
    failed: mpsc::UnboundedSender<Key>,
    metrics: WatcherMetrics,
) {
    let mut schedule = Schedule::default();
    let mut running = FuturesUnordered::new();
    let mut open = true;
    loop {
        while running.len() < CONCURRENCY {
            let Some((key, job, phase)) = schedule.next() else { break };
            let (writer, metrics) = (writer.clone(), metrics.clone());
            running.push(async move {
                let started = Instant::now();
                let result = write(&writer, &job, phase).await;
                metrics.wrote(write_kind(&job, phase), started.elapsed());
                (key, job, phase, result)
            });
        }
        metrics.queue_depth(schedule.depth());
        if !open && schedule.is_idle() {
            return;
        }
        tokio::select! {
            received = jobs.recv(), if open => match received {
                Some((key, job)) => schedule.add(key, job),
                None => open = false,
            },
            Some((key, job, phase, result)) = running.next() => {
                if let Err(err) = &result {
                    metrics.update_error();
                    tracing::warn!(service = %format!("{}/{}", key.0, key.1), error = %err, "writing the outcome back failed; retrying");
                    let _ = failed.send(key.clone());
                }
                schedule.finish(key, job, phase, result.is_ok());
            }
        }
    }
}

/// The label of a write in `metallb_watcher_writeback_duration_seconds`.
fn write_kind(job: &Job, phase: Phase) -> &'static str {
    match (&job.write, phase) {
        (Write::Outcome { .. }, Phase::Status) => "status",
        (Write::Outcome { .. }, Phase::Details) => "details",
        (Write::Clear, _) => "clear",
    }
}

async fn write(writer: &Writer, job: &Job, phase: Phase) -> anyhow::Result<()> {
    let service = &job.service;
    match (&job.write, phase) {
        (Write::Outcome { outcome, .. }, Phase::Status) => {
            writer.write_status(service, outcome).await
        }
        (Write::Outcome { outcome, announce }, Phase::Details) => {
            writer.write_details(service, outcome, *announce).await
        }
        (Write::Clear, _) => {
            writer.set_ingress(service, &[]).await?;
            writer.set_pool_annotation(service, None).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        ("default".into(), name.into())
    }

    fn job(ip: &str) -> Job {
        let lease = pb::Lease { ips: vec![ip.into()], pool: "p".into(), ..Default::default() };
        Job {
            service: Arc::new(Service::default()),
            write: Write::Outcome {
                outcome: pb::ServiceOutcome {
                    outcome: Some(pb::service_outcome::Outcome::Lease(lease)),
                    ..Default::default()
                },
                announce: true,
            },
        }
    }

    fn ip_of(job: &Job) -> String {
        match &job.write {
            Write::Outcome { outcome, .. } => match &outcome.outcome {
                Some(pb::service_outcome::Outcome::Lease(lease)) => lease.ips[0].clone(),
                _ => panic!("not a lease"),
            },
            Write::Clear => "clear".into(),
        }
    }

    #[test]
    fn every_status_goes_before_any_details() {
        let mut schedule = Schedule::default();
        schedule.add(key("a"), job("192.0.2.1"));
        schedule.add(key("b"), job("192.0.2.2"));
        assert_eq!(schedule.depth(), 2);
        let (k, j, phase) = schedule.next().unwrap();
        assert!(phase == Phase::Status && k == key("a"));
        assert_eq!(schedule.depth(), 1, "a write in progress no longer waits");
        schedule.finish(k, j, phase, true);
        assert_eq!(schedule.depth(), 2, "b's status and a's details");
        let (k, _, phase) = schedule.next().unwrap();
        assert!(phase == Phase::Status && k == key("b"), "b's status before a's details");
        let (k, _, phase) = schedule.next().unwrap();
        assert!(phase == Phase::Details && k == key("a"));
        assert!(schedule.next().is_none());
        assert_eq!(schedule.depth(), 0);
    }

    #[test]
    fn a_newer_outcome_waits_for_the_write_in_progress_and_replaces_older_waiting_ones() {
        let mut schedule = Schedule::default();
        schedule.add(key("a"), job("192.0.2.1"));
        let (k, j, phase) = schedule.next().unwrap();
        schedule.add(key("a"), job("192.0.2.2"));
        schedule.add(key("a"), job("192.0.2.3"));
        assert!(schedule.next().is_none(), "no second write to a while one runs");
        schedule.finish(k, j, phase, true);
        let (k, j, phase) = schedule.next().unwrap();
        assert_eq!(ip_of(&j), "192.0.2.3");
        assert!(phase == Phase::Status);
        assert!(schedule.next().is_none(), "the superseded outcome's details are skipped");
        schedule.finish(k, j, phase, true);
        let (_, j, phase) = schedule.next().unwrap();
        assert!(phase == Phase::Details && ip_of(&j) == "192.0.2.3");
    }

    #[test]
    fn a_failed_status_write_has_no_details() {
        let mut schedule = Schedule::default();
        schedule.add(key("a"), job("192.0.2.1"));
        let (k, j, phase) = schedule.next().unwrap();
        schedule.finish(k, j, phase, false);
        assert!(schedule.next().is_none());
        assert!(schedule.is_idle());
    }
}
