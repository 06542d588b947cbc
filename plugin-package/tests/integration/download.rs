//! Tests of the download area.
