//! One `kokoa agent` child process: start, wait until its tunnel runs, restart it with the same
//! data dir.

use std::net::{Ipv4Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::path::Path;

use crate::process::{field, KokoaProcess, StartError};
use crate::puller::PullerSpec;
use crate::READY_TIMEOUT;

/// What an agent logs once its tunnel runs.
const READY_MARKER: &str = "agent running id=";

/// Everything needed to start (and restart) one agent: the common part (name, files, control,
/// token, extra arguments; reached through `Deref`) and its WireGuard socket.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub common: PullerSpec,
    /// `--wg-listen`: its WireGuard UDP socket (default `127.0.0.1:0`).
    pub wg_listen: SocketAddr,
}

impl AgentSpec {
    /// Agent `name` living in `root/NAME` with its logs beside it, pulling from `control` and
    /// registering with the agent token `token`.
    pub fn new(name: &str, root: &Path, control: Vec<String>, token: &str) -> AgentSpec {
        AgentSpec {
            common: PullerSpec::new(name, root, control, token),
            wg_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// The command line (without the binary).
    pub fn args(&self) -> Vec<String> {
        self.common.args(
            "agent",
            vec!["--wg-listen".into(), self.wg_listen.to_string()],
        )
    }
}

impl Deref for AgentSpec {
    type Target = PullerSpec;

    fn deref(&self) -> &PullerSpec {
        &self.common
    }
}

impl DerefMut for AgentSpec {
    fn deref_mut(&mut self) -> &mut PullerSpec {
        &mut self.common
    }
}

/// A running (or stopped) `kokoa agent` child: a [`KokoaProcess`] (signals, logs, exit) plus
/// its spec and what its `agent running id=… tunnel_ip=…` line said.
#[derive(Debug)]
pub struct Agent {
    spec: AgentSpec,
    process: KokoaProcess,
    id: Option<String>,
    tunnel_ip: Option<Ipv4Addr>,
}

impl Agent {
    /// Spawns the process and returns at once; call [`Agent::wait_ready`] next.
    pub fn launch(spec: AgentSpec) -> Agent {
        let process = spec.process("agent");
        let mut agent = Agent {
            spec,
            process,
            id: None,
            tunnel_ip: None,
        };
        agent
            .process
            .spawn(&agent.spec.args(), &agent.spec.environment());
        agent
    }

    /// Launches and waits until its tunnel runs.
    pub async fn start(spec: AgentSpec) -> Result<Agent, StartError> {
        let mut agent = Agent::launch(spec);
        agent.wait_ready().await?;
        Ok(agent)
    }

    /// Waits (up to [`READY_TIMEOUT`]) for the current process's line
    /// `agent running id=AGENT_ID tunnel_ip=IP`.
    pub async fn wait_ready(&mut self) -> Result<(), StartError> {
        let line = self
            .process
            .wait_for_line(READY_MARKER, READY_TIMEOUT)
            .await?;
        let (id, tunnel_ip) = parse_agent_running(&line)
            .ok_or_else(|| self.process.start_error(format!("unparsable line: {line}")))?;
        self.id = Some(id);
        self.tunnel_ip = Some(tunnel_ip);
        Ok(())
    }

    /// Starts a stopped agent again with the same spec (data dir, name) and waits until its
    /// tunnel runs.
    pub async fn restart(&mut self) -> Result<(), StartError> {
        self.process
            .spawn(&self.spec.args(), &self.spec.environment());
        self.wait_ready().await
    }

    pub fn spec(&self) -> &AgentSpec {
        &self.spec
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn data_dir(&self) -> &Path {
        &self.spec.data_dir
    }

    /// The agent id from the last `agent running` line.
    ///
    /// # Panics
    /// Before the agent was ever ready.
    pub fn id(&self) -> &str {
        self.id
            .as_deref()
            .unwrap_or_else(|| panic!("{} never logged its id", self.process.label()))
    }

    /// Its address inside its origin's subnet, from the last `agent running` line.
    ///
    /// # Panics
    /// Before the agent was ever ready.
    pub fn tunnel_ip(&self) -> Ipv4Addr {
        self.tunnel_ip
            .unwrap_or_else(|| panic!("{} never logged its tunnel_ip", self.process.label()))
    }
}

impl Deref for Agent {
    type Target = KokoaProcess;

    fn deref(&self) -> &KokoaProcess {
        &self.process
    }
}

impl DerefMut for Agent {
    fn deref_mut(&mut self) -> &mut KokoaProcess {
        &mut self.process
    }
}

/// Parses `... agent running id=AGENT_ID tunnel_ip=IP ...`.
fn parse_agent_running(line: &str) -> Option<(String, Ipv4Addr)> {
    let rest = &line[line.find(READY_MARKER)? + "agent running ".len()..];
    let id = field(rest, "id")?.trim_matches('"');
    let tunnel_ip = field(rest, "tunnel_ip")?.parse().ok()?;
    (!id.is_empty()).then(|| (id.to_string(), tunnel_ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_ready_line() {
        let line = "2026-01-01T00:00:00Z  INFO kokoa::agent: agent running id=a_0123 \
                    tunnel_ip=10.64.0.2";
        let (id, ip) = parse_agent_running(line).expect("parse");
        assert_eq!(id, "a_0123");
        assert_eq!(ip, Ipv4Addr::new(10, 64, 0, 2));
        assert!(parse_agent_running("agent running id=x tunnel_ip=nope").is_none());
        assert!(parse_agent_running("agent running id= tunnel_ip=10.0.0.1").is_none());
    }

    #[test]
    fn the_command_line_names_every_flag() {
        let spec = AgentSpec::new("pi", Path::new("/tmp/t"), vec!["http://a:1".into()], "t");
        let args = spec.args();
        assert_eq!(args[0], "agent");
        for flag in ["--control", "--data-dir", "--name", "--wg-listen"] {
            assert!(args.iter().any(|a| a == flag), "{flag} in {args:?}");
        }
        assert!(spec
            .environment()
            .contains(&("KOKOA_TOKEN".to_string(), "t".to_string())));
    }
}
