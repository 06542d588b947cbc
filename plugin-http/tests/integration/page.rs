//! Tests of the page area.
