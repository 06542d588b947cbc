//! Tests of the sign area.
