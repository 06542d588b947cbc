//! Tests of the install area.
