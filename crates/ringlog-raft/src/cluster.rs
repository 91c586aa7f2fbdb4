//! An in-process cluster's network: a router that delivers openraft's RPCs by calling the
//! target node's [`Raft`] directly (no sockets). A node removed from the router (killed) is
//! unreachable.

use std::collections::BTreeMap;
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
}

impl<C: RaftTypeConfig> Clone for Router<C> {
    fn clone(&self) -> Self {
        Router {
            nodes: self.nodes.clone(),
        }
    }
}

impl<C: RaftTypeConfig> Default for Router<C> {
    fn default() -> Self {
        Router {
            nodes: Arc::new(Mutex::new(BTreeMap::new())),
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

    /// The handle of node `id`, if it is reachable.
    pub fn get(&self, id: u64) -> Option<Raft<C>> {
        self.lock().get(&id).cloned()
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
            .get(self.target)
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
            .get(self.target)
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
            .get(self.target)
            .ok_or_else(|| unreachable(self.target))?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}
