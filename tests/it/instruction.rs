//! Tests for the instruction area.
