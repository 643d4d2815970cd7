//! appnet's Web server: a static-site server on hyper (HTTP/1.0 and 1.1) and h2 (HTTP/2 with
//! server push), with TLS, virtual hosts, conditional and range requests, uploads, the textbook's
//! cookie cart, limits against abusive clients, an access log and counters; and a small client.
//!
//! - [`files`]: the reusable file-serving core (pure path/conditional/range/encoding logic and
//!   the file store) that the caching proxy builds on.
//! - [`site`]: the [`site::Router`] shared by both protocol drivers.
//! - [`http1_guard`]: the pure HTTP/1 request-head and framing checks, shared by the server
//!   and the proxy; [`http1_conn`]: the server's HTTP/1 connection wrapper running them (and
//!   the timers) in front of hyper; [`http1_fast`] (with the pure [`http1_head`] and the
//!   per-connection [`http1_cache`]): the server's own HTTP/1.1 loop for plain GET and HEAD,
//!   which hands anything else to hyper, writing with [`http1_send`] (`sendfile` on plain TCP);
//!   [`h2_frames`]: the RFC 9113 frame checker in front of h2.
//! - [`server`] / [`h2srv`]: the tokio drivers; [`h3`]: HTTP/3 over QUIC (server and client). [`client`]: `appnet web get`.
//! - [`config`], [`tls`] (files or the lab CA), [`tls_client`] (trust for outgoing TLS),
//!   [`stats`] (counters, access log), [`apps`], [`push`].

pub mod apps;
pub mod body;
pub mod cdn;
pub mod client;
pub mod config;
pub mod conn_activity;
pub mod files;
pub mod h2_frames;
pub mod h2core;
pub mod h2serve;
pub mod h2srv;
pub mod h3;
pub mod http1_cache;
pub mod http1_conn;
pub mod http1_fast;
pub mod http1_guard;
pub mod http1_head;
pub mod http1_send;
pub mod http1_watch;
pub mod proxy;
pub mod push;
pub mod server;
pub mod site;
pub mod stats;
pub mod tls;
pub mod tls_client;

pub use config::WebConfig;
pub use server::WebServer;
