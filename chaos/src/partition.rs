//! Network partitions between replicas, made with nftables.
//!
//! A [`Partitions`] owns one nftables table of its own, `inet kokoa_chaos_<pid>_<n>`, holding one
//! base chain `input` (filter hook `input`, policy accept) and only `drop` rules naming the
//! addresses it was given. Loopback traffic goes through the input hook like any other (a packet
//! from 127.77.0.1 to 127.77.0.2 leaves through `output` and comes back in through `input` on
//! `lo`), so replicas that each listen on a loopback address of their own — and whose peer
//! connections come from it (`kokoa server` binds outgoing peer connections to the
//! `--peer-listen` IP) — can be cut apart on one machine. Nothing else is touched: no other
//! table, no other address.
//!
//! * [`Partitions::cut`]: packets from one address to another are dropped (one direction).
//!   TCP needs both directions, so a connection between the two fails whichever side opens it;
//!   the two sides only see it differently (a lost SYN, or a lost SYN-ACK).
//! * [`Partitions::cut_calls`]: connections *opened by* one address to another are dropped
//!   (conntrack direction), while the other side still opens connections and gets answers: the
//!   asymmetry that request/response RPC can observe.
//! * [`Partitions::isolate`]: both directions between an address and each of the others.
//! * [`Partitions::heal`]: every rule removed, the table kept.
//! * [`Partitions::remove`], and dropping the value: the table deleted (best effort on drop), so
//!   a panicking test leaves no rule behind.
//!
//! Rules apply to packets, not processes: a connection already open between cut addresses
//! stalls (its packets are dropped) until its own timeout; new ones time out connecting.
//! `nft` runs synchronously (a few milliseconds) and needs root (CAP_NET_ADMIN).

use std::fmt::Write as _;
use std::io::{ErrorKind, Write as _};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// Where `nft` is looked for when it is not on `PATH` (Debian puts it in /usr/sbin).
const NFT_FALLBACKS: [&str; 2] = ["/usr/sbin/nft", "/sbin/nft"];
/// The base chain holding the rules.
const CHAIN: &str = "input";

/// Why a partition could not be made or undone.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    #[error(
        "`nft` was not found (on PATH, /usr/sbin, /sbin): install the nftables package \
         (`apt-get install nftables`; scripts/test does it when run as root)"
    )]
    NftMissing,
    #[error("cannot run `{nft}`: {source}")]
    Spawn {
        nft: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "`nft -f -` failed ({status}): {stderr}\nscript:\n{script}\n(partitions need root, \
         i.e. CAP_NET_ADMIN, and the nftables package)"
    )]
    Nft {
        status: String,
        stderr: String,
        script: String,
    },
    #[error("cannot cut {from} -> {to}: one is IPv4 and the other IPv6")]
    MixedFamilies { from: IpAddr, to: IpAddr },
}

/// One nftables table of drop rules between addresses, created on first use and deleted on
/// [`Partitions::remove`] or drop. Each value has a table of its own, so several may live in
/// one process.
#[derive(Debug)]
pub struct Partitions {
    table: String,
    nft: Option<PathBuf>,
    created: bool,
}

impl Partitions {
    /// A partition set with a table name unique to this process and value; nothing is run yet:
    /// the table comes with the first rule, or [`Partitions::ensure`] (which also says early
    /// whether `nft` is installed and may be used).
    pub fn new() -> Partitions {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Partitions {
            table: format!("kokoa_chaos_{}_{n}", std::process::id()),
            nft: None,
            created: false,
        }
    }

    /// The table's name (family `inet`).
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table now (it is otherwise created by the first rule): a cheap way to check
    /// early that `nft` is there and may be used (root).
    pub fn ensure(&mut self) -> Result<(), PartitionError> {
        if self.created {
            return Ok(());
        }
        let script = format!(
            "add table inet {t}\n\
             add chain inet {t} {CHAIN} {{ type filter hook input priority filter; policy accept; }}\n",
            t = self.table
        );
        self.run(&script)?;
        self.created = true;
        Ok(())
    }

    /// Drops every packet from `from` to `to` (one direction; see the module doc for what that
    /// does to TCP).
    pub fn cut(&mut self, from: IpAddr, to: IpAddr) -> Result<(), PartitionError> {
        let rule = self.rule(from, to, "")?;
        self.add_rules(&[rule])
    }

    /// Drops connections opened by `from` to `to` (their packets both ways), while `to` may
    /// still open connections to `from` and get answers.
    pub fn cut_calls(&mut self, from: IpAddr, to: IpAddr) -> Result<(), PartitionError> {
        let rules = [
            self.rule(from, to, "ct direction original ")?,
            self.rule(to, from, "ct direction reply ")?,
        ];
        self.add_rules(&rules)
    }

    /// Cuts `ip` from each of `others`, both directions (one atomic change).
    pub fn isolate(&mut self, ip: IpAddr, others: &[IpAddr]) -> Result<(), PartitionError> {
        let mut rules = Vec::with_capacity(others.len() * 2);
        for &other in others {
            rules.push(self.rule(ip, other, "")?);
            rules.push(self.rule(other, ip, "")?);
        }
        self.add_rules(&rules)
    }

