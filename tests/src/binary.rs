//! Finding the `kokoa` binary under test.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The `kokoa` binary to run: `$KOKOA_BIN` if set, otherwise the nearest ancestor directory of
/// the running test executable that holds an executable `kokoa` (i.e. `target/<profile>/kokoa`
/// for a test binary in `target/<profile>/deps/`).
///
/// # Panics
/// If no such binary exists: build it with `cargo build -p kokoa` first.
pub fn kokoa_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(find_kokoa_bin).clone()
}

fn find_kokoa_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("KOKOA_BIN") {
        let path = PathBuf::from(path);
        assert!(
            is_executable(&path),
            "KOKOA_BIN={} is not an executable file",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("std::env::current_exe");
    exe.ancestors()
        .skip(1)
        .map(|dir| dir.join("kokoa"))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| {
            panic!(
                "no executable `kokoa` found in any directory above {}: \
                 build it with cargo build -p kokoa (or set KOKOA_BIN)",
                exe.display()
            )
        })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
