//! The matrix: many cells, unattended. `expand` turns lists into cells (pure), `state` reads what
//! a run directory already holds (resume), `lock` keeps two perfvm processes off one run, and
//! `schedule` decides how many cells run at once within the host's memory; `adaptive` decides
//! how many repetitions a cell gets under `--target-rsd`.

pub mod adaptive;
pub mod expand;
pub mod lock;
pub mod schedule;
pub mod state;
