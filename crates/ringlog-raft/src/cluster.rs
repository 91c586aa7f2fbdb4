//! An in-process cluster's network: a router that delivers openraft's RPCs by calling the
//! target node's [`Raft`] directly (no sockets). A node removed from the router (killed) is
//! unreachable; an isolated node (a network partition) neither sends nor receives.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{Raft, RaftTypeConfig};

/// Delivers RPCs to the nodes registered with it. Clones share the registry.
pub struct Router<C: RaftTypeConfig> {
    nodes: Arc<Mutex<BTreeMap<u64, Raft<C>>>>,
    isolated: Arc<Mutex<BTreeSet<u64>>>,
    /// The node this router sends for (see [`Router::for_node`]).
    source: Option<u64>,
}

impl<C: RaftTypeConfig> Clone for Router<C> {
    fn clone(&self) -> Self {
        Router {
            nodes: self.nodes.clone(),
            isolated: self.isolated.clone(),
            source: self.source,
        }
    }
}

impl<C: RaftTypeConfig> Default for Router<C> {
    fn default() -> Self {
        Router {
            nodes: Arc::new(Mutex::new(BTreeMap::new())),
            isolated: Arc::new(Mutex::new(BTreeSet::new())),
            source: None,
        }
    }
}

impl<C: RaftTypeConfig<NodeId = u64>> Router<C> {
    /// Makes node `id` reachable through `raft`.
    pub fn add(&self, id: u64, raft: Raft<C>) {
        self.lock().insert(id, raft);
    }

    /// Makes node `id` unreachable and returns its handle.
    pub fn remove(&self, id: u64) -> Option<Raft<C>> {
        self.lock().remove(&id)
    }

    /// The handle of node `id`, if it is registered.
    pub fn get(&self, id: u64) -> Option<Raft<C>> {
        self.lock().get(&id).cloned()
    }

    /// The router to give node `id`'s `Raft`: it knows who sends, for partitions.
    pub fn for_node(&self, id: u64) -> Router<C> {
        Router {
            source: Some(id),
            ..self.clone()
        }
    }

    /// Cuts node `id` off the network (both ways) until [`Router::heal`].
    pub fn isolate(&self, id: u64) {
        self.isolated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
    }

    /// Ends [`Router::isolate`] for node `id`.
    pub fn heal(&self, id: u64) {
        self.isolated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// The target's handle if a message from this router's node can reach it now.
    fn reach(&self, target: u64) -> Option<Raft<C>> {
        {
            let isolated = self.isolated.lock().unwrap_or_else(|p| p.into_inner());
            if isolated.contains(&target) || self.source.is_some_and(|s| isolated.contains(&s)) {
                return None;
            }
        }
        self.get(target)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Raft<C>>> {
        self.nodes.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A client of one target node.
pub struct Connection<C: RaftTypeConfig> {
    router: Router<C>,
    target: u64,
}

fn unreachable<E: std::error::Error>(target: u64) -> RPCError<u64, openraft::BasicNode, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
        "node {target} is down"
    ))))
}

impl<C> RaftNetworkFactory<C> for Router<C>
where
    C: RaftTypeConfig<NodeId = u64, Node = openraft::BasicNode>,
{
    type Network = Connection<C>;

    async fn new_client(&mut self, target: u64, _node: &openraft::BasicNode) -> Self::Network {
        Connection {
            router: self.clone(),
            target,
        }
    }
}

impl<C> RaftNetwork<C> for Connection<C>
where
    C: RaftTypeConfig<NodeId = u64, Node = openraft::BasicNode>,
{
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, openraft::BasicNode, RaftError<u64>>>
    {
        let raft = self
            .router
            .reach(self.target)
            .ok_or_else(|| unreachable(self.target))?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, openraft::BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        let raft = self
            .router
            .reach(self.target)
            .ok_or_else(|| unreachable(self.target))?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, openraft::BasicNode, RaftError<u64>>> {
        let raft = self
            .router
            .reach(self.target)
            .ok_or_else(|| unreachable(self.target))?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}
