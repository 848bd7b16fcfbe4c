//! Tests for the adapter area.
