//! What cells produce: the result model, the matrix exports, comparisons and snapshots. Where
//! results live on disk is `rundir`'s.

pub mod compare;
pub mod export;
pub mod model;
pub mod snapshot;
