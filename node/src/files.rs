//! Small files in a replica's data dir: the cluster secret and the admin token, written with
//! mode 0600 and atomically (temp file + rename + fsync).

use std::io::Write;
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
    let tmp = path.with_extension("tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        f.write_all(value.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).ok();
    }
    Ok(())
}

/// Creates a directory (and parents) readable only by its owner.
pub fn create_private_dir(path: &Path) -> anyhow::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// A random secret: 32 bytes as hex.
pub fn random_secret() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}
