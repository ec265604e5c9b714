//! The node's layer 2 answers follow what the allocator says it owns, but only while the
//! allocator's word lasts (see `crate::fence`): past it, the speaker answers nothing until a
//! heartbeat comes again. This runs in a task of its own so that nothing else the announcer
//! does (BGP work) can delay falling silent.

use std::{sync::Arc, time::Instant};

use tokio::sync::oneshot;

use super::{L2Speaker, OwnedIps};
use crate::{
    assignments::Assignments,
    subscription::{AnswerUntilReceiver, AssignmentsReceiver},
};

/// Keeps `speaker` answering for the owned IPs while the word lasts, until `stop`; then stops
/// the speaker.
pub async fn follow_ownership(
    mut assignments: AssignmentsReceiver,
    mut answer_until: AnswerUntilReceiver,
    speaker: L2Speaker,
    mut stop: oneshot::Receiver<()>,
) {
    let mut answers = Answers::default();
    loop {
        let fence_at = answers.answering_until();
        tokio::select! {
            changed = assignments.changed() => {
                if changed.is_err() {
                    break;
                }
                answers.assignments = assignments.borrow_and_update().clone();
            }
            changed = answer_until.changed() => {
                if changed.is_err() {
                    break;
                }
                answers.until = *answer_until.borrow_and_update();
            }
            () = sleep_until(fence_at) => {}
            _ = &mut stop => break,
        }
        if let Some(owned) = answers.update(Instant::now()) {
            speaker.set_owned(owned);
        }
    }
    speaker.shutdown().await;
}

/// What the node answers for.
#[derive(Default)]
struct Answers {
    assignments: Option<Arc<Assignments>>,
    /// Until when the allocator's word lets the node answer.
    until: Option<Instant>,
    /// What the speaker was last given.
    given: Option<OwnedIps>,
}

impl Answers {
    /// When the node must fall silent if no heartbeat comes, while it answers for anything.
    fn answering_until(&self) -> Option<Instant> {
        self.until.filter(|_| self.given.as_ref().is_some_and(|owned| !owned.is_empty()))
    }

    /// What the speaker must be given at `now`, if that changed.
    fn update(&mut self, now: Instant) -> Option<OwnedIps> {
        let word = self.until.is_some_and(|until| now < until);
        let owned = match (&self.assignments, word) {
            (Some(assignments), true) => assignments.l2().clone(),
            _ => OwnedIps::new(),
        };
        if self.given.as_ref() == Some(&owned) {
            return None;
        }
        if !word && self.given.as_ref().is_some_and(|given| !given.is_empty()) {
            tracing::warn!("no word from the allocator: layer 2 answers stop until it is heard");
        }
        self.given = Some(owned.clone());
        Some(owned)
    }
}

/// Sleeps until `at`, or forever without it.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use metallb_proto::pb;

    use super::*;

    fn owning(ip: &str) -> Arc<Assignments> {
        Arc::new(Assignments::from_snapshot(pb::NodeAssignments {
            l2_announcements: vec![pb::L2Announcement { ip: ip.into(), ..Default::default() }],
            ..Default::default()
        }))
    }

    #[test]
    fn owned_ips_are_answered_only_while_the_word_lasts() {
        let now = Instant::now();
        let mut answers = Answers { assignments: Some(owning("192.0.2.10")), ..Default::default() };
        assert_eq!(answers.update(now), Some(OwnedIps::new()), "no word yet: nothing");
        answers.until = Some(now + Duration::from_secs(1));
        assert_eq!(answers.update(now).map(|owned| owned.len()), Some(1));
        assert_eq!(answers.update(now), None, "unchanged: the speaker is not bothered");
        assert_eq!(answers.answering_until(), Some(now + Duration::from_secs(1)));
        assert_eq!(answers.update(now + Duration::from_secs(1)), Some(OwnedIps::new()));
        assert_eq!(answers.answering_until(), None, "silent: nothing to time");
    }
}
