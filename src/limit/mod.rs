//! `perfvm limit`: the breaking point. Instead of a grid that answers "how much memory does this
//! server need for a 1G upload?" only to its spacing, search for the boundary itself: the
//! smallest guest RAM at which the target passes a verified cell, or the largest file it passes
//! at a given RAM.
//!
//! `spec` checks the question, its range and resolution, and lays out the points that can be
//! probed; `search` is the pure state machine that picks the next probes from the finished ones
//! and knows when the limit is found (bisection, with confirmations at the boundary); `evidence`
//! turns the probes into limit.json and the summary; `run` drives it with the matrix's machinery:
//! every probe is an ordinary cell of a run directory that resumes and locks like a matrix's.
//! Imports point one way: limit uses matrix, plan, results, rundir, report; nothing uses limit
//! but the CLI.

pub mod evidence;
pub mod run;
pub mod search;
pub mod spec;
