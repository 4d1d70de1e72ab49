//! Small files in a replica's data dir: the cluster secret and the admin token, written with
//! mode 0600 and atomically (temp file + rename + fsync).

use std::path::Path;

use anyhow::Context;

/// Name of the cluster secret file in the data dir.
pub const CLUSTER_SECRET: &str = "cluster.secret";
/// Name of the admin token file in the data dir.
pub const ADMIN_TOKEN: &str = "admin.token";

/// Reads a secret file, trimmed; `None` when it does not exist.
pub fn read_secret(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes a secret file readable only by its owner, durably.
pub fn write_secret(path: &Path, value: &str) -> anyhow::Result<()> {
    kokoa_store::private_file::write(path, format!("{value}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Creates a directory (and parents) readable only by its owner.
pub fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    kokoa_store::private_file::create_dir(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// A random secret: 32 bytes as hex.
pub fn random_secret() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
