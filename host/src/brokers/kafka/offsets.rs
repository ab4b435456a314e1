//! Where a partition's committed offset may go: never past a message that is not settled.
//!
//! Every message handed to the pipeline is *open* until it is acked (replayed and confirmed, or archived)
//! or released (skipped, failed, parked: it stays in the DLQ). The commit position of a partition is its
//! lowest open or released offset, or the offset after the last message handed out when there is none:
//! the next run of the group starts there and sees every message that stayed.

use std::collections::{BTreeMap, BTreeSet};

/// One partition's messages in flight.
#[derive(Clone, Debug, Default)]
pub struct PartitionOffsets {
    /// Handed to the pipeline, not yet acked or released.
    open: BTreeSet<i64>,
    /// Released: they stay in the DLQ, so the commit stops at the first of them.
    held: BTreeSet<i64>,
    /// The offset after the last message handed out (`None`: nothing handed out yet).
    next: Option<i64>,
    /// The last position committed.
    committed: Option<i64>,
}

impl PartitionOffsets {
    /// A message was handed to the pipeline.
    pub fn handed_out(&mut self, offset: i64) {
        self.open.insert(offset);
        self.next = Some(self.next.map_or(offset + 1, |n| n.max(offset + 1)));
    }

    /// A message was acked.
    pub fn acked(&mut self, offset: i64) {
        self.open.remove(&offset);
    }

    /// A message was released: it stays.
    pub fn released(&mut self, offset: i64) {
        if self.open.remove(&offset) {
            self.held.insert(offset);
        }
    }

    /// A message was not read (before `--since`): it stays, so the commit stops at it. The offset need not
    /// have been handed out.
    pub fn hold(&mut self, offset: i64) {
        self.held.insert(offset);
    }

    /// Messages handed out and not settled either way.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// The position to commit now, when it moved past the last one committed.
    pub fn to_commit(&self) -> Option<i64> {
        let lowest = [self.open.first(), self.held.first()]
            .into_iter()
            .flatten()
            .min()
            .copied();
        let position = lowest.or(self.next)?;
        (self.committed.is_none_or(|c| position > c)).then_some(position)
    }

    /// The position was committed.
    pub fn committed(&mut self, position: i64) {
        self.committed = Some(self.committed.map_or(position, |c| c.max(position)));
    }
}

/// Every partition of the topic this run handed messages out of.
#[derive(Debug, Default)]
pub struct Offsets {
    partitions: BTreeMap<i32, PartitionOffsets>,
}

impl Offsets {
    /// The partition's tracker.
    pub fn partition(&mut self, partition: i32) -> &mut PartitionOffsets {
        self.partitions.entry(partition).or_default()
    }

