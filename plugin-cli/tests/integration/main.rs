//! plugctl's integration tests: the binary run as a process, and README.md's examples
//! built outside the workspace.

mod cli;
mod package;
mod readme;
mod serve;
