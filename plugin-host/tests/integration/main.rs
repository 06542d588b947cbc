//! plugin-host's integration tests, through the public API only: one test binary, a module
//! per area.

mod hostile;
mod hostile_files;
mod lifecycle;
mod load;
mod logging;
mod private_copy;
mod state_file;
mod util;
mod watch;