    /// Positions to commit now, per partition.
    pub fn to_commit(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|(p, o)| o.to_commit().map(|position| (*p, position)))
            .collect()
    }

    /// Positions to commit if the messages `acked` (partition, offset) were acked: what a transaction that
    /// delivers them may commit with them. Nothing changes here; untracked partitions are left out.
    pub fn to_commit_after(&self, acked: &[(i32, i64)]) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .filter_map(|(p, offsets)| {
                let mut offsets = offsets.clone();
                for (_, o) in acked.iter().filter(|(q, _)| q == p) {
                    offsets.acked(*o);
                }
                offsets.to_commit().map(|position| (*p, position))
            })
            .collect()
    }

    /// Open messages of every partition.
    pub fn open_total(&self) -> usize {
        self.partitions.values().map(PartitionOffsets::open).sum()
    }

    /// Open messages of these partitions.
    pub fn open_in(&self, partitions: &[i32]) -> usize {
        partitions
            .iter()
            .filter_map(|p| self.partitions.get(p))
            .map(PartitionOffsets::open)
            .sum()
    }

    /// A commit of `position` went through. Only recorded for a partition still tracked: one revoked while the
    /// commit was on its way is not tracked again.
    pub fn committed(&mut self, partition: i32, position: i64) {
        if let Some(offsets) = self.partitions.get_mut(&partition) {
            offsets.committed(position);
        }
    }

    /// The message at `offset` was settled. Only recorded for a partition still tracked.
    pub fn acked(&mut self, partition: i32, offset: i64) {
        if let Some(offsets) = self.partitions.get_mut(&partition) {
            offsets.acked(offset);
        }
    }

    /// The message at `offset` stays in the DLQ. Only recorded for a partition still tracked.
    pub fn released(&mut self, partition: i32, offset: i64) {
        if let Some(offsets) = self.partitions.get_mut(&partition) {
            offsets.released(offset);
        }
    }

    /// True while the partition's messages are tracked (handed out, not revoked).
    #[cfg(test)]
    pub fn tracks(&self, partition: i32) -> bool {
        self.partitions.contains_key(&partition)
    }

    /// Forget a partition (revoked: another worker owns it now).
    pub fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_revoked_meanwhile_is_not_tracked_again() {
        let mut offsets = Offsets::default();
        offsets.partition(0).handed_out(7);
        offsets.forget(0);
        offsets.committed(0, 8);
        offsets.acked(0, 7);
        assert!(
            !offsets.tracks(0),
            "a commit or ack that lands after the revoke re-created the tracker"
        );
        offsets.partition(1).handed_out(3);
        offsets.acked(1, 3);
        offsets.committed(1, 4);
        assert_eq!(offsets.to_commit(), Vec::new(), "partition 1 committed up to 4 already");
    }

    #[test]
    fn the_commit_never_passes_an_unsettled_message() {
        let mut p = PartitionOffsets::default();
        assert_eq!(p.to_commit(), None, "nothing handed out: nothing to commit");
        for offset in 10..15 {
            p.handed_out(offset);
        }
        assert_eq!(p.to_commit(), Some(10));
        p.acked(10);
        p.acked(12);
        assert_eq!(p.to_commit(), Some(11), "11 is still open");
        p.released(11);
        p.acked(13);
        p.acked(14);
        assert_eq!(p.to_commit(), Some(11), "11 stays in the DLQ: the commit stops there");
        p.committed(11);
        assert_eq!(p.to_commit(), None, "already committed");
    }

    #[test]
    fn everything_settled_commits_past_the_last() {
        let mut p = PartitionOffsets::default();
        p.handed_out(3);
        p.handed_out(4);
        p.acked(4);
        p.acked(3);
        assert_eq!(p.to_commit(), Some(5));
        p.committed(5);
        p.handed_out(5);
        assert_eq!(
            p.to_commit(),
            None,
            "5 is open: the position stays at 5, already committed"
        );
    }

    #[test]
    fn a_message_left_unread_holds_the_commit() {
        let mut p = PartitionOffsets::default();
        p.hold(7);
        for offset in 20..23 {
            p.handed_out(offset);
            p.acked(offset);
        }
        assert_eq!(
            p.to_commit(),
            Some(7),
            "7 was passed over (before --since): the commit stays there although 20..23 are settled"
        );
    }

    #[test]
    fn a_transaction_commits_as_if_its_messages_were_acked() {
        let mut all = Offsets::default();
        for offset in 0..4 {
            all.partition(0).handed_out(offset);
        }
        all.partition(1).handed_out(9);
        all.partition(0).released(2);
        assert_eq!(
            all.to_commit_after(&[(0, 0), (0, 1), (1, 9), (7, 1)]),
            vec![(0, 2), (1, 10)],
            "0 and 1 delivered, 2 stays: partition 0 stops at 2; partition 7 is not tracked"
        );
        assert_eq!(
            all.to_commit_after(&[(0, 1)]),
            vec![(0, 0), (1, 9)],
            "0 is still open: nothing moves past it"
        );
        assert_eq!(all.to_commit(), vec![(0, 0), (1, 9)], "the trackers did not change");
    }

    #[test]
    fn open_messages_are_counted_per_partition() {
        let mut all = Offsets::default();
        all.partition(0).handed_out(1);
        all.partition(1).handed_out(1);
        all.partition(1).handed_out(2);
        assert_eq!(all.open_in(&[1]), 2);
        assert_eq!(all.to_commit(), vec![(0, 1), (1, 1)]);
        all.forget(1);
        assert_eq!(all.open_in(&[0, 1]), 1);
    }
}
