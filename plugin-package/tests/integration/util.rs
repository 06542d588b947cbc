//! Helpers shared by the tests.

#![allow(dead_code)]

pub use plugin_test_support::fixtures;
