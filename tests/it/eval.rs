//! Tests for the eval area.
