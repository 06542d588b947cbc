//! Tests of the api area.
