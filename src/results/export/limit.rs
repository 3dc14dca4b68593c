//! `limit.json`: what a limit search (`perfvm limit`) found and the evidence for it, rewritten
//! after every probe. The probes themselves are ordinary cells of the run (results.json,
//! matrix.csv); this document says what they mean together. Plain data: the search builds it, the
//! report reads it.

use crate::results::model::ExitReason;

/// Which value the search varied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Searched {
    /// Guest RAM (MiB), for a fixed file size: the smallest that passes.
    Ram,
    /// File size (bytes), at a fixed RAM: the largest that passes.
    FileSize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitOutcome {
    /// Not finished (running, or interrupted: the same command resumes it); `passing` and
    /// `failing` bracket the limit so far.
    Searching,
    /// The limit is `passing`; `failing`, the next point, failed.
    Found,
    /// Passed at the hardest end of the range: the limit is there or beyond it.
    PassesEverywhere,
    /// Failed at the easiest end of the range: the limit is beyond it.
    PassesNowhere,
}

impl LimitOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitOutcome::Searching => "searching",
            LimitOutcome::Found => "found",
            LimitOutcome::PassesEverywhere => "passes everywhere in the range",
            LimitOutcome::PassesNowhere => "passes nowhere in the range",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LimitDoc {
    pub run_key: String,
    pub searched: Searched,
    /// The question, in words.
    pub question: String,
    pub target: String,
    pub target_mode: String,
    /// The fixed side: the file size of a RAM search, the RAM of a file size search.
    pub ram_mb: Option<u64>,
    pub file_size: Option<String>,
    pub concurrency: u32,
    /// The range searched, both ends included: MiB (RAM) or bytes (file size).
    pub range_low: u64,
    pub range_high: u64,
    /// `128..4096 MiB`, `16M..8G`.
    pub range: String,
    /// `16 MiB`, `5%`.
    pub resolution: String,
    /// Points of the range that could be probed.
    pub points: usize,
    /// Probes of the limit's point that must all pass.
    pub confirm: u32,
    pub outcome: LimitOutcome,
    /// The answer in one line.
    pub message: String,
    /// The smallest RAM (MiB) or the largest file (bytes) at which every probe passed: the limit
    /// (with `passes_everywhere`, the range's end, and the true limit may lie beyond it).
    pub limit: Option<u64>,
    pub limit_label: Option<String>,
    /// The limit's point (or, while searching, the nearest point known to pass)...
    pub passing: Option<Point>,
    /// ...and the point next to it that failed (while searching, the nearest known to fail).
    pub failing: Option<Point>,
    /// Points that both passed and failed: the boundary is noisy there.
    pub flaky: Vec<Point>,
    /// Every finished probe, in the order they ran.
    pub probes: Vec<ProbeRow>,
    /// Seconds the probes' cells took, retried attempts included (time between sessions of a
    /// resumed search is not counted).
    pub probe_seconds: f64,
}

/// One point of the range and what its probes found.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    /// MiB (RAM) or bytes (file size), and as people read it.
    pub value: u64,
    pub label: String,
    pub ram_mb: u64,
    pub file_size: String,
    pub file_size_bytes: u64,
    pub probes: u32,
    pub passed: u32,
    /// Over its passed probes, the highest: the target's peak working set and the cgroup's
    /// memory.peak (MiB).
    pub peak_memory_mb: Option<f64>,
    pub cgroup_peak_mb: Option<f64>,
    /// How each probe that failed, failed.
    pub failures: Vec<ProbeFailure>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProbeFailure {
    pub repeat: u32,
    pub exit_reason: ExitReason,
    pub error: Option<String>,
    pub peak_memory_mb: Option<f64>,
    pub result_file: String,
}

/// A probe as it ran: the final attempt of one cell.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ProbeRow {
    /// The searched value (MiB or bytes) and its label.
    pub value: u64,
    pub label: String,
    pub repeat: u32,
    pub attempt: u32,
    pub passed: bool,
    pub exit_reason: ExitReason,
    pub peak_memory_mb: Option<f64>,
    pub cgroup_peak_mb: Option<f64>,
    pub result_file: String,
}

/// The document as written.
pub fn render(doc: &LimitDoc) -> Vec<u8> {
    let mut v = serde_json::to_vec_pretty(doc).expect("serialize limit.json");
    v.push(b'\n');
    v
}
