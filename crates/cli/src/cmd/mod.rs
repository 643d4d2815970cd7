//! One module per service family: its clap subcommands and how they start services.

pub mod chord;
pub mod dns;
pub mod experiment;
pub mod lab;
pub mod proxy;
pub mod resolver;
pub mod torrent;
pub mod torrent_progress;
pub mod upper;
pub mod web;
