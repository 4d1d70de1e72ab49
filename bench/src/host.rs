//! Facts about this machine during a run, read from `/proc`: CPU steal and load, open
//! connections and their queues, a process's CPU time, memory and threads, and the file system a
//! data directory lives on.

use std::path::Path;

/// Cumulative CPU jiffies from the `cpu` line of `/proc/stat`, as `shared/peers/lib.sh` reads
/// them: total = sum of all fields, steal = the 8th; idle = idle + iowait (4th and 5th).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSnap {
    total: u64,
    steal: u64,
    idle: u64,
}

impl CpuSnap {
    /// Now, or `None` when `/proc/stat` cannot be read.
    pub fn now() -> Option<CpuSnap> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        parse_cpu_line(stat.lines().find(|line| line.starts_with("cpu "))?)
    }

    /// Steal since this snapshot, in % of all CPU time since then.
    pub fn steal_pct_since(&self) -> Option<f64> {
        Some(CpuSnap::now()?.steal_pct_after(self))
    }

    /// Time the whole box was busy (not idle, not waiting for I/O, steal included) since this
    /// snapshot, in % of all CPU time since then: how contended the machine was.
    pub fn busy_pct_since(&self) -> Option<f64> {
        Some(CpuSnap::now()?.busy_pct_after(self))
    }

    fn busy_pct_after(&self, before: &CpuSnap) -> f64 {
        let total = self.total.saturating_sub(before.total);
        let idle = self.idle.saturating_sub(before.idle);
        if total == 0 {
            0.0
        } else {
            100.0 * total.saturating_sub(idle) as f64 / total as f64
        }
    }

    fn steal_pct_after(&self, before: &CpuSnap) -> f64 {
        let total = self.total.saturating_sub(before.total);
        let steal = self.steal.saturating_sub(before.steal);
        if total == 0 {
            0.0
        } else {
            100.0 * steal as f64 / total as f64
        }
    }
}

fn parse_cpu_line(line: &str) -> Option<CpuSnap> {
    let values = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse::<u64>().ok())
        .collect::<Option<Vec<u64>>>()?;
    Some(CpuSnap {
        total: values.iter().sum(),
        steal: *values.get(7)?,
        idle: values.get(3)? + values.get(4)?,
    })
}

/// One look at a process in `/proc/PID/stat` and `/proc/PID/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSnap {
    /// User + system CPU time so far, in clock ticks (threads that exited included).
    pub cpu_ticks: u64,
    /// Resident set size now (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Peak resident set size so far (`VmHWM`), KiB.
    pub hwm_kib: u64,
    /// Threads now.
    pub threads: u64,
}

impl ProcSnap {
    /// Process `pid` now, or `None` when it is gone or `/proc` cannot be parsed.
    pub fn read(pid: u32) -> Option<ProcSnap> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        parse_proc(&stat, &status)
    }

    /// CPU used between `before` and this snapshot, `wall` apart, in % of one core.
    pub fn cpu_pct_since(&self, before: &ProcSnap, wall: std::time::Duration) -> f64 {
        let secs = wall.as_secs_f64();
        if secs <= 0.0 {
            return 0.0;
        }
        let ticks = self.cpu_ticks.saturating_sub(before.cpu_ticks);
        100.0 * ticks as f64 / clock_ticks_per_sec() as f64 / secs
    }

    pub fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }

    pub fn hwm_mib(&self) -> f64 {
        self.hwm_kib as f64 / 1024.0
    }
}

fn parse_proc(stat: &str, status: &str) -> Option<ProcSnap> {
    // `pid (comm) state ppid ...`: comm may hold spaces and parentheses, so split after the last
    // `)`. utime and stime are fields 14 and 15 of the line, i.e. 12th and 13th after `)`.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let value = |key: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    };
    Some(ProcSnap {
        cpu_ticks: utime + stime,
        rss_kib: value("VmRSS:")?,
        hwm_kib: value("VmHWM:")?,
        threads: value("Threads:")?,
    })
}

