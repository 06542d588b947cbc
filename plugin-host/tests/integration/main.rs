//! plugin-host's integration tests, through the public API only: one test binary, a module
//! per area.

#[cfg(feature = "tokio")]
mod asynch;
#[cfg(unix)]
mod check;
mod context;
mod guards;
mod hostile;
mod hostile_files;
mod lifecycle;
mod load;
mod logging;
#[cfg(unix)]
mod permissions;
mod private_copy;
mod reported_identity;
mod state_file;
mod typed;
mod util;
mod watch;
