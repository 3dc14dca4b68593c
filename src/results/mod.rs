//! What a cell produces: the result model and where it is written.

pub mod model;
pub mod store;
