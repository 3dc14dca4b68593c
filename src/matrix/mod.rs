//! The matrix: many cells, unattended. `state` reads what a run directory already holds
//! (resume), `lock` keeps two perfvm processes off one run, and `schedule` decides how many cells
//! run at once within the host's memory. What the cells are is `plan`'s.

pub mod lock;
pub mod schedule;
pub mod state;
