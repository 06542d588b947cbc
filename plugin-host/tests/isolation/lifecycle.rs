//! Load, unload, upgrade and shutdown in process mode.

pub(crate) const TESTS: &[(&str, fn())] = &[];
