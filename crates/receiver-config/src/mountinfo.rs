//! `/proc/self/mountinfo`: which mount holds a directory, and whether that is
//! a container's own root filesystem, which is thrown away with the container.
//!
//! Pure functions over the text, so the decision is tested with fixtures
//! (`fixtures/mountinfo/`); reading the file is the caller's business.

use std::path::{Path, PathBuf};

/// Where Linux lists the mounts this process sees.
pub const PATH: &str = "/proc/self/mountinfo";

/// Filesystem types of a container's root: overlayfs (Docker, containerd,
/// CRI-O, Podman) and its FUSE implementation (rootless Podman).
const OVERLAY_TYPES: &[&str] = &["overlay", "fuse.fuse-overlayfs"];

/// One mount: where a filesystem is mounted, and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    /// The mount point, relative to the process's root, unescaped.
    pub(crate) mount_point: PathBuf,
    /// The filesystem type (`overlay`, `ext4`, `tmpfs`...).
    pub(crate) fs_type: String,
}

/// The mounts listed in mountinfo text, in its order. Lines without the
/// documented shape are skipped.
pub(crate) fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

/// One line, as `proc_pid_mountinfo(5)` documents it:
/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw`: id,
/// parent id, device, root, mount point, options, optional fields ended by a
/// lone `-`, then the filesystem type, the source and the super-block options.
fn parse_line(line: &str) -> Option<Mount> {
    let mut fields = line.split(' ');
    let mount_point = fields.nth(4)?;
    fields.next()?; // the mount options
    fields.find(|field| *field == "-")?;
    let fs_type = fields.next().filter(|t| !t.is_empty())?;
    let mount_point = PathBuf::from(unescape(mount_point));
    mount_point.is_absolute().then(|| Mount {
        mount_point,
        fs_type: unescape(fs_type),
    })
}

/// Undoes the kernel's escaping of space, tab, newline and backslash in
/// paths (`\040`, `\011`, `\012`, `\134`): a backslash and three octal digits.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .filter(|digits| digits.iter().all(|d| (b'0'..=b'7').contains(d)))
            .and_then(|digits| {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                u8::try_from(value).ok()
            });
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount that holds `path` (absolute and canonical): the one whose mount
/// point is its longest prefix, component by component; of two mounts at the
/// same point, the later one, which hides the earlier.
pub(crate) fn containing<'a>(mounts: &'a [Mount], path: &Path) -> Option<&'a Mount> {
    mounts
        .iter()
        .filter(|mount| path.starts_with(&mount.mount_point))
        .max_by_key(|mount| mount.mount_point.components().count())
}

/// Whether `dir` (absolute and canonical) lies on a container's own root
/// filesystem: the mount that holds it is `/`, and `/` is an overlay. Such a
/// directory survives a restart of the process, not a new container (a pod
/// rescheduled, an image upgraded). A volume, a PersistentVolumeClaim or a
/// host path is a mount of its own and is not.
pub fn on_container_root(mountinfo: &str, dir: &Path) -> bool {
    let mounts = parse(mountinfo);
    containing(&mounts, dir).is_some_and(|mount| {
        mount.mount_point == Path::new("/") && OVERLAY_TYPES.contains(&mount.fs_type.as_str())
    })
}

/// The directory of `state_file`, canonical, when it lies on a container's
/// own root filesystem ([`on_container_root`]); `None` when it does not or
/// cannot be resolved. The file works all the same: it survives a restart of
/// the process, only not a new container.
pub fn state_dir_on_container_root(mountinfo: &str, state_file: &Path) -> Option<PathBuf> {
    let dir = state_file
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir).ok()?;
    on_container_root(mountinfo, &dir).then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD_WITH_PVC: &str = include_str!("../../../fixtures/mountinfo/pod-with-pvc.txt");
    const POD_WITHOUT_PVC: &str = include_str!("../../../fixtures/mountinfo/pod-without-pvc.txt");
    const DOCKER_NAMED_VOLUME: &str =
        include_str!("../../../fixtures/mountinfo/docker-named-volume.txt");
    const BARE_METAL: &str = include_str!("../../../fixtures/mountinfo/bare-metal-ext4.txt");

    const STATE_DIR: &str = "/var/lib/equinix-receiver";

    #[test]
    fn the_default_state_directory_is_ephemeral_only_in_a_pod_without_a_volume() {
        for (name, mountinfo, ephemeral) in [
            ("pod with a PVC", POD_WITH_PVC, false),
            ("pod without a PVC", POD_WITHOUT_PVC, true),
            ("docker named volume", DOCKER_NAMED_VOLUME, false),
            ("bare-metal host, ext4 root", BARE_METAL, false),
        ] {
            assert_eq!(
                on_container_root(mountinfo, Path::new(STATE_DIR)),
                ephemeral,
                "{name}"
            );
        }
    }

    #[test]
    fn the_holding_mount_is_the_longest_prefix_by_component() {
        let mounts = parse(POD_WITH_PVC);
        let holder = |path: &str| {
            containing(&mounts, Path::new(path)).map(|m| {
                (
                    m.mount_point.to_str().unwrap().to_owned(),
                    m.fs_type.clone(),
                )
            })
        };
        assert_eq!(
            holder("/var/lib/equinix-receiver/nested"),
            Some((STATE_DIR.to_owned(), "ext4".to_owned()))
        );
        // A sibling whose name only starts like the volume's is on the root.
        assert_eq!(
            holder("/var/lib/equinix-receiver-old"),
            Some(("/".to_owned(), "overlay".to_owned()))
        );
        assert!(on_container_root(
            POD_WITH_PVC,
            Path::new("/var/lib/equinix-receiver-old")
        ));
        assert!(on_container_root(POD_WITH_PVC, Path::new("/tmp")));
        assert!(!on_container_root(POD_WITH_PVC, Path::new("/config")));
    }

    #[test]
    fn escaped_mount_points_are_matched_by_their_real_name() {
        let mounts = parse(BARE_METAL);
        let disk = containing(&mounts, Path::new("/srv/equinix receiver/state"))
            .expect("a mount holds it");
        assert_eq!(disk.mount_point, Path::new("/srv/equinix receiver"));
        assert_eq!(disk.fs_type, "xfs");
        assert_eq!(unescape(r"a\040b\011c\012d\134e"), "a b\tc\nd\\e");
        assert_eq!(unescape(r"trailing\04"), r"trailing\04");
        assert_eq!(unescape(r"not\9octal"), r"not\9octal");
    }

    #[test]
    fn only_an_overlay_at_the_root_is_ephemeral() {
        // A container's overlay seen from the host is not the host's root.
        assert!(!on_container_root(
            BARE_METAL,
            Path::new("/var/lib/docker/overlay2/5e1f0a9c3b7d/merged/var/lib/equinix-receiver")
        ));
        let rootless = "1 0 0:40 / / rw - fuse.fuse-overlayfs fuse-overlayfs rw\n";
        assert!(on_container_root(rootless, Path::new(STATE_DIR)));
        let tmpfs_root = "1 0 0:40 / / rw - tmpfs tmpfs rw\n";
        assert!(!on_container_root(tmpfs_root, Path::new(STATE_DIR)));
    }

    #[test]
    fn a_later_mount_at_the_same_point_hides_the_earlier() {
        let stacked = "\
1 0 0:40 / / rw - overlay overlay rw
2 1 8:1 / /var/lib/equinix-receiver rw - ext4 /dev/sda1 rw
3 1 0:41 / /var/lib/equinix-receiver rw shared:5 master:2 - tmpfs tmpfs rw
";
        let mounts = parse(stacked);
        let holder = containing(&mounts, Path::new(STATE_DIR)).unwrap();
        assert_eq!(holder.fs_type, "tmpfs");
    }

    #[test]
    fn malformed_lines_are_skipped_and_nothing_known_is_not_ephemeral() {
        let text = "garbage\n1 0 0:40 / / rw overlay\n\n2 0 0:41 / relative rw - ext4 x rw\n";
        assert!(parse(text).is_empty());
        assert!(!on_container_root(text, Path::new(STATE_DIR)));
        assert!(!on_container_root("", Path::new(STATE_DIR)));
    }
}
