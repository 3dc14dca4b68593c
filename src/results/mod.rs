//! What cells produce: the result model, where it is written, and the matrix exports.

pub mod compare;
pub mod export;
pub mod model;
pub mod snapshot;
pub mod store;
