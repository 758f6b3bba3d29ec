//! Reading a file the config names (the config itself, token files, the CA
//! bundle): only a regular file, and only up to a cap, so `/dev/zero`, a FIFO
//! or a huge file can neither fill memory nor hang the start.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use crate::units::format_byte_size;

/// Why a file could not be read; `Display` is a phrase that follows the
/// file's name ("`/run/token` is a directory, not a regular file").
#[derive(Debug)]
pub(crate) enum SmallFileError {
    /// Nothing at that path.
    NotFound,
    /// The user may not read it.
    PermissionDenied,
    /// A directory.
    Directory,
    /// A FIFO: opening it would wait for a writer.
    Fifo,
    /// A device, a socket or another special file.
    NotRegular,
    /// Longer than the cap.
    TooLarge {
        /// The cap, in bytes.
        limit: u64,
    },
    /// Any other IO failure.
    Io(io::Error),
}

impl fmt::Display for SmallFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("does not exist"),
            Self::PermissionDenied => f.write_str("is not readable (permission denied)"),
            Self::Directory => f.write_str("is a directory, not a regular file"),
            Self::Fifo => f.write_str("is a named pipe (FIFO), not a regular file"),
            Self::NotRegular => f.write_str("is not a regular file (a device or a socket)"),
            Self::TooLarge { limit } => write!(f, "is larger than {}", format_byte_size(*limit)),
            Self::Io(err) => write!(f, "cannot be read: {err}"),
        }
    }
}

impl From<io::Error> for SmallFileError {
    fn from(err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::NotFound => Self::NotFound,
            io::ErrorKind::PermissionDenied => Self::PermissionDenied,
            io::ErrorKind::IsADirectory => Self::Directory,
            _ => Self::Io(err),
        }
    }
}

/// Reads the regular file at `path` (symbolic links followed: Kubernetes
/// mounts Secrets through them), refusing anything else before opening it,
/// and refusing a file longer than `limit` bytes after reading at most
/// `limit + 1` of them.
pub(crate) fn read(path: &Path, limit: u64) -> Result<Vec<u8>, SmallFileError> {
    check_kind(&fs::metadata(path)?)?;
    let file = fs::File::open(path)?;
    // The path may have changed between the two looks: check what was opened.
    check_kind(&file.metadata()?)?;
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(SmallFileError::TooLarge { limit });
    }
    Ok(bytes)
}

fn check_kind(metadata: &fs::Metadata) -> Result<(), SmallFileError> {
    let kind = metadata.file_type();
    if kind.is_file() {
        return Ok(());
    }
    if kind.is_dir() {
        return Err(SmallFileError::Directory);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if kind.is_fifo() {
            return Err(SmallFileError::Fifo);
        }
    }
    Err(SmallFileError::NotRegular)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_file_up_to_its_cap_and_refuses_one_byte_more() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        fs::write(&file, "x".repeat(16)).unwrap();
        assert_eq!(read(&file, 16).unwrap().len(), 16);
        assert!(matches!(
            read(&file, 15),
            Err(SmallFileError::TooLarge { limit: 15 })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn follows_symbolic_links_as_secret_mounts_use_them() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("..data-token");
        fs::write(&target, "secret\n").unwrap();
        let link = dir.path().join("token");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert_eq!(read(&link, 64).unwrap(), b"secret\n");
    }

    #[test]
    fn refuses_what_is_not_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read(dir.path(), 64),
            Err(SmallFileError::Directory)
        ));
        assert!(matches!(
            read(Path::new("/dev/zero"), 64),
            Err(SmallFileError::NotRegular)
        ));
        assert!(matches!(
            read(&dir.path().join("missing"), 64),
            Err(SmallFileError::NotFound)
        ));
    }
}
