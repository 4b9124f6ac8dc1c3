//! [`ClusterClock`]: the one timeline every replicated time is on.
//!
//! Only the leader stamps commands (`Command::stamped_at_ms`, set in
//! [`crate::RaftNode`]'s local write path whoever proposed), and apply()
//! computes every absolute time (enqueue, backoff, lease deadlines,
//! heartbeats) from that stamp. So a follower whose clock is off by 30 s
//! changes nothing: its own clock never enters the state.
//!
//! ```text
//!  leader of term T:  stamp = wall(at first stamp of T) + (monotonic now - monotonic then)
//!  any node:          now   = monotonic now + highest (stamp - monotonic at apply) seen in the newest term
//! ```
//!
//! The leader anchors its term's timeline on its wall clock once and then
//! advances it by the monotonic clock, so a wall-clock jump on the leader
//! moves no deadline. Every node estimates the leader's timeline from the
//! stamps it applies (the highest offset of the newest term: an entry is
//! applied after it was stamped, never before), which is what it compares
//! replicated times with: liveness, API key expiry, token times. Before the
//! first stamp it falls back to its own wall clock.

use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch on this machine's wall clock.
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[derive(Debug)]
pub struct ClusterClock {
    origin: Instant,
    /// (term, offset): the timeline is `monotonic ms since origin + offset`.
    timeline: Mutex<Option<(u64, i128)>>,
}

impl Default for ClusterClock {
    fn default() -> Self {
        ClusterClock { origin: Instant::now(), timeline: Mutex::new(None) }
    }
}

impl ClusterClock {
    fn mono_ms(&self) -> i128 {
        self.origin.elapsed().as_millis() as i128
    }

    fn at(&self, mono: i128, offset: i128) -> u64 {
        (mono + offset).clamp(0, i128::from(u64::MAX)) as u64
    }

    /// Records a stamp applied here from a command of `term`.
    pub fn observe(&self, term: u64, stamp_ms: u64) {
        if stamp_ms == 0 {
            return;
        }
        let offset = i128::from(stamp_ms) - self.mono_ms();
        let mut t = self.timeline.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match *t {
            Some((seen, o)) if seen == term => *t = Some((term, o.max(offset))),
            Some((seen, _)) if seen > term => {}
            _ => *t = Some((term, offset)),
        }
    }

    /// The time a leader of `term` stamps now: its timeline for the term,
    /// anchored on this machine's wall clock the first time it is asked.
    pub fn leader_now(&self, term: u64) -> u64 {
        let mono = self.mono_ms();
        let mut t = self.timeline.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match *t {
            Some((seen, offset)) if seen >= term => self.at(mono, offset),
            _ => {
                let offset = i128::from(wall_ms()) - mono;
                *t = Some((term, offset));
                self.at(mono, offset)
            }
        }
    }

    /// This node's estimate of the leader's timeline now.
    pub fn now(&self) -> u64 {
        let mono = self.mono_ms();
        match *self.timeline.lock().unwrap_or_else(std::sync::PoisonError::into_inner) {
            Some((_, offset)) => self.at(mono, offset),
            None => wall_ms(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_follows_the_leaders_timeline_not_its_own_clock() {
        let clock = ClusterClock::default();
        // The leader is an hour ahead of this machine.
        let leader = wall_ms() + 3_600_000;
        clock.observe(3, leader);
        let now = clock.now();
        assert!(now >= leader && now < leader + 1_000, "estimate {now} vs leader stamp {leader}");
        // A replayed old stamp of the same term does not pull it back.
        clock.observe(3, leader - 60_000);
        assert!(clock.now() >= leader);
        // A stamp of an older term is ignored; a newer term replaces the timeline.
        clock.observe(2, leader + 999_999_999);
        assert!(clock.now() < leader + 1_000);
        clock.observe(4, leader - 7_200_000);
        assert!(clock.now() < leader - 7_000_000, "a new leader's (slower) timeline is taken as it is");
    }

    #[test]
    fn a_new_leader_anchors_its_term_on_its_own_wall_clock_once() {
        let clock = ClusterClock::default();
        clock.observe(3, wall_ms() + 3_600_000);
        let wall = wall_ms();
        let stamp = clock.leader_now(4);
        assert!(stamp >= wall && stamp < wall + 1_000, "term 4 is anchored on the wall clock: {stamp} vs {wall}");
        // Later stamps of term 4 continue from the anchor.
        clock.observe(4, stamp);
        assert!(clock.leader_now(4) >= stamp);
        // Control: asking for the old term keeps the current timeline.
        assert!(clock.leader_now(3) < wall + 1_000);
    }

    #[test]
    fn without_any_stamp_the_estimate_is_the_wall_clock() {
        let clock = ClusterClock::default();
        let wall = wall_ms();
        assert!(clock.now().abs_diff(wall) < 1_000);
    }
}
