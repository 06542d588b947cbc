//! plugctl's integration tests: the binary run as a process, and README.md's examples
//! built outside the workspace.

mod cli;
#[cfg(target_os = "linux")]
mod isolation;
mod package;
mod readme;
mod serve;
