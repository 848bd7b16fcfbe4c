//! Tests for the tools area.
