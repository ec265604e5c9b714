//! Held addresses as maximal runs of consecutive addresses. Finding the first free address of
//! a range, or counting how many of it are held, then costs O(log n) per run touched instead
//! of a walk over every held address: allocation stays fast at 100k leases, and memory grows
//! with leases, never with the size of a pool.

use std::collections::BTreeMap;

use crate::address::{Address, Family};

/// Disjoint, non-adjacent runs of held addresses: start -> last (inclusive).
#[derive(Clone, Debug, Default)]
pub struct HeldRuns {
    runs: BTreeMap<Address, u128>,
}

impl HeldRuns {
    /// Marks `address` held (it must not be already).
    pub fn insert(&mut self, address: Address) {
        let value = address.value;
        let family = address.family;
        let before = self.run_containing_or_before(address);
        let joins_before = before.filter(|(_, last)| value > 0 && *last == value - 1);
        let after_start = value.checked_add(1).map(|next| Address { family, value: next });
        let joins_after =
            after_start.and_then(|start| self.runs.get(&start).map(|last| (start, *last)));
        match (joins_before, joins_after) {
            (Some((start, _)), Some((after, after_last))) => {
                self.runs.remove(&after);
                self.runs.insert(start, after_last);
            }
            (Some((start, _)), None) => {
                self.runs.insert(start, value);
            }
            (None, Some((after, after_last))) => {
                self.runs.remove(&after);
                self.runs.insert(address, after_last);
            }
            (None, None) => {
                self.runs.insert(address, value);
            }
        }
    }

    /// Marks `address` free (it must be held).
    pub fn remove(&mut self, address: Address) {
        let Some((start, last)) = self.run_containing(address) else { return };
        self.runs.remove(&start);
        if start.value < address.value {
            self.runs.insert(start, address.value - 1);
        }
        if address.value < last {
            self.runs.insert(Address { family: address.family, value: address.value + 1 }, last);
        }
    }

    /// Whether `address` is held.
    pub fn contains(&self, address: Address) -> bool {
        self.run_containing(address).is_some()
    }

    /// The first address in [`from`, `last`] of `family` that is not held.
    pub fn first_free_from(&self, family: Family, from: u128, last: u128) -> Option<u128> {
        let candidate = Address { family, value: from };
        let free = match self.run_containing(candidate) {
            // Runs are maximal, so the address after a run is free.
            Some((_, run_last)) => run_last.checked_add(1)?,
            None => from,
        };
        (free <= last).then_some(free)
    }

    /// Number of held addresses of `family` in [`first`, `last`].
    pub fn count_in(&self, family: Family, first: u128, last: u128) -> u128 {
        let low = Address { family, value: first };
        let high = Address { family, value: last };
        let mut count = 0u128;
        if let Some((start, run_last)) = self.run_containing(low)
            && start < low
        {
            count += run_last.min(last) - first + 1;
        }
        for (start, run_last) in self.runs.range(low..=high) {
            count += (*run_last).min(last) - start.value + 1;
        }
        count
    }

    fn run_containing_or_before(&self, address: Address) -> Option<(Address, u128)> {
        let (start, last) = self.runs.range(..=address).next_back()?;
        (start.family == address.family).then_some((*start, *last))
    }

    fn run_containing(&self, address: Address) -> Option<(Address, u128)> {
        self.run_containing_or_before(address).filter(|(_, last)| *last >= address.value)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn v4(value: u128) -> Address {
        Address { family: Family::V4, value }
    }

    #[test]
    fn runs_merge_and_split() {
        let mut runs = HeldRuns::default();
        for value in [5, 7, 6, 1] {
            runs.insert(v4(value));
        }
        assert_eq!(runs.runs.len(), 2);
        assert_eq!(runs.first_free_from(Family::V4, 5, 100), Some(8));
        assert_eq!(runs.first_free_from(Family::V4, 0, 100), Some(0));
        assert_eq!(runs.first_free_from(Family::V4, 5, 7), None);
        runs.remove(v4(6));
        assert_eq!(runs.first_free_from(Family::V4, 5, 100), Some(6));
        assert_eq!(runs.count_in(Family::V4, 0, 100), 3);
        assert_eq!(runs.count_in(Family::V4, 6, 7), 1);
        assert_eq!(runs.count_in(Family::V6, 0, 100), 0);
    }

    proptest! {
        #[test]
        fn matches_a_plain_set(ops in prop::collection::vec((any::<bool>(), 0u128..64), 0..200), probe in 0u128..64, span in 0u128..64) {
            let mut runs = HeldRuns::default();
            let mut set = BTreeSet::new();
            for (insert, value) in ops {
                if insert && set.insert(value) {
                    runs.insert(v4(value));
                } else if !insert && set.remove(&value) {
                    runs.remove(v4(value));
                }
            }
            let last = probe + span;
            let expected_free = (probe..=last).find(|v| !set.contains(v));
            prop_assert_eq!(runs.first_free_from(Family::V4, probe, last), expected_free);
            let expected_count = set.range(probe..=last).count() as u128;
            prop_assert_eq!(runs.count_in(Family::V4, probe, last), expected_count);
            prop_assert_eq!(runs.contains(v4(probe)), set.contains(&probe));
        }
    }
}
