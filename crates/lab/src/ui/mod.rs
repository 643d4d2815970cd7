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

/// Waits until a page is attached to the event bus (its event stream is open), at most
/// `limit`: `lab --tour --ui` starts the tour once someone watches, so the page draws it from
/// the first exchange. Returns whether a page came.
pub async fn wait_for_page(limit: std::time::Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !crate::events::bus().active() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    true
}
