//! One module per service family: its clap subcommands and how they start services.

pub mod chord;
pub mod dns;
pub mod dnssec;
pub mod experiment;
pub mod ftp;
pub mod ftp_client;
pub mod gnutella;
pub mod lab;
pub mod lb;
pub mod link;
pub mod mail;
pub mod mail_fetch;
pub mod napster;
pub mod nat;
pub mod proxy;
pub mod resolver;
pub mod sip;
pub mod sip_ua;
pub mod skype;
pub mod torrent;
pub mod torrent_progress;
pub mod upper;
pub mod web;

/// Puts a flag's value over a config field: every service's `XOptions::apply` is built from
/// this, so "a flag given overrides the config file, a flag left out keeps it" holds everywhere.
pub fn set<T>(field: &mut T, flag: Option<T>) {
    if let Some(v) = flag {
        *field = v;
    }
}
