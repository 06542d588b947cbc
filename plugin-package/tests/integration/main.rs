//! plugin-package's integration tests, through the public API and `plugctl` as a process:
//! one test binary, a module per area.

mod archive;
mod build;
mod download;
mod install;
mod server;
mod sign;
mod util;
