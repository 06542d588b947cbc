//! A server on 127.0.0.1 for each test.

#![allow(dead_code)]

pub(crate) use plugin_test_support::fixtures;
