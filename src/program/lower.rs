//! Lowering: the spec tree → a validated [`crate::program::Program`]. (being built)