/// `getconf CLK_TCK` (the unit of `/proc/PID/stat` CPU times), 100 when it cannot be run.
pub fn clock_ticks_per_sec() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|&ticks: &u64| ticks > 0)
            .unwrap_or(100)
    })
}

/// `TcpExt: ListenOverflows` of `/proc/net/netstat`: connections dropped because a listen
/// queue was full, since boot, for the whole network namespace (every process).
pub fn listen_overflows() -> Option<u64> {
    netstat_value(
        &std::fs::read_to_string("/proc/net/netstat").ok()?,
        "TcpExt:",
        "ListenOverflows",
    )
}

/// A value from `/proc/net/netstat`'s pairs of lines (`Prefix: names...` then `Prefix: values...`).
fn netstat_value(text: &str, prefix: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines().filter(|line| line.starts_with(prefix));
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        let at = names.split_whitespace().position(|n| n == name);
        if let Some(at) = at {
            return values.split_whitespace().nth(at)?.parse().ok();
        }
    }
    None
}

/// `/proc/loadavg`'s first three fields, e.g. `1.03 1.65 2.01`.
pub fn load_average() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(
        text.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// The TCP sockets of one loopback server port, both ends, from `/proc/net/tcp{,6}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortSockets {
    /// Established sockets whose local port is the server's: its side of each connection.
    pub server_side: usize,
    /// ... of which still hold received bytes the server has not read.
    pub server_unread: usize,
    /// Established sockets whose remote port is the server's: the clients' side.
    pub client_side: usize,
    /// ... of which still hold bytes not yet acknowledged by the server's kernel.
    pub client_unsent: usize,
    /// Connections waiting in the listening socket's accept queue.
    pub accept_queue: usize,
}

impl PortSockets {
    /// Now (zeros when `/proc/net/tcp` cannot be read).
    pub fn read(port: u16) -> PortSockets {
        let mut sockets = PortSockets::default();
        for path in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Ok(table) = std::fs::read_to_string(path) {
                sockets.add_table(&table, port);
            }
        }
        sockets
    }

    /// The server has read every request sent to it and accepted every connection.
    pub fn all_read(&self) -> bool {
        self.server_unread == 0 && self.client_unsent == 0 && self.accept_queue == 0
    }

    fn add_table(&mut self, table: &str, port: u16) {
        const ESTABLISHED: &str = "01";
        const LISTEN: &str = "0A";
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 5 {
                continue;
            }
            let port_of = |addr: &str| {
                addr.rsplit(':')
                    .next()
                    .and_then(|hex| u16::from_str_radix(hex, 16).ok())
            };
            let Some((tx, rx)) = fields[4].split_once(':') else {
                continue;
            };
            let queued = |hex: &str| u64::from_str_radix(hex, 16).map_or(0, |n| n);
            let local = port_of(fields[1]) == Some(port);
            let remote = port_of(fields[2]) == Some(port);
            match fields[3] {
                ESTABLISHED if local => {
                    self.server_side += 1;
                    self.server_unread += usize::from(queued(rx) > 0);
                }
                ESTABLISHED if remote => {
                    self.client_side += 1;
                    self.client_unsent += usize::from(queued(tx) > 0);
                }
                LISTEN if local => {
                    self.accept_queue += usize::try_from(queued(rx)).unwrap_or(usize::MAX);
                }
                _ => {}
            }
        }
    }
}

/// Established TCP connections whose remote end is `port` (any local address), from
/// `/proc/net/tcp` and `/proc/net/tcp6`: the client side of connections to a server's port.
pub fn established_to(port: u16) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|table| count_established(&table, port))
        .sum()
}

fn count_established(table: &str, port: u16) -> usize {
    const ESTABLISHED: &str = "01";
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.len() > 3
                && fields[3] == ESTABLISHED
                && fields[2]
                    .rsplit(':')
                    .next()
                    .and_then(|hex| u16::from_str_radix(hex, 16).ok())
                    == Some(port)
        })
        .count()
}

/// The type of the file system holding `path` (longest matching mount point in `/proc/mounts`).
pub fn fs_type(path: &Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _device = fields.next()?;
            let mount_point = fields.next()?.replace("\\040", " ");
            let fs = fields.next()?;
            path.starts_with(&mount_point)
                .then(|| (mount_point.len(), fs.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, fs)| fs)
}

