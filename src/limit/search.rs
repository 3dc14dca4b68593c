//! The search, as a state machine: from the probes finished so far, what to probe next and when
//! the limit is known. Pure, and a function of the *set* of finished probes (not of their order),
//! so a resumed search decides exactly as an uninterrupted one would.
//!
//! Points are numbered `0..n` from the hardest (least RAM, largest file) to the easiest; a
//! target that passes at a point is assumed to pass at every easier one. Below point 0 the search
//! supposes a failure and past point `n - 1` a pass (never probed): bisecting between them finds
//! the limit in ⌈log₂(n + 1)⌉ probes, and a limit at an end of the range needs no extra probe of
//! that end.
//!
//! Noise: a point *passes* when every probe of it passed, and *fails* when one did. A failure is
//! never luck in the direction that matters: it can only make the answer more conservative,
//! while a lucky pass would make it wrong. So failures are not repeated; the point that would be
//! the limit is probed until it has passed `confirm` times. If one of those probes fails, that
//! point fails and the search goes on above it.

use std::collections::{BTreeMap, BTreeSet};

/// A finished probe: its point, its repetition, and whether it passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub point: usize,
    pub repeat: u32,
    pub passed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Search {
    /// Points in the range.
    pub points: usize,
    /// Probes of the limit's point that must all pass.
    pub confirm: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Passes at `passing` (every probe), fails at `failing`, the next harder point.
    Found,
    /// Passes at point 0, the hardest: the limit is there or beyond the range.
    PassesEverywhere,
    /// Fails at the easiest point: the limit is beyond the range.
    PassesNowhere,
}

/// Where the limit is so far: between the easiest point that failed and the hardest point above
/// it that passed every probe (None: beyond that end of the range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bracket {
    pub failing: Option<usize>,
    pub passing: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Probe these (point, repetition) next: as many as may run at once, nearest first.
    Probe(Vec<(usize, u32)>),
    /// The search is over.
    Done { outcome: Outcome, bracket: Bracket },
}

/// A point's finished probes, by repetition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub passed: BTreeSet<u32>,
    pub failed: BTreeSet<u32>,
}

pub fn tally(probes: &[Probe]) -> BTreeMap<usize, Tally> {
    let mut t: BTreeMap<usize, Tally> = BTreeMap::new();
    for p in probes {
        let e = t.entry(p.point).or_default();
        if p.passed { e.passed.insert(p.repeat) } else { e.failed.insert(p.repeat) };
    }
    t
}

impl Search {
    /// Where the limit is, given the probes.
    pub fn bracket(&self, probes: &[Probe]) -> Bracket {
        let t = tally(probes);
        let failing = t.iter().filter(|(_, x)| !x.failed.is_empty()).map(|(p, _)| *p).max();
        let passing = t.iter().filter(|(p, x)| failing.is_none_or(|f| **p > f) && x.failed.is_empty() && !x.passed.is_empty()).map(|(p, _)| *p).min();
        Bracket { failing, passing }
    }

    /// What to do next, with `jobs` probes allowed at once.
    pub fn next(&self, probes: &[Probe], jobs: usize) -> Step {
        let jobs = jobs.max(1);
        let b = self.bracket(probes);
        // Virtual ends: a failure before point 0, a pass after the last point.
        let f = b.failing.map_or(-1, |p| p as i64);
        let p = b.passing.map_or(self.points as i64, |p| p as i64);
        let span = p - f;
        if span > 1 {
            // Split the open interval into jobs + 1 equal parts (bisection with one job). Every
            // point inside it is unprobed: a probe there would have moved an end.
            let k = jobs as i64;
            let mut at: Vec<(usize, u32)> = (1..=k).map(|j| f + j * span / (k + 1)).filter(|x| *x > f && *x < p).map(|x| (x as usize, 1)).collect();
            at.dedup();
            return Step::Probe(at);
        }
        let Some(pass) = b.passing else {
            return Step::Done { outcome: Outcome::PassesNowhere, bracket: b };
        };
        let have = tally(probes).remove(&pass).unwrap_or_default().passed;
        let missing: Vec<(usize, u32)> = (1..).filter(|r| !have.contains(r)).take((self.confirm as usize).saturating_sub(have.len()).min(jobs)).map(|r| (pass, r)).collect();
        if !missing.is_empty() {
            return Step::Probe(missing);
        }
        let outcome = if b.failing.is_none() { Outcome::PassesEverywhere } else { Outcome::Found };
        Step::Done { outcome, bracket: b }
    }

