//! Where the datapath lives on a host: the cgroup v2 mount it attaches
//! under and the BPF filesystem it pins to. The one place these facts are
//! parsed, for the daemon and the test harness alike.

use std::path::PathBuf;

/// `statfs` f_type of a cgroup v2 filesystem (linux/magic.h).
pub const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// `statfs` f_type of a BPF filesystem (linux/magic.h).
pub const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// The first cgroup v2 mount point of a `/proc/self/mountinfo` text
/// (unified or hybrid layout), unescaped.
pub fn parse_cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        // "<id> <parent> <maj:min> <root> <mount point> <opts> [optional...] - <fstype> ..."
        let (left, right) = line.split_once(" - ")?;
        let fstype = right.split_whitespace().next()?;
        let mount_point = left.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(unescape_mountinfo(mount_point)))
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hybrid_cgroup2() {
        let mi = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                  32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:5 - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_cgroup2_mount(mi),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn finds_unified_cgroup2_with_escapes() {
        let mi = "29 23 0:26 / /sys/fs/my\\040cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            parse_cgroup2_mount(mi),
            Some(PathBuf::from("/sys/fs/my cgroup"))
        );
    }

    #[test]
    fn no_cgroup2() {
        assert_eq!(
            parse_cgroup2_mount("1 0 0:1 / / rw - ext4 /dev/vda rw\n"),
            None
        );
        assert_eq!(parse_cgroup2_mount("garbage\n\n - \n"), None);
    }
}
