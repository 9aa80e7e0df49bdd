//! Atomic file writing, below every module that writes files (the store, the trainer's
//! checkpoints, the data digest cache, the reports): a file is written to a temporary file in
//! the same folder, synced, and renamed into place, so a reader (or a killed process) sees the
//! whole old file or the whole new one, never a part.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// `builder` made to create what a plain `open` or `mkdir` would: mode 0666 (files) or 0777
/// (folders) less the umask. tempfile's own default, 0600 and 0700, survives the rename into
/// place and would hide a shared store's files from the teammates its umask lets read them.
pub fn as_umask_allows<'a, 'b, 'c>(
    builder: &'c mut tempfile::Builder<'a, 'b>,
    folder: bool,
) -> &'c mut tempfile::Builder<'a, 'b> {
    builder.permissions(Permissions::from_mode(if folder { 0o777 } else { 0o666 }))
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_with(path, |f| f.write_all(bytes))
}

/// Like [`write()`], with a writer callback. The error is the I/O error alone: callers name the
/// path in their own error types.
pub fn write_with(
    path: &Path,
    write: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = as_umask_allows(
        tempfile::Builder::new().prefix(".kdgrid").suffix(".tmp"),
        false,
    )
    .tempfile_in(dir)?;
    write(tmp.as_file_mut())
        .and_then(|_| crate::fault::check_write(path))
        .and_then(|_| tmp.as_file_mut().sync_all())?;
    let ino = tmp.as_file().metadata()?.ino();
    match tmp.persist(path) {
        Ok(_) => Ok(()),
        // NFS may answer a retransmitted `rename` with "not found" although the first one
        // succeeded: the file in place is then ours.
        Err(e)
            if e.error.kind() == std::io::ErrorKind::NotFound
                && std::fs::metadata(path).is_ok_and(|m| m.ino() == ino) =>
        {
            Ok(())
        }
        Err(e) => Err(e.error),
    }
}
