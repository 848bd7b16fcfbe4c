//! Tests for the lm_http area.
