//! plugin-host's integration tests, through the public API only: one test binary, a module
//! per area.

mod lifecycle;
mod load;
mod state_file;
mod util;
mod watch;
