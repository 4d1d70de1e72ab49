//! The two roles that pull config, as types: where each registers, where it pulls, what it
//! sends when it registers and what config it gets. The client ([`crate::Control`]) is written
//! once over [`Role`].

use kokoa_store::pulled::{AgentConfig, EdgeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A role that registers once and then pulls its config: an edge or an agent.
pub trait Role: Send + Sync + 'static {
    /// `edge`, `agent`: names the role in logs and errors.
    const NAME: &'static str;
    /// `POST` here with a bootstrap token to register.
    const REGISTER_PATH: &'static str;
    /// `GET` here with the role's own token to long-poll its config.
    const CONFIG_PATH: &'static str;
    /// The body of the registration request.
    type Register: Serialize + Send + Sync;
    /// The config it pulls (inside [`kokoa_store::pulled::Pulled`]).
    type Config: Serialize + DeserializeOwned + Send + Sync + 'static;
}

/// `kokoa edge`.
#[derive(Debug, Clone, Copy)]
pub enum EdgeRole {}

/// `kokoa agent`.
#[derive(Debug, Clone, Copy)]
pub enum AgentRole {}

impl Role for EdgeRole {
    const NAME: &'static str = "edge";
    const REGISTER_PATH: &'static str = "/api/v1/edge-nodes/register";
    const CONFIG_PATH: &'static str = "/api/v1/edge-nodes/me/config";
    type Register = RegisterEdge;
    type Config = EdgeConfig;
}

impl Role for AgentRole {
    const NAME: &'static str = "agent";
    const REGISTER_PATH: &'static str = "/api/v1/agents/register";
    const CONFIG_PATH: &'static str = "/api/v1/agents/me/config";
    type Register = RegisterAgent;
    type Config = AgentConfig;
}

/// What an edge registers.
#[derive(Debug, Clone, Serialize)]
pub struct RegisterEdge {
    pub name: String,
    pub public_ip: String,
    pub wg_public_key: String,
    pub wg_port: u16,
    /// The plain HTTP listener's port, where the control plane probes `/health`.
    pub http_port: u16,
}

/// What an agent registers (its origin comes from the agent token it registers with).
#[derive(Debug, Clone, Serialize)]
pub struct RegisterAgent {
    pub name: String,
    pub wg_public_key: String,
}
