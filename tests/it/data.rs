//! Tests for the data area.
