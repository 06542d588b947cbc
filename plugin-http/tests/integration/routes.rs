//! Tests of the routes area.
