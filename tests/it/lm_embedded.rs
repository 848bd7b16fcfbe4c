//! Tests for the lm_embedded area.
