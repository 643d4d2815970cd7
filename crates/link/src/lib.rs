//! `appnet link`: a packet-level link emulator, because these kernels have no netem qdisc.
//!
//! Two network namespaces (`NAME-a`, `NAME-b`) each get a TUN device; one thread moves every IP
//! packet from one TUN to the other through a [`core::Pipe`] per direction that applies delay,
//! jitter, random and bursty (Gilbert–Elliott) loss, a token-bucket rate with a drop-tail queue,
//! and optional reordering. Kernel TCP on both sides sees real loss and real queues.
//!
//! Rooms: [`spec`] (the settings and their text form, shared by CLI flags, TOML and the lab),
//! [`core`] (the sans-IO impairment pipe: packet in with `now`, releases out), [`tun`] (the
//! device), [`netns`] (namespaces: create, enter, remove), [`emulator`] (the thread that drives
//! the two pipes and owns everything it created).

pub mod core;
pub mod emulator;
pub mod error;
pub mod netns;
pub mod spec;
pub mod tun;

pub use emulator::{Link, LinkStats};
pub use error::LinkError;
pub use spec::{Impairment, LinkSpec};
