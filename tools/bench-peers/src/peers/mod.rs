//! One module per peer, each implementing [`crate::peer::Peer`].

pub mod channel;
pub mod commitlog;
pub mod framed;
pub mod json_lines;
pub mod okaywal;
pub mod raft_engine;
pub mod ringlog;
pub mod spacetimedb;
pub mod sqlite;
pub mod walrus;
