//! The Chord client: one RPC over TCP with a timeout, and the client-side operations built on
//! it (iterative lookup with hop counting, put, get with fallback to replicas, delete, and a walk
//! around the ring). The CLI and the tests use it; the server makes its own calls through a
//! [`Pool`] as the client does.

use crate::error::ClientError;
use crate::id::Id;
use crate::lookup::{Lookup, Step};
use crate::node::LookupOutcome;
use crate::pool::{Pool, PoolLimits};
use crate::wire::{NodeRef, Request, Response};
use std::net::SocketAddr;
use std::time::Duration;

/// One request/response exchange on a fresh connection, all within `timeout`. Returns the
/// answering node's m and its response (an `Error` response is returned as `Ok`).
pub async fn rpc(
    addr: SocketAddr,
    bits: u8,
    req: &Request,
    timeout: Duration,
) -> Result<(u8, Response), ClientError> {
    Pool::disabled().rpc(addr, bits, req, timeout).await
}

/// Like [`Pool::rpc`], but an `Error` response becomes [`ClientError::Remote`].
async fn call(
    pool: &Pool,
    addr: SocketAddr,
    bits: u8,
    req: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    match pool.rpc(addr, bits, req, timeout).await? {
        (_, Response::Error { code, message }) => Err(ClientError::Remote { addr, code, message }),
        (_, resp) => Ok(resp),
    }
}

/// The result of a read.
#[derive(Debug, Clone)]
pub struct GetOutcome {
    /// The value, if any replica had it.
    pub value: Option<Vec<u8>>,
    /// The node that answered with the value (or the owner, when nobody had it).
    pub holder: Option<NodeRef>,
    /// The lookup that found the owner.
    pub lookup: LookupOutcome,
}

/// One node's state as reported by `Info`.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// The node.
    pub node: NodeRef,
    /// Its predecessor.
    pub pred: Option<NodeRef>,
    /// Its successor list.
    pub succs: Vec<NodeRef>,
    /// Its distinct fingers, as (index, node).
    pub fingers: Vec<(u8, NodeRef)>,
    /// Items it stores (own and replicas).
    pub items: u64,
}

/// A client of one ring, entering it through one node. Its RPCs reuse pooled connections
/// (clones share the pool).
#[derive(Debug, Clone)]
pub struct Client {
    entry: SocketAddr,
    bits: u8,
    timeout: Duration,
    recursive: bool,
    pool: Pool,
}

impl Client {
    /// Pings `entry` to learn the ring's m (connections pooled with the default limits).
    pub async fn connect(entry: SocketAddr, timeout: Duration) -> Result<Client, ClientError> {
        Client::connect_with(entry, timeout, Pool::new(PoolLimits::default())).await
    }

    /// Like [`connect`](Self::connect), with the given connection pool (e.g.
    /// [`Pool::disabled`] for one connection per RPC, or a pool shared by several clients).
    pub async fn connect_with(
        entry: SocketAddr,
        timeout: Duration,
        pool: Pool,
    ) -> Result<Client, ClientError> {
        match pool.rpc(entry, 0, &Request::Ping, timeout).await? {
            (bits, Response::Pong { .. }) => Ok(Client { entry, bits, timeout, recursive: false, pool }),
            (_, Response::Error { code, message }) => Err(ClientError::Remote { addr: entry, code, message }),
            _ => Err(ClientError::Unexpected(entry)),
        }
    }

