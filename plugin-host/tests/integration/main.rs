//! plugin-host's integration tests, through the public API only: one test binary, a module
//! per area.

mod guards;
mod hostile;
mod hostile_files;
mod lifecycle;
mod load;
mod logging;
mod state_file;
mod util;
mod watch;
