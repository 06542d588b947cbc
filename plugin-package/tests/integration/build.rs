//! Tests of the build area.
