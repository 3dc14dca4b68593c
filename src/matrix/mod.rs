//! The matrix: many cells, unattended. `scheduler` decides which cell runs next, on which host,
//! and what a finished attempt means (retry, move, stop, one more repetition), through a
//! `CellRunner`; `schedule` is the memory budget it keeps; `run` strings a matrix run together
//! (set-up, the run directory, resume, exports, history, report). What the cells are is
//! `plan`'s; where results live is `rundir`'s.

pub mod run;
pub mod schedule;
pub mod scheduler;
