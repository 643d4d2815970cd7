//! A layer-4 TCP/UDP load balancer: one address, many replicas, Maglev consistent hashing.
