//! The proxy: the downstream listener (plain HTTP/1.1 and h2c, or TLS with
//! ALPN), connection limits and timeouts, graceful shutdown, and the
//! pooled upstream clients. It hands each request to the pipeline.

pub mod config;
pub mod server;
pub mod tls;
pub mod upstream;
