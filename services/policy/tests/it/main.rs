//! The policy crate's integration binary: the behaviour table, and the properties of the
//! rewritten plans that one run of a case cannot show.

mod behaviour;
mod measures;
mod noise;
