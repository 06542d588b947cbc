//! plugin-http's integration tests, over real sockets on 127.0.0.1: one test binary, a
//! module per area.

mod api;
mod hardening;
mod metrics;
mod page;
mod routes;
mod util;
