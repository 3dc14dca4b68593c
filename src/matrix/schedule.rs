//! The memory budget: a cell costs its guest RAM plus qemu's own memory (large under TCG), and a
//! cell starts only when its cost fits in what is left. With several hosts each has its own
//! budget and jobs, and a host that failed gets no more cells. Pure.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub total_mib: u64,
    pub used_mib: u64,
}

impl Budget {
    /// What a host can give: available memory minus a reserve for perfvm, libvirt and the rest.
    pub fn from_available(available_mib: u64, reserve_mib: u64) -> Budget {
        Budget { total_mib: available_mib.saturating_sub(reserve_mib), used_mib: 0 }
    }
    pub fn fits(&self, cost: u64) -> bool {
        self.used_mib + cost <= self.total_mib
    }
    pub fn take(&mut self, cost: u64) {
        self.used_mib += cost;
    }
    pub fn give(&mut self, cost: u64) {
        self.used_mib = self.used_mib.saturating_sub(cost);
    }
}

/// Jobs when the user gives none: as many of the largest cells as the budget holds, and no more
/// guests than the cores can run without sharing (cores / vCPUs per guest), at least one.
/// Measured here under TCG: two 2-vCPU guests on 2 cores cut each one's upload throughput to
/// 0.27× and gained no wall time, so sharing cores only makes the numbers worse.
pub fn default_jobs(budget: &Budget, max_cost: u64, cores: usize, cpus_per_guest: usize) -> usize {
    let by_memory = (budget.total_mib / max_cost.max(1)) as usize;
    let by_cpu = cores / cpus_per_guest.max(1);
    by_memory.min(by_cpu).max(1)
}

/// One host's room for cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub budget: Budget,
    pub jobs: usize,
    pub running: usize,
    /// Lost (libvirtd gone, unreachable): no new cells.
    pub bad: bool,
}

/// The next cell to start and the host for it: the first pending cell that fits on some good
/// host, on the good host with the most free jobs (the first of equals).
pub fn pick_host(pending_costs: &[u64], slots: &[Slot]) -> Option<(usize, usize)> {
    for (i, &c) in pending_costs.iter().enumerate() {
        let best = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.bad && s.running < s.jobs && s.budget.fits(c))
            .max_by_key(|(h, s)| (s.jobs - s.running, std::cmp::Reverse(*h)));
        if let Some((h, _)) = best {
            return Some((h, i));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_and_jobs() {
        let b = Budget::from_available(24_000, 1_000);
        assert_eq!(b.total_mib, 23_000);
        assert_eq!(default_jobs(&b, 2048 + 1200, 2, 1), 2);
        assert_eq!(default_jobs(&b, 2048 + 1200, 2, 2), 1);
        assert_eq!(default_jobs(&b, 2048 + 1200, 64, 2), 7);
        assert_eq!(default_jobs(&b, 2048 + 1200, 8, 2), 4);
        assert_eq!(default_jobs(&Budget::from_available(100, 1000), 500, 4, 1), 1);
    }

    #[test]
    fn cells_wait_rather_than_overcommit() {
        let one = |total, used, jobs, running| [Slot { budget: Budget { total_mib: total, used_mib: used }, jobs, running, bad: false }];
        assert_eq!(pick_host(&[2000, 2000, 500], &one(3000, 0, 3, 0)), Some((0, 0)));
        // The second 2000 does not fit; the 500 behind it does.
        assert_eq!(pick_host(&[2000, 500], &one(3000, 2000, 3, 1)), Some((0, 1)));
        assert_eq!(pick_host(&[2000], &one(3000, 2500, 3, 2)), None);
        // Job limit.
        assert_eq!(pick_host(&[1], &one(10_000, 0, 3, 3)), None);
        assert_eq!(pick_host(&[2000], &one(3000, 500, 3, 1)), Some((0, 0)));
    }

    #[test]
    fn hosts_share_the_cells_and_a_bad_host_gets_none() {
        let slot = |total, jobs| Slot { budget: Budget { total_mib: total, used_mib: 0 }, jobs, running: 0, bad: false };
        let mut slots = [slot(4000, 1), slot(4000, 1)];
        assert_eq!(pick_host(&[1000, 1000], &slots), Some((0, 0)));
        slots[0].running = 1;
        assert_eq!(pick_host(&[1000], &slots), Some((1, 0)));
        slots[1].running = 1;
        assert_eq!(pick_host(&[1000], &slots), None);
        // A cell too big for one host goes to the one it fits.
        let slots = [slot(1500, 2), slot(8000, 1)];
        assert_eq!(pick_host(&[3000, 1000], &slots), Some((1, 0)));
        // The host with more free jobs first.
        let mut slots = [slot(9000, 1), slot(9000, 3)];
        assert_eq!(pick_host(&[10], &slots), Some((1, 0)));
        slots[1].bad = true;
        assert_eq!(pick_host(&[10], &slots), Some((0, 0)));
        slots[0].bad = true;
        assert_eq!(pick_host(&[10], &slots), None);
    }
}
