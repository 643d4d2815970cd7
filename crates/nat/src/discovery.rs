//! NAT behaviour discovery in the spirit of RFC 5780: with a server that has two addresses,
//! Binding requests to three of its transport addresses tell how the NAT maps (§4.3), and
//! CHANGE-REQUESTs on a fresh mapping tell how it filters (§4.4). The classification is pure;
//! [`discover`] drives it over UDP.

use crate::client::{BindingResult, binding_on, binding_with};
use crate::stun::Attr;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::UdpSocket;

/// How the NAT picks the external address for an internal one (RFC 4787 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// The same external address whatever the destination: hole punching works.
    EndpointIndependent,
    /// A new external address per destination IP.
    AddressDependent,
    /// A new external address per destination IP and port (a "symmetric" NAT).
    AddressAndPortDependent,
}

/// Which outside sources the NAT lets in through a mapping (RFC 4787 §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    /// Anyone, once the mapping exists.
    EndpointIndependent,
    /// Only IPs the inside host has sent to.
    AddressDependent,
    /// Only IP:port pairs the inside host has sent to.
    AddressAndPortDependent,
}

impl fmt::Display for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mapping::EndpointIndependent => "endpoint-independent",
            Mapping::AddressDependent => "address-dependent",
            Mapping::AddressAndPortDependent => "address-and-port-dependent",
        })
    }
}

impl fmt::Display for Filtering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Filtering::EndpointIndependent => "endpoint-independent",
            Filtering::AddressDependent => "address-dependent",
            Filtering::AddressAndPortDependent => "address-and-port-dependent",
        })
    }
}

/// RFC 5780 §4.3: the mapped addresses seen by the primary address (A1:P1), the alternate IP
/// with the primary port (A2:P1) and the alternate address (A2:P2).
pub fn classify_mapping(primary: SocketAddr, alt_ip: SocketAddr, alt_both: SocketAddr) -> Mapping {
    if alt_ip == primary {
        Mapping::EndpointIndependent
    } else if alt_both == alt_ip {
        Mapping::AddressDependent
    } else {
        Mapping::AddressAndPortDependent
    }
}

/// RFC 5780 §4.4: whether an answer came back from the other IP and port, and from the other
/// port only, on a mapping that has only ever sent to the primary address.
pub fn classify_filtering(answered_other_ip_and_port: bool, answered_other_port: bool) -> Filtering {
    if answered_other_ip_and_port {
        Filtering::EndpointIndependent
    } else if answered_other_port {
        Filtering::AddressDependent
    } else {
        Filtering::AddressAndPortDependent
    }
}

/// What discovery found.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// The first Binding's answer (the server-reflexive address and the server's other address).
    pub first: BindingResult,
    /// Whether the mapped address differs from the local one (a NAT is in the way).
    pub nat: bool,
    /// The mapping behaviour, when the server has a second address.
    pub mapping: Option<Mapping>,
    /// The filtering behaviour, when the server has a second address and honours CHANGE-REQUEST.
    pub filtering: Option<Filtering>,
}

/// Runs the mapping and filtering tests against `server`. `timeout` bounds the first Binding;
/// the filtering tests wait at most `probe` for an answer that may never come.
pub async fn discover(server: SocketAddr, timeout: Duration, probe: Duration) -> std::io::Result<Behaviour> {
    let bind: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
    let socket = UdpSocket::bind(bind).await?;
    let first = binding_on(&socket, server, timeout).await?;
    let local_port = first.local.port();
    let nat = first.mapped.port() != local_port
        || !(first.local.ip().is_unspecified() || first.local.ip() == first.mapped.ip());
    let Some(other) = first.other.filter(|o| o.ip() != server.ip() && o.port() != server.port()) else {
        return Ok(Behaviour { first, nat, mapping: None, filtering: None });
    };
    let alt_ip = binding_on(&socket, SocketAddr::new(other.ip(), server.port()), timeout).await?;
    let mapping = if alt_ip.mapped == first.mapped {
        Mapping::EndpointIndependent
    } else {
        let both = binding_on(&socket, other, timeout).await?;
        classify_mapping(first.mapped, alt_ip.mapped, both.mapped)
    };
    // A fresh socket: its mapping has only sent to the primary address.
    let fresh = UdpSocket::bind(bind).await?;
    binding_on(&fresh, server, timeout).await?;
    let change = |ip, port| vec![Attr::ChangeRequest { ip, port }];
    let both = binding_with(&fresh, server, change(true, true), probe).await.ok();
    let port_only = match &both {
        Some(_) => None,
        None => binding_with(&fresh, server, change(false, true), probe).await.ok(),
    };
    // An answer from the primary address itself means the server ignored CHANGE-REQUEST.
    let honoured = |r: &Option<BindingResult>| r.as_ref().map(|r| r.from != server);
    let filtering = match (honoured(&both), honoured(&port_only)) {
        (Some(false), _) | (_, Some(false)) => None,
        (b, p) => Some(classify_filtering(b.is_some(), p.is_some())),
    };
    Ok(Behaviour { first, nat, mapping: Some(mapping), filtering })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn mapping_tests_follow_rfc_5780() {
        let m = a("198.51.100.1:4000");
        assert_eq!(classify_mapping(m, m, m), Mapping::EndpointIndependent);
        assert_eq!(
            classify_mapping(m, a("198.51.100.1:4001"), a("198.51.100.1:4001")),
            Mapping::AddressDependent
        );
        assert_eq!(
            classify_mapping(m, a("198.51.100.1:4001"), a("198.51.100.1:4002")),
            Mapping::AddressAndPortDependent
        );
    }

    #[test]
    fn filtering_tests_follow_rfc_5780() {
        assert_eq!(classify_filtering(true, false), Filtering::EndpointIndependent);
        assert_eq!(classify_filtering(false, true), Filtering::AddressDependent);
        assert_eq!(classify_filtering(false, false), Filtering::AddressAndPortDependent);
    }
}
