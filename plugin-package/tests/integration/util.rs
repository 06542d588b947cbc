//! Helpers shared by the tests.

#![allow(dead_code)]

pub(crate) use plugin_test_support::fixtures;