    /// Probes a search with one job needs when the boundary is clean: the bisection, and the
    /// confirmations of the point found (none when the target passes nowhere).
    pub fn clean_probes(&self) -> u32 {
        let bisect = (self.points as u64 + 1).next_power_of_two().trailing_zeros();
        bisect + self.confirm.saturating_sub(1)
    }
}

/// Points that both passed and failed: where the boundary is noisy.
pub fn flaky(probes: &[Probe]) -> Vec<usize> {
    tally(probes).into_iter().filter(|(_, t)| !t.passed.is_empty() && !t.failed.is_empty()).map(|(p, _)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A fake target: passes at points at or above `threshold`, except that the probes listed in
    /// `flips` (point, repetition) give the other answer.
    #[derive(Default)]
    struct Fake {
        threshold: usize,
        flips: Vec<(usize, u32)>,
    }

    impl Fake {
        fn passes(&self, point: usize, repeat: u32) -> bool {
            (point >= self.threshold) != self.flips.contains(&(point, repeat))
        }
    }

    /// Run a search to its end; returns the outcome, the bracket, the probes in the order they
    /// ran, and the rounds (batches of probes run at once).
    fn run(s: Search, fake: &Fake, jobs: usize) -> (Outcome, Bracket, Vec<Probe>, usize) {
        let mut probes = Vec::new();
        for round in 0.. {
            assert!(round < 10_000, "the search does not end");
            match s.next(&probes, jobs) {
                Step::Done { outcome, bracket } => return (outcome, bracket, probes, round),
                Step::Probe(at) => {
                    assert!(!at.is_empty() && at.len() <= jobs, "{at:?}");
                    for (point, repeat) in at {
                        assert!(point < s.points);
                        assert!(!probes.iter().any(|p: &Probe| p.point == point && p.repeat == repeat), "({point}, {repeat}) probed twice");
                        probes.push(Probe { point, repeat, passed: fake.passes(point, repeat) });
                    }
                }
            }
        }
        unreachable!()
    }

    fn log2_ceil(x: usize) -> u32 {
        (x as u64).next_power_of_two().trailing_zeros()
    }

    #[test]
    fn a_clean_boundary_is_found_exactly_in_log2_probes_plus_the_confirmations() {
        for n in 2..=70 {
            for confirm in 1..=3 {
                let s = Search { points: n, confirm };
                for threshold in 0..=n {
                    let (outcome, b, probes, _) = run(s, &Fake { threshold, ..Fake::default() }, 1);
                    let bisect = probes.iter().filter(|p| p.repeat == 1).count() as u32;
                    assert!(bisect <= log2_ceil(n + 1), "n {n} threshold {threshold}: {bisect} bisection probes");
                    match threshold {
                        0 => assert_eq!((outcome, b), (Outcome::PassesEverywhere, Bracket { failing: None, passing: Some(0) })),
                        t if t == n => {
                            assert_eq!((outcome, b), (Outcome::PassesNowhere, Bracket { failing: Some(n - 1), passing: None }));
                            assert!(probes.iter().all(|p| p.repeat == 1), "failures are not repeated");
                        }
                        t => assert_eq!((outcome, b), (Outcome::Found, Bracket { failing: Some(t - 1), passing: Some(t) })),
                    }
                    if threshold < n {
                        // The limit's point passed `confirm` times; nothing else was repeated.
                        let at_limit = probes.iter().filter(|p| p.point == threshold).count() as u32;
                        assert_eq!(at_limit, confirm, "n {n} threshold {threshold}");
                        assert_eq!(probes.len() as u32, bisect + confirm - 1);
                        assert!(probes.len() as u32 <= s.clean_probes());
                    }
                }
            }
        }
    }

    #[test]
    fn bisection_starts_in_the_middle_and_probes_an_end_only_when_the_limit_is_there() {
        let s = Search { points: 6, confirm: 1 };
        assert_eq!(s.next(&[], 1), Step::Probe(vec![(2, 1)]));
        let p = |point, passed| Probe { point, repeat: 1, passed };
        assert_eq!(s.next(&[p(2, true)], 1), Step::Probe(vec![(0, 1)]));
        assert_eq!(s.next(&[p(2, false)], 1), Step::Probe(vec![(4, 1)]));
        // Two points: the harder one first; passing there ends it without probing the other.
        let two = Search { points: 2, confirm: 1 };
        assert_eq!(two.next(&[], 1), Step::Probe(vec![(0, 1)]));
        assert!(matches!(two.next(&[p(0, true)], 1), Step::Done { outcome: Outcome::PassesEverywhere, .. }));
        assert_eq!(two.next(&[p(0, false)], 1), Step::Probe(vec![(1, 1)]));
    }

    #[test]
    fn a_failed_confirmation_moves_the_limit_up_and_the_noisy_point_is_named() {
        // Point 5 passes once, then fails: the limit is 6, and 5 is flaky.
        let s = Search { points: 16, confirm: 3 };
        let fake = Fake { threshold: 5, flips: vec![(5, 2)] };
        let (outcome, b, probes, _) = run(s, &fake, 1);
        assert_eq!((outcome, b), (Outcome::Found, Bracket { failing: Some(5), passing: Some(6) }));
        assert_eq!(flaky(&probes), [5]);
        assert_eq!(probes.iter().filter(|p| p.point == 6).count(), 3, "the new limit is confirmed in full");
        assert_eq!(probes.iter().filter(|p| p.point == 5).map(|p| p.repeat).collect::<Vec<_>>(), [1, 2], "no more probes of a point that failed");
        // A lucky pass below the boundary (the first probe, at 7 of 16, passes once): the search
        // goes down, comes back to confirm 7, fails there, and climbs to the real limit, 9.
        let fake = Fake { threshold: 9, flips: vec![(7, 1)] };
        let (outcome, b, probes, _) = run(s, &fake, 1);
        assert_eq!((outcome, b.passing, b.failing), (Outcome::Found, Some(9), Some(8)));
        assert_eq!(flaky(&probes), [7]);
        assert_eq!(probes.iter().map(|p| p.point).collect::<Vec<_>>(), [7, 3, 5, 6, 7, 11, 9, 8, 9, 9]);
        // Noise that makes a point fail above the true limit only makes the answer higher: the
        // limit is never below a point that failed.
        let fake = Fake { threshold: 4, flips: vec![(7, 1)] };
        let (_, b, probes, _) = run(Search { points: 16, confirm: 2 }, &fake, 1);
        let highest_failure = probes.iter().filter(|p| !p.passed).map(|p| p.point).max().unwrap();
        assert!(b.passing.unwrap() > highest_failure);
    }

    #[test]
    fn passes_nowhere_after_a_lucky_pass_at_the_top() {
        let s = Search { points: 4, confirm: 2 };
        let fake = Fake { threshold: 4, flips: vec![(3, 1)] };
        let (outcome, b, probes, _) = run(s, &fake, 1);
        assert_eq!((outcome, b), (Outcome::PassesNowhere, Bracket { failing: Some(3), passing: None }));
        assert_eq!(flaky(&probes), [3]);
    }

    #[test]
    fn confirm_one_trusts_a_single_pass() {
        let s = Search { points: 8, confirm: 1 };
        let (outcome, b, probes, _) = run(s, &Fake { threshold: 3, ..Fake::default() }, 1);
        assert_eq!((outcome, b.passing), (Outcome::Found, Some(3)));
        assert!(probes.iter().all(|p| p.repeat == 1));
    }

    #[test]
    fn several_jobs_split_the_interval_and_need_fewer_rounds() {
        for n in 2..=100 {
            for jobs in 1..=4 {
                for threshold in [0, n / 3, n / 2, n - 1, n] {
                    let s = Search { points: n, confirm: 3 };
                    let (outcome, b, _, rounds) = run(s, &Fake { threshold, ..Fake::default() }, jobs);
                    let (o1, b1, _, _) = run(s, &Fake { threshold, ..Fake::default() }, 1);
                    assert_eq!((outcome, b), (o1, b1), "n {n} jobs {jobs}: the same answer as one job");
                    // (jobs + 1)-section: each round divides the interval by jobs + 1; the two
                    // confirmations left run at once with two jobs or more.
                    let mut sections = 0;
                    let mut width = n + 1;
                    while width > 1 {
                        width = width.div_ceil(jobs + 1);
                        sections += 1;
                    }
                    let confirm_rounds = if threshold == n { 0 } else { 2usize.div_ceil(jobs) };
                    assert!(rounds <= sections + confirm_rounds, "n {n} jobs {jobs} threshold {threshold}: {rounds} rounds > {sections} + {confirm_rounds}");
                }
            }
        }
        let s = Search { points: 9, confirm: 2 };
        assert_eq!(s.next(&[], 2), Step::Probe(vec![(2, 1), (5, 1)]));
        assert_eq!(s.next(&[], 20), Step::Probe((0..9).map(|p| (p, 1)).collect()), "more jobs than points: every point once");
    }

    #[test]
    fn a_resumed_search_decides_as_an_uninterrupted_one_from_any_prefix_in_any_order() {
        let s = Search { points: 40, confirm: 3 };
        let fake = Fake { threshold: 17, flips: vec![(17, 2), (25, 1)] };
        let (_, _, all, _) = run(s, &fake, 1);
        for cut in 0..all.len() {
            let mut done = all[..cut].to_vec();
            let expected = s.next(&done, 1);
            done.reverse();
            assert_eq!(s.next(&done, 1), expected, "order does not matter (cut {cut})");
            // The same probe read twice changes nothing.
            if let Some(first) = done.last().copied() {
                done.push(first);
                assert_eq!(s.next(&done, 1), expected, "a probe read twice (cut {cut})");
            }
            // Finishing from the prefix gives the same end as never stopping.
            let mut rest = all[..cut].to_vec();
            loop {
                match s.next(&rest, 1) {
                    Step::Done { outcome, bracket } => {
                        assert_eq!((outcome, bracket), (Outcome::Found, Bracket { failing: Some(17), passing: Some(18) }));
                        break;
                    }
                    Step::Probe(at) => {
                        for (point, repeat) in at {
                            rest.push(Probe { point, repeat, passed: fake.passes(point, repeat) })
                        }
                    }
                }
            }
            assert_eq!(rest, all, "cut {cut}: the same probes in the same order");
        }
    }

    #[test]
    fn confirmations_missing_after_an_interruption_are_the_ones_asked_for() {
        // Repetition 2 of the limit's point was interrupted (not finished), 3 finished.
        let s = Search { points: 4, confirm: 3 };
        let p = |point, repeat, passed| Probe { point, repeat, passed };
        let done = [p(1, 1, false), p(2, 1, true), p(2, 3, true)];
        assert_eq!(s.next(&done, 1), Step::Probe(vec![(2, 2)]));
        assert_eq!(s.next(&done, 4), Step::Probe(vec![(2, 2)]), "only what is missing, whatever the jobs");
        assert_eq!(s.next(&done[..2], 4), Step::Probe(vec![(2, 2), (2, 3)]));
        // A larger --confirm after a finished search asks for the extra probes only.
        let done = [p(1, 1, false), p(2, 1, true), p(2, 2, true)];
        assert!(matches!(Search { confirm: 2, ..s }.next(&done, 1), Step::Done { outcome: Outcome::Found, .. }));
        assert_eq!(Search { confirm: 4, ..s }.next(&done, 1), Step::Probe(vec![(2, 3)]));
    }

    #[test]
    fn clean_probe_counts() {
        assert_eq!(Search { points: 249, confirm: 2 }.clean_probes(), 8 + 1);
        assert_eq!(Search { points: 6, confirm: 1 }.clean_probes(), 3);
        assert_eq!(Search { points: 2, confirm: 1 }.clean_probes(), 2);
    }

    proptest::proptest! {
        /// Whatever the target answers (noise anywhere, at any rate), the search ends within n ×
        /// confirm probes, and what it reports holds: the limit's point passed `confirm` times
        /// and never failed, the point below it failed, and no failure is above the limit.
        #[test]
        fn any_answers_end_in_a_consistent_finding(n in 2usize..60, confirm in 1u32..4, jobs in 1usize..4, seed in proptest::prelude::any::<u64>(), noise in 0u32..50) {
            let s = Search { points: n, confirm };
            let threshold = (seed % (n as u64 + 1)) as usize;
            let mut rng = seed;
            let mut answers: HashMap<(usize, u32), bool> = HashMap::new();
            let mut probes: Vec<Probe> = Vec::new();
            let (outcome, b) = loop {
                proptest::prop_assert!(probes.len() <= n * confirm as usize + jobs);
                match s.next(&probes, jobs) {
                    Step::Done { outcome, bracket } => break (outcome, bracket),
                    Step::Probe(at) => for (point, repeat) in at {
                        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        let flip = ((rng >> 33) % 100) < noise as u64;
                        let passed = *answers.entry((point, repeat)).or_insert((point >= threshold) != flip);
                        probes.push(Probe { point, repeat, passed });
                    },
                }
            };
            let t = tally(&probes);
            match outcome {
                Outcome::PassesNowhere => proptest::prop_assert_eq!(b.failing, Some(n - 1)),
                Outcome::PassesEverywhere | Outcome::Found => {
                    let at = b.passing.unwrap();
                    proptest::prop_assert!(t[&at].failed.is_empty() && t[&at].passed.len() as u32 >= confirm);
                    proptest::prop_assert_eq!(outcome == Outcome::PassesEverywhere, at == 0);
                    if at > 0 {
                        proptest::prop_assert!(!t[&(at - 1)].failed.is_empty());
                    }
                    proptest::prop_assert!(probes.iter().all(|p| p.passed || p.point < at));
                }
            }
        }
    }
}
