//! Tests of the archive area.
