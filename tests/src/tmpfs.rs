//! A small tmpfs mounted over a directory, to fill a disk on purpose (needs root). Unmounted
//! (lazily) when dropped, however the test ends.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted at a directory.
#[derive(Debug)]
pub struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (`mount`'s syntax: `6m`, or bytes) at `dir`.
    pub fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        mount(
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"],
            dir,
        )?;
        Ok(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    /// Gives it a new size (room again after filling it).
    pub fn resize(&self, size: &str) -> Result<(), String> {
        mount(&["-o", &format!("remount,size={size}")], &self.dir)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn mount(args: &[&str], dir: &Path) -> Result<(), String> {
    let status = Command::new("mount")
        .args(args)
        .arg(dir)
        .status()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "mount {} {} failed (this needs root)",
            args.join(" "),
            dir.display()
        ))
    }
}
