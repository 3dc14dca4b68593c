//! The memory budget: a cell costs its guest RAM plus qemu's own memory (large under TCG), and a
//! cell starts only when its cost fits in what is left. Pure.

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

/// Index of the first pending cell that may start now, if any: jobs free and its cost fits.
pub fn pick(pending_costs: &[u64], running: usize, jobs: usize, budget: &Budget) -> Option<usize> {
    if running >= jobs {
        return None;
    }
    pending_costs.iter().position(|&c| budget.fits(c))
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
        let mut b = Budget { total_mib: 3000, used_mib: 0 };
        let costs = [2000, 2000, 500];
        let i = pick(&costs, 0, 3, &b).unwrap();
        assert_eq!(i, 0);
        b.take(costs[i]);
        // The second 2000 does not fit; the 500 behind it does.
        assert_eq!(pick(&costs[1..], 1, 3, &b), Some(1));
        b.take(500);
        assert_eq!(pick(&[2000], 2, 3, &b), None);
        // Job limit.
        assert_eq!(pick(&[1], 3, 3, &Budget { total_mib: 10_000, used_mib: 0 }), None);
        b.give(2000);
        assert_eq!(pick(&[2000], 1, 3, &b), Some(0));
    }
}