    /// Cuts every address from every other, both directions: no two can talk.
    pub fn split_all(&mut self, ips: &[IpAddr]) -> Result<(), PartitionError> {
        let mut rules = Vec::new();
        for &from in ips {
            for &to in ips {
                if from != to {
                    rules.push(self.rule(from, to, "")?);
                }
            }
        }
        self.add_rules(&rules)
    }

    /// Removes every rule (the table stays, empty, until [`Partitions::remove`] or drop).
    pub fn heal(&mut self) -> Result<(), PartitionError> {
        if !self.created {
            return Ok(());
        }
        let script = format!("flush chain inet {} {CHAIN}\n", self.table);
        self.run(&script)
    }

    /// The table as `nft list table` prints it (empty when it was never created), for logs.
    pub fn listing(&mut self) -> Result<String, PartitionError> {
        if !self.created {
            return Ok(String::new());
        }
        let nft = self.nft()?;
        let output = Command::new(&nft)
            .args(["list", "table", "inet", &self.table])
            .output()
            .map_err(|source| PartitionError::Spawn {
                nft: nft.display().to_string(),
                source,
            })?;
        if !output.status.success() {
            return Err(PartitionError::Nft {
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
                script: format!("list table inet {}", self.table),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Deletes the table and its rules. Dropping the value does the same, ignoring errors.
    pub fn remove(&mut self) -> Result<(), PartitionError> {
        if !self.created {
            return Ok(());
        }
        let script = format!("delete table inet {}\n", self.table);
        self.run(&script)?;
        self.created = false;
        Ok(())
    }

    /// `add rule ... ip saddr FROM ip daddr TO [MATCH]drop`.
    fn rule(&self, from: IpAddr, to: IpAddr, matches: &str) -> Result<String, PartitionError> {
        let family = match (from, to) {
            (IpAddr::V4(_), IpAddr::V4(_)) => "ip",
            (IpAddr::V6(_), IpAddr::V6(_)) => "ip6",
            _ => return Err(PartitionError::MixedFamilies { from, to }),
        };
        Ok(format!(
            "add rule inet {} {CHAIN} {family} saddr {from} {family} daddr {to} {matches}drop\n",
            self.table
        ))
    }

    fn add_rules(&mut self, rules: &[String]) -> Result<(), PartitionError> {
        self.ensure()?;
        let script = rules.iter().fold(String::new(), |mut script, rule| {
            let _ = write!(script, "{rule}");
            script
        });
        if script.is_empty() {
            return Ok(());
        }
        self.run(&script)
    }

    /// Runs `nft -f -` with `script` on stdin (one transaction: all of it or nothing).
    fn run(&mut self, script: &str) -> Result<(), PartitionError> {
        let nft = self.nft()?;
        let spawn_error = |source| PartitionError::Spawn {
            nft: nft.display().to_string(),
            source,
        };
        let mut child = Command::new(&nft)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_error)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(script.as_bytes()).map_err(spawn_error)?;
        }
        let output = child.wait_with_output().map_err(spawn_error)?;
        if output.status.success() {
            Ok(())
        } else {
            Err(PartitionError::Nft {
                status: output.status.to_string(),
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
                script: script.trim_end().to_string(),
            })
        }
    }

    /// The `nft` binary: `nft` on PATH, else the usual sbin places.
    fn nft(&mut self) -> Result<PathBuf, PartitionError> {
        if let Some(nft) = &self.nft {
            return Ok(nft.clone());
        }
        let candidates =
            std::iter::once(PathBuf::from("nft")).chain(NFT_FALLBACKS.iter().map(PathBuf::from));
        for candidate in candidates {
            match Command::new(&candidate)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
            {
                Ok(_) => {
                    self.nft = Some(candidate.clone());
                    return Ok(candidate);
                }
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(PartitionError::Spawn {
                        nft: candidate.display().to_string(),
                        source,
                    })
                }
            }
        }
        Err(PartitionError::NftMissing)
    }
}

impl Default for Partitions {
    fn default() -> Self {
        Partitions::new()
    }
}

impl Drop for Partitions {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!(
                "could not delete nftables table inet {}: {e}; delete it with `nft delete table inet {}`",
                self.table, self.table
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_only_the_given_addresses() {
        let p = Partitions::new();
        let a: IpAddr = "127.77.1.1".parse().expect("ip");
        let b: IpAddr = "127.77.1.2".parse().expect("ip");
        let rule = p.rule(a, b, "").expect("rule");
        assert_eq!(
            rule,
            format!(
                "add rule inet {} input ip saddr 127.77.1.1 ip daddr 127.77.1.2 drop\n",
                p.table()
            )
        );
        let v6: IpAddr = "::1".parse().expect("ip");
        assert!(matches!(
            p.rule(a, v6, ""),
            Err(PartitionError::MixedFamilies { .. })
        ));
        assert!(p.rule(v6, v6, "").expect("rule").contains("ip6 saddr ::1"));
        assert!(p
            .table()
            .starts_with(&format!("kokoa_chaos_{}_", std::process::id())));
        assert_ne!(p.table(), Partitions::new().table());
    }
}
