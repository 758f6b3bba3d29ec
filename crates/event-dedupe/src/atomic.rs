//! [`write_atomic`]: replacing a file crash-safely, the one place that owns
//! file durability for the state file and for any file kept beside it.

use std::fs::{self, File, TryLockError};
use std::io::{self, Write as _};
use std::path::Path;

/// Random characters in a temporary file's name (`<name>.XXXXXX.tmp`).
pub(crate) const TEMP_RANDOM: usize = 6;

/// The [`WriteError::step`] of a failed rename.
pub(crate) const RENAME_STEP: &str = "renaming the temporary file over the file";

/// The permissions of the file [`write_atomic`] creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileMode {
    /// `0666` less the umask, as `File::create` would: the umask decides.
    Umask,
    /// `0600`: readable by the owner only, whatever the umask.
    Private,
}

/// A step of [`write_atomic`] failed; the file at the path is untouched.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct WriteError {
    /// The step that failed, such as `creating the temporary file` or
    /// `renaming the temporary file over the file`.
    pub step: &'static str,
    /// The underlying error.
    #[source]
    pub source: io::Error,
}

/// Replaces the file at `path` with `bytes` so that a kill at any moment
/// leaves the old or the new contents, never a mix.
///
/// A temporary file `<name>.XXXXXX.tmp` with an unpredictable name is created
/// exclusively in the same directory (so never through a planted link), locked
/// (an exclusive advisory lock), written and fsynced, then renamed over `path`
/// and the directory is fsynced. A rename replaces a symbolic link at `path`
/// instead of writing through it. On failure the temporary file is removed.
///
/// Returns the new file, still holding its lock, for a caller that keeps its
/// file locked; dropping it releases the lock.
///
/// ```
/// use event_dedupe::{FileMode, write_atomic};
/// let dir = std::env::temp_dir().join(format!("write-atomic-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("list.jsonl");
/// write_atomic(&path, b"{}\n", FileMode::Private).unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"{}\n");
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
///
/// # Errors
///
/// A step failed ([`WriteError::step`] says which); the file at `path` is
/// as it was.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: FileMode) -> Result<File, WriteError> {
    let step = |step: &'static str| move |source| WriteError { step, source };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut prefix = path.file_name().unwrap_or_default().to_os_string();
    prefix.push(".");
    let mut builder = tempfile::Builder::new();
    builder
        .prefix(&prefix)
        .suffix(".tmp")
        .rand_bytes(TEMP_RANDOM);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let bits = match mode {
            FileMode::Umask => 0o666,
            FileMode::Private => 0o600,
        };
        builder.permissions(fs::Permissions::from_mode(bits));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = builder
        .tempfile_in(dir)
        .map_err(step("creating the temporary file"))?;
    tmp.as_file()
        .try_lock()
        .map_err(|e| match e {
            TryLockError::Error(e) => e,
            TryLockError::WouldBlock => io::Error::from(io::ErrorKind::WouldBlock),
        })
        .map_err(step("locking the temporary file"))?;
    tmp.write_all(bytes)
        .map_err(step("writing the temporary file"))?;
    tmp.as_file()
        .sync_all()
        .map_err(step("syncing the temporary file"))?;
    // On failure the temporary file is removed when dropped.
    let file = tmp
        .persist(path)
        .map_err(|e| e.error)
        .map_err(step(RENAME_STEP))?;
    sync_dir(dir).map_err(step("syncing the directory"))?;
    Ok(file)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Windows cannot open a directory as a file; the rename is durable enough there.
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn replaces_the_file_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        fs::write(&path, "old").unwrap();
        write_atomic(&path, b"new", FileMode::Umask).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_private_file_is_readable_by_its_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_atomic(&path, b"x", FileMode::Private).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    #[test]
    fn a_failure_names_its_step_and_leaves_the_file_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("f.json");
        let error = write_atomic(&path, b"x", FileMode::Private).unwrap_err();
        assert_eq!(error.step, "creating the temporary file");
        assert!(!path.exists());
    }
}
