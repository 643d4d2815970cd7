//! The lab: the textbook's Internet on one machine. One topology description generates the DNS
//! hierarchy (root, TLD and authoritative servers with the textbook's names, a primary and a
//! secondary) and the local resolvers, all real services on their own 127.x addresses; the tour
//! walks through the textbook's DNS scenes against them.
//!
//! - [`topology`]: the TOML description (embedded default in `lab.toml`).
//! - [`zones`]: zone files generated from it.
//! - [`cdn`]: the CDN's DNS and its replica caches.
//! - [`sites`]: the web servers' generated content.
//! - [`netns`]: anycast with network namespaces (`--netns`); [`push_scene`]: CDN push.
//! - [`nat_lab`]: NATs in network namespaces (`--nat`) and scene 16, a call relayed through them.
//! - [`run`]: starting, stopping and listing the services; [`error`]: why starting failed.
//! - [`experiment`]: `appnet experiment`'s runs and the shared SVG plotting.
//! - [`events`]: the bus every exchange travels on; [`ui`]: the page that draws them.
//! - [`tour`]: the guided scenes; [`http_scene`]: the Web scene's fetching; [`chord_scene`]:
//!   the 4-bit Chord ring; [`torrent_scene`]: Alice joining a torrent; [`ftp_scene`]: FTP's
//!   control and data connections ([`ftp_site`]: the anonymous FTP tree); [`overlay_scene`]:
//!   "Hey Jude" found by Napster, flooding and ultrapeers ([`overlay_lab`]: its peers);
//!   [`registrar_scene`]: the registrar inserting networkutopia.com; [`dnssec_scene`]: a forged
//!   answer rejected and the chain of trust ([`signing`]: the lab's keys and root anchor).

pub mod cdn;
pub mod chord_scene;
pub mod dnssec_scene;
pub mod error;
pub mod events;
pub mod experiment;
pub mod ftp_scene;
pub mod ftp_site;
pub mod http_scene;
pub mod lb_scene;
pub mod link_scene;
pub mod mail_scene;
pub mod nat_lab;
pub mod netns;
pub mod overlay_lab;
pub mod overlay_scene;
pub mod push_scene;
pub mod registrar_scene;
pub mod run;
pub mod signing;
pub mod sip_scene;
pub mod sites;
pub mod topology;
pub mod torrent_scene;
pub mod tour;
pub mod ui;
pub mod zones;

pub use error::LabError;
pub use run::Lab;
pub use topology::Topology;
