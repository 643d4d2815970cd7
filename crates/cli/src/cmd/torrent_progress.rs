//! A terminal progress bar for a running torrent: bytes done, rate, peers and ETA (indicatif).

use appnet_torrent::session::TorrentHandle;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use std::time::Duration;

/// Draws the bar until the download completes or the session stops; returns at completion.
pub async fn show(h: &TorrentHandle) {
    let total = h.metainfo().info.total_length();
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    loop {
        let p = h.progress();
        bar.set_position(p.total - p.left);
        let eta = if p.down_rate > 1.0 {
            format!("{}s", (p.left as f64 / p.down_rate).ceil() as u64)
        } else {
            "?".into()
        };
        bar.set_message(format!(
            "↓{}/s ↑{}/s {} peers ETA {eta}",
            HumanBytes(p.down_rate as u64),
            HumanBytes(p.up_rate as u64),
            p.peers
        ));
        if h.is_complete() || h.is_stopping() {
            break;
        }
        tokio::select! {
            _ = h.wait_complete() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
    }
    let p = h.progress();
    bar.set_position(p.total - p.left);
    bar.finish_with_message(format!("↓{} ↑{}", HumanBytes(p.downloaded), HumanBytes(p.uploaded)));
}