    /// The client's connection pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    async fn call(
        &self,
        addr: SocketAddr,
        req: &Request,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        call(&self.pool, addr, self.bits, req, timeout).await
    }

    /// The ring's identifier width.
    pub fn bits(&self) -> u8 {
        self.bits
    }

    /// The id of `key` on this ring.
    pub fn key_id(&self, key: &[u8]) -> Id {
        Id::hash(key, self.bits)
    }

    /// Makes every lookup of this client recursive (the entry node forwards the query node to
    /// node) instead of iterative.
    pub fn recursive(mut self, yes: bool) -> Client {
        self.recursive = yes;
        self
    }

    /// Recursive find_successor(id): one request to the entry node, which forwards it; hops =
    /// the request to the entry plus the forwards between nodes.
    pub async fn lookup_recursive(&self, id: Id) -> Result<LookupOutcome, ClientError> {
        let timeout = self.timeout * 8;
        match self.call(self.entry, &Request::Route { id, hops: 0 }, timeout).await? {
            Response::Routed { succs, hops } if !succs.is_empty() => {
                Ok(LookupOutcome { succs, hops: hops as u32 + 1, timeouts: 0 })
            }
            _ => Err(ClientError::Unexpected(self.entry)),
        }
    }

    /// find_successor(id) from the entry node: iterative (hops = FindSuccessor answers), or
    /// recursive when the client was made so.
    pub async fn lookup(&self, id: Id) -> Result<LookupOutcome, ClientError> {
        if self.recursive {
            return self.lookup_recursive(id).await;
        }
        let mut lookup = Lookup::new(id, self.bits, vec![NodeRef { id, addr: self.entry }]);
        let mut step = lookup.next_step();
        loop {
            match step {
                Step::Ask(node) => {
                    let req = Request::FindSuccessor { id, avoid: lookup.avoid() };
                    step = match self.call(node.addr, &req, self.timeout).await {
                        Ok(resp) => lookup.on_response(resp),
                        Err(e) => {
                            tracing::debug!("lookup step failed: {e}");
                            lookup.on_failure(&node)
                        }
                    };
                }
                Step::Done(succs) => {
                    return Ok(LookupOutcome { succs, hops: lookup.hops, timeouts: lookup.timeouts });
                }
                Step::Failed => {
                    return Err(ClientError::NoRoute { hops: lookup.hops, timeouts: lookup.timeouts });
                }
            }
        }
    }

    /// Stores (key, value) on the key's owner (the first live node of its successor list), which
    /// replicates it. Returns the owner and the lookup.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<(NodeRef, LookupOutcome), ClientError> {
        let mut lookup = self.lookup(self.key_id(key)).await?;
        let req = Request::Put { key: key.to_vec(), value: value.to_vec() };
        let mut last = None;
        for node in lookup.succs.clone() {
            match self.call(node.addr, &req, self.timeout).await {
                Ok(Response::Ok) => return Ok((node, lookup)),
                Ok(_) => last = Some(ClientError::Unexpected(node.addr)),
                Err(e @ ClientError::Remote { .. }) => return Err(e),
                Err(e) => {
                    lookup.timeouts += 1;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(ClientError::NoRoute { hops: lookup.hops, timeouts: lookup.timeouts }))
    }

    /// Reads `key`: from its owner, else from the replicas that follow it.
    pub async fn get(&self, key: &[u8]) -> Result<GetOutcome, ClientError> {
        let mut lookup = self.lookup(self.key_id(key)).await?;
        let req = Request::Get { key: key.to_vec() };
        let mut answered = None;
        let mut last = None;
        for node in lookup.succs.clone() {
            match self.call(node.addr, &req, self.timeout).await {
                Ok(Response::Value { value: Some(v) }) => {
                    return Ok(GetOutcome { value: Some(v), holder: Some(node), lookup });
                }
                Ok(Response::Value { value: None }) => {
                    answered.get_or_insert(node);
                }
                Ok(_) => last = Some(ClientError::Unexpected(node.addr)),
                Err(e) => {
                    lookup.timeouts += 1;
                    last = Some(e);
                }
            }
        }
        match (answered, last) {
            (None, Some(e)) => Err(e),
            (holder, _) => Ok(GetOutcome { value: None, holder, lookup }),
        }
    }

    /// Deletes `key` on its owner (which deletes the replicas). Whether it existed.
    pub async fn delete(&self, key: &[u8]) -> Result<bool, ClientError> {
        let lookup = self.lookup(self.key_id(key)).await?;
        let req = Request::Delete { key: key.to_vec() };
        let mut last = None;
        for node in &lookup.succs {
            match self.call(node.addr, &req, self.timeout).await {
                Ok(Response::Deleted { existed }) => return Ok(existed),
                Ok(_) => last = Some(ClientError::Unexpected(node.addr)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(ClientError::NoRoute { hops: lookup.hops, timeouts: lookup.timeouts }))
    }

    /// One node's routing state.
    pub async fn info(&self, addr: SocketAddr) -> Result<NodeInfo, ClientError> {
        match self.call(addr, &Request::Info, self.timeout).await? {
            Response::Info { node, pred, succs, fingers, items } => {
                Ok(NodeInfo { node, pred, succs, fingers, items })
            }
            _ => Err(ClientError::Unexpected(addr)),
        }
    }

    /// One node's counters, as (name, value) pairs in the node's order.
    pub async fn stats(&self, addr: SocketAddr) -> Result<Vec<(String, u64)>, ClientError> {
        match self.call(addr, &Request::Stats, self.timeout).await? {
            Response::Stats { counters } => Ok(counters),
            _ => Err(ClientError::Unexpected(addr)),
        }
    }

    /// Walks the ring from the entry node along first successors, up to `max` nodes.
    pub async fn ring(&self, max: usize) -> Result<Vec<NodeInfo>, ClientError> {
        let first = self.info(self.entry).await?;
        let start = first.node.id;
        let mut out = vec![first];
        while out.len() < max {
            let last = out.last().expect("non-empty");
            let mut next = None;
            for s in last.succs.clone() {
                if let Ok(info) = self.info(s.addr).await {
                    next = Some(info);
                    break;
                }
            }
            match next {
                Some(info) if info.node.id != start && !out.iter().any(|n| n.node.id == info.node.id) => {
                    out.push(info)
                }
                _ => break,
            }
        }
        Ok(out)
    }
}
