//! File helpers shared by the stores.

use std::io::Write;
use std::path::Path;

/// Replaces the file at `path` by `bytes`: written to the same path with the extension
/// `tmp`, synced when `sync`, then renamed over `path` — a reader finds the old content or
/// the new one, never a torn file.
pub fn replace(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    if sync {
        f.sync_data()?;
    }
    drop(f);
    std::fs::rename(&tmp, path)
}
