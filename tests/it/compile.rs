//! Tests for the compile area.
