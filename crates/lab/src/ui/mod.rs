//! `appnet lab --ui`: one page, every asset embedded, that draws the lab's hosts as a map and
//! every exchange on the [event bus](crate::events) as a live message-sequence chart (SSE).
//!
//! - [`page`]: the map's data (hosts by role and network) and the embedded assets.
//! - [`commands`]: running what the page asked for against the lab.
//! - [`server`]: the minimal HTTP/1.1 responder (GET the page, the map, the event stream; POST
//!   a scene or a lookup, which the lab's owner runs through [`Command`]s).

pub mod commands;
pub mod page;
pub mod server;

pub use server::{Command, UiConfig, serve};
