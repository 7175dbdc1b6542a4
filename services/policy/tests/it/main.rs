//! The policy crate's integration binary: the behaviour table.

mod behaviour;
