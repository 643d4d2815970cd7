//! Unstructured P2P: a Napster directory, Gnutella 0.6 query flooding and ultrapeers (KaZaA-style group leaders).

pub mod gnutella;
pub mod http;
pub mod index;
pub mod napster;
pub mod sim;
