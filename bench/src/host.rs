//! Facts about this machine during a run, read from `/proc`: CPU steal, open connections, and
//! the file system a data directory lives on.

use std::path::Path;

/// Cumulative CPU jiffies from the `cpu` line of `/proc/stat`, as `shared/peers/lib.sh` reads
/// them: total = sum of all fields, steal = the 8th.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuSnap {
    total: u64,
    steal: u64,
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
    })
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
        assert!(parse_cpu_line("cpu 1 2 3").is_none());
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
        assert!(fs_type(Path::new("/")).is_some());
    }
}
