//! perfvm's exit codes and what each means, in one place: `main` maps outcomes and errors to
//! them, and `perfvm --help` shows the table. Infrastructure failures (69, EX_UNAVAILABLE as in
//! vmtest) are kept apart from the target's failures (1), so a CI gate can tell "the server got
//! worse" from "the machine could not measure".

use crate::results::model::CellResult;

pub const SUCCESS: i32 = 0;
/// The cells ran and a target failed (OOM, crash, HTTP error, verify, timeout during the upload).
pub const CELL_FAILED: i32 = 1;
/// Bad input; nothing was started.
pub const BAD_INPUT: i32 = 2;
/// The harness or the host failed (libvirt, boot, guest agent), or cells were left unrun.
pub const INFRASTRUCTURE: i32 = 69;
/// SIGINT or SIGTERM: running cells were torn down, finished ones kept.
pub const INTERRUPTED: i32 = 130;

/// Every code with its meaning, for `--help` and docs/cli.md.
pub const TABLE: [(i32, &str); 5] = [
    (SUCCESS, "every cell passed (or the command did what it was asked)"),
    (CELL_FAILED, "a target failed: OOM kill, crash, HTTP error, sha256 mismatch, timeout during the upload; or compare found a regression"),
    (BAD_INPUT, "bad input (a flag, a file, a profile); nothing was started"),
    (INFRASTRUCTURE, "the harness or the host failed (libvirt, boot, guest agent), or cells could not run"),
    (INTERRUPTED, "interrupted by SIGINT/SIGTERM; finished cells are kept, the same command resumes"),
];

/// The table as `--help` shows it.
pub fn help() -> String {
    let mut s = String::from("Exit codes:\n");
    for (code, what) in TABLE {
        s.push_str(&format!("  {code:>3}  {what}\n"));
    }
    s
}

/// The exit code of one finished cell.
pub fn for_cell(r: &CellResult, interrupted: bool) -> i32 {
    if interrupted {
        INTERRUPTED
    } else if r.success {
        SUCCESS
    } else if r.exit_reason.is_infrastructure() {
        INFRASTRUCTURE
    } else {
        CELL_FAILED
    }
}

/// The exit code of a matrix: every planned cell passed; or some failed, and only the
/// harness's failures (infrastructure) with every cell finished; or a target failed or cells are
/// left unrun.
pub fn for_matrix(finals: &[&CellResult], planned: usize, interrupted: bool) -> i32 {
    let unfinished = planned.saturating_sub(finals.len());
    if interrupted {
        INTERRUPTED
    } else if unfinished == 0 && finals.iter().all(|r| r.success) {
        SUCCESS
    } else if unfinished == 0 && finals.iter().all(|r| r.success || r.exit_reason.is_infrastructure()) {
        INFRASTRUCTURE
    } else {
        CELL_FAILED
    }
}

/// The exit code of an error that ended a command.
pub fn for_error(e: &anyhow::Error) -> i32 {
    if e.downcast_ref::<crate::error::InputError>().is_some() { BAD_INPUT } else { INFRASTRUCTURE }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::model::ExitReason;

    #[test]
    fn codes_for_cells_and_errors() {
        let mut r: CellResult = serde_json::from_str(include_str!("../tests/data/result-sample.json")).unwrap();
        r.success = true;
        r.exit_reason = ExitReason::Success;
        assert_eq!(for_cell(&r, false), SUCCESS);
        r.success = false;
        r.exit_reason = ExitReason::OomKilled;
        assert_eq!(for_cell(&r, false), CELL_FAILED);
        r.exit_reason = ExitReason::BootFailed;
        assert_eq!(for_cell(&r, false), INFRASTRUCTURE);
        assert_eq!(for_cell(&r, true), INTERRUPTED);
        assert_eq!(for_error(&crate::error::InputError("x".into()).into()), BAD_INPUT);
        let mut ok = r.clone();
        (ok.success, ok.exit_reason) = (true, ExitReason::Success);
        assert_eq!(for_matrix(&[&ok, &ok], 2, false), SUCCESS);
        assert_eq!(for_matrix(&[&ok], 2, false), CELL_FAILED, "a cell left unrun");
        assert_eq!(for_matrix(&[&ok, &r], 2, false), INFRASTRUCTURE, "only the harness failed");
        let mut oom = r.clone();
        oom.exit_reason = ExitReason::OomKilled;
        assert_eq!(for_matrix(&[&oom, &r], 2, false), CELL_FAILED);
        assert_eq!(for_matrix(&[&ok], 2, true), INTERRUPTED);
        assert_eq!(for_error(&anyhow::anyhow!("libvirt")), INFRASTRUCTURE);
    }

    #[test]
    fn help_lists_every_code_once() {
        let h = help();
        for (code, _) in TABLE {
            assert_eq!(h.matches(&format!("  {code:>3}  ")).count(), 1, "{h}");
        }
    }
}
