//! What a run is, before anything runs: its cells (`key`, `expand`), the definition that names
//! it (`definition`), and how many repetitions a cell gets under `--target-rsd` (`repeats`).
//! Pure data and functions; nothing here knows about results on disk or libvirt.

pub mod definition;
pub mod estimate;
pub mod expand;
pub mod key;
pub mod repeats;
