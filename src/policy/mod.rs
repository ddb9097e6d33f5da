//! The policy engine, pure: compile a spec, classify each handle, plan the closes.
//!
//! No IO, no clock reads, no randomness: the sweep passes in the time and the facts, so every
//! decision can be reproduced and tested.

mod classify;
mod compile;
mod facts;
mod plan;

pub use classify::{Facts, Keep, Reason, Verdict, classify, in_scope, is_protected};
pub use compile::{
    Limits, MIN_INTERVAL, Policy, Rules, ShareCredentials, ShareScope, compile, is_within,
    normalize_path,
};
pub use facts::{ClusterFacts, OrphanLedger, client_key};
pub use plan::{
    ClosePlan, Condemned, Disposition, GuardStat, SkipCause, ValveTrip, Wildcard, plan,
};