/// `PATH (FS)` for the log and the report.
pub fn describe_dir(path: &Path) -> String {
    format!(
        "{} ({})",
        path.display(),
        fs_type(path).unwrap_or_else(|| "unknown fs".into())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_steal_like_lib_sh() {
        let before = parse_cpu_line("cpu  100 0 50 800 10 0 5 35 0 0").expect("parse");
        assert_eq!(before.total, 1000);
        assert_eq!(before.steal, 35);
        let after = parse_cpu_line("cpu  150 0 75 1465 10 0 5 95 0 0").expect("parse");
        assert!((after.steal_pct_after(&before) - 7.5).abs() < 1e-9);
        assert_eq!(before.steal_pct_after(&before), 0.0);
        assert!((after.busy_pct_after(&before) - 16.875).abs() < 1e-9);
        assert!(parse_cpu_line("cpu 1 2 3").is_none());
    }

    #[test]
    fn reads_netstat_pairs() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n\
                    TcpExt: 0 355 355\n\
                    IpExt: InNoRoutes\n\
                    IpExt: 0\n";
        assert_eq!(netstat_value(text, "TcpExt:", "ListenOverflows"), Some(355));
        assert_eq!(netstat_value(text, "TcpExt:", "Nope"), None);
        assert!(listen_overflows().is_some());
    }

    #[test]
    fn reads_a_process_with_spaces_in_its_name() {
        let stat = "4242 (kokoa (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 150 35 0 0 20 0 7 0 \
                    1234 100000 2000 18446744073709551615";
        let status = "Name:\tkokoa\nThreads:\t7\nVmHWM:\t  20480 kB\nVmRSS:\t  10240 kB\n";
        let snap = parse_proc(stat, status).expect("parse");
        assert_eq!(snap.cpu_ticks, 185);
        assert_eq!(
            (snap.rss_kib, snap.hwm_kib, snap.threads),
            (10240, 20480, 7)
        );
        assert_eq!(snap.rss_mib(), 10.0);
        let later = ProcSnap {
            cpu_ticks: 185 + clock_ticks_per_sec(),
            ..snap
        };
        let pct = later.cpu_pct_since(&snap, std::time::Duration::from_secs(2));
        assert!((pct - 50.0).abs() < 1e-9);
        assert!(parse_proc("garbage", status).is_none());
    }

    #[test]
    fn reads_both_ends_of_a_port_and_their_queues() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000002
   1: 0100007F:D431 0100007F:1F90 01 00000000:00000000
   2: 0100007F:D432 0100007F:1F90 01 0000005A:00000000
   3: 0100007F:1F90 0100007F:D431 01 00000000:00000000
   4: 0100007F:1F90 0100007F:D432 01 00000000:0000005A
   5: 0100007F:D433 0100007F:1F90 06 00000000:00000000";
        let mut sockets = PortSockets::default();
        sockets.add_table(table, 0x1F90);
        assert_eq!(
            sockets,
            PortSockets {
                server_side: 2,
                server_unread: 1,
                client_side: 2,
                client_unsent: 1,
                accept_queue: 2,
            }
        );
        assert!(!sockets.all_read());
        assert!(PortSockets::default().all_read());
    }

    #[test]
    fn counts_client_side_established_connections() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000
   1: 0100007F:D431 0100007F:1F90 01 00000000:00000000
   2: 0100007F:D432 0100007F:1F90 01 00000000:00000000
   3: 0100007F:1F90 0100007F:D431 01 00000000:00000000
   4: 0100007F:D433 0100007F:1F90 06 00000000:00000000";
        assert_eq!(count_established(table, 0x1F90), 2);
        assert_eq!(count_established(table, 80), 0);
    }

    #[test]
    fn proc_is_readable_here() {
        assert!(CpuSnap::now().is_some());
        let me = ProcSnap::read(std::process::id()).expect("/proc/self");
        assert!(me.rss_kib > 0 && me.threads >= 1);
        assert!(fs_type(Path::new("/")).is_some());
    }
}
