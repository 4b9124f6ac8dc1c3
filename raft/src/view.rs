//! [`ClusterView`]: what a node knows of its cluster, in Synod's own
//! terms, so that the layers above never see openraft's types.

use std::collections::BTreeMap;

use crate::types::{RaftMetrics, SynodNode};

/// This node's part in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Candidate,
    /// A voter that follows.
    Follower,
    Learner,
    Shutdown,
}

/// A snapshot of what this node knows of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterView {
    /// This node's id.
    pub id: u64,
    pub role: Role,
    pub leader: Option<u64>,
    pub term: u64,
    /// The highest commit index this node knows (the cluster's when the
    /// leader has said, else its own).
    pub commit_index: u64,
    /// The last entry applied to this node's state machine.
    pub applied_index: u64,
    /// The term of the leader that wrote the last applied entry.
    pub applied_term: Option<u64>,
    pub last_log_index: u64,
    /// This node's latest snapshot.
    pub snapshot_index: Option<u64>,
    /// Log entries up to here are purged on this node.
    pub purged_index: Option<u64>,
    /// Voters; during a joint change, the union of the old and new sets.
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// A membership change in its joint phase.
    pub joint: bool,
    /// Every member (voter or learner) and how to reach it.
    pub members: BTreeMap<u64, SynodNode>,
    /// On the leader: the highest log index each member is known to hold.
    pub matched: BTreeMap<u64, Option<u64>>,
}

impl ClusterView {
    pub(crate) fn of(m: &RaftMetrics) -> ClusterView {
        use openraft::ServerState as S;
        let membership = m.membership_config.membership();
        ClusterView {
            id: m.id,
            role: match m.state {
                S::Leader => Role::Leader,
                S::Candidate => Role::Candidate,
                S::Follower => Role::Follower,
                S::Learner => Role::Learner,
                S::Shutdown => Role::Shutdown,
            },
            leader: m.current_leader,
            term: m.current_term,
            commit_index: crate::commit_index(m),
            applied_index: crate::applied_index(m),
            applied_term: m.last_applied.as_ref().map(|l| l.leader_id.term),
            last_log_index: m.last_log_index.unwrap_or(0),
            snapshot_index: m.snapshot.as_ref().map(|l| l.index),
            purged_index: m.purged.as_ref().map(|l| l.index),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            joint: membership.get_joint_config().len() > 1,
            members: membership.nodes().map(|(id, n)| (*id, n.clone())).collect(),
            matched: m
                .replication
                .as_ref()
                .map(|r| r.iter().map(|(id, l)| (*id, l.as_ref().map(|l| l.index))).collect())
                .unwrap_or_default(),
        }
    }

    pub fn is_voter(&self, id: u64) -> bool {
        self.voters.contains(&id)
    }

    pub fn is_learner(&self, id: u64) -> bool {
        self.learners.contains(&id)
    }

    pub fn is_member(&self, id: u64) -> bool {
        self.members.contains_key(&id)
    }

    /// This node leads (and knows it).
    pub fn leads(&self) -> bool {
        self.role == Role::Leader && self.leader == Some(self.id)
    }
}
