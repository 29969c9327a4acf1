//! Reading and writing files safely. Reads are bounded (a model, a labels file or a header
//! cannot make cnnc read `/dev/zero` until memory runs out). Writes go to a temporary file in
//! the target's directory, are synced, then renamed over the target: a full disk or a crash
//! leaves the old file whole. A symlink's target is written, not the link; a new file's mode
//! follows the umask, a replaced file keeps its mode; an existing file is replaced only when
//! the caller allows it.

use std::fs::{File, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why a file cannot be written. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The output exists and overwriting it was not asked for.
    #[error("{} already exists; pass --force to overwrite it", path.display())]
    Exists {
        /// The output.
        path: PathBuf,
    },
    /// The output's directory does not exist.
    #[error("cannot write {}: the directory {} does not exist", path.display(), dir.display())]
    NoDirectory {
        /// The output.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
    },
    /// The output is a model source, which this command never writes over.
    #[error("refusing to write over {}: it is a .cnn model source", path.display())]
    Source {
        /// The output.
        path: PathBuf,
    },
    /// The system refused.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The output.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Reads at most `limit` bytes of `path`; `Ok(None)` if it holds more (or is a device or pipe
/// that never ends). Regular files are sized first, so a large one is refused unread.
pub fn read_limited(path: &Path, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory"));
    }
    if meta.is_file() && meta.len() > limit {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= limit).then_some(bytes))
}

/// The file a path names, following symlinks (even dangling ones) so that the target is
/// written and the link kept.
fn resolve_symlinks(path: &Path) -> PathBuf {
    let mut p = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(&p) {
                Ok(target) => p = p.parent().unwrap_or(Path::new("")).join(target),
                Err(_) => return p,
            },
            _ => return p,
        }
    }
    p
}

/// The process's umask, read from /proc (reading it with umask(2) would change it, racing
/// other threads); 022 where /proc does not say.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_string())))
        .and_then(|v| u32::from_str_radix(&v, 8).ok())
        .unwrap_or(0o022)
}

/// Whether `write_atomic` with these arguments would be refused: an existing output without
/// `overwrite`, a `.cnn` target with `protect_sources`, a missing directory. Lets a command
/// refuse before doing the work whose result it would write.
pub fn check_writable(path: &Path, overwrite: bool, protect_sources: bool) -> Result<(), WriteError> {
    writable_target(path, overwrite, protect_sources).map(|_| ())
}

/// The file to write (symlinks followed) and its directory, or why it must not be written.
fn writable_target(path: &Path, overwrite: bool, protect_sources: bool) -> Result<(PathBuf, PathBuf), WriteError> {
    let target = resolve_symlinks(path);
    if protect_sources && target.extension().is_some_and(|e| e.eq_ignore_ascii_case("cnn")) {
        return Err(WriteError::Source { path: path.to_path_buf() });
    }
    if std::fs::metadata(&target).is_ok() && !overwrite {
        return Err(WriteError::Exists { path: path.to_path_buf() });
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(WriteError::NoDirectory { path: path.to_path_buf(), dir });
    }
    Ok((target, dir))
}

/// Writes `bytes` to `path` through a synced temporary file renamed over it. An existing file
/// is replaced only with `overwrite`; a `.cnn` file never is when `protect_sources` is set.
pub fn write_atomic(path: &Path, bytes: &[u8], overwrite: bool, protect_sources: bool) -> Result<(), WriteError> {
    let (target, dir) = writable_target(path, overwrite, protect_sources)?;
    let io = |source| WriteError::Io { path: path.to_path_buf(), source };
    let existing = std::fs::metadata(&target).ok();
    let mode = existing.map_or(0o666 & !umask(), |m| m.permissions().mode() & 0o7777);
    let name = target.file_name().map_or("out".into(), |n| n.to_string_lossy().into_owned());
    let mut tmp = tempfile::Builder::new().prefix(&format!(".{name}.")).suffix(".tmp").tempfile_in(&dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().set_permissions(Permissions::from_mode(mode)).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(&target).map_err(|e| io(e.error))?;
    // The rename is durable once the directory is synced.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
