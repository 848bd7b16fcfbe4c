//! Tests for the metric area.
