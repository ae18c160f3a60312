//! Host-side file operations on a box folder that never follow a symlink.
//!
//! The program owns the box folder while it runs and may leave symlinks anywhere in
//! it (judge0 CVE-2024-28185/28189). Every operation here starts from a descriptor of
//! the folder and walks the relative path one component at a time with
//! `openat(O_NOFOLLOW)` (`O_DIRECTORY` for the intermediate ones), so no component
//! can be a link: a link fails with ELOOP/ENOTDIR and the operation is refused.
//! Files are read only when `fstat` says they are regular files (a FIFO would block,
//! a device would read host data).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::SandboxError;

/// Checks a relative box path: not empty, not absolute, no `..`, `.` or empty component,
/// no NUL. Errors: [`SandboxError::InvalidSpec`].
pub fn check_relative(path: &str) -> Result<Vec<CString>, SandboxError> {
    let bad =
        || SandboxError::InvalidSpec(format!("box path {path:?} must be relative, without '..'"));
    if path.is_empty() || path.starts_with('/') {
        return Err(bad());
    }
    path.split('/')
        .map(|c| {
            if c.is_empty() || c == "." || c == ".." {
                Err(bad())
            } else {
                CString::new(c).map_err(|_| bad())
            }
        })
        .collect()
}

fn openat(dir: RawFd, name: &CStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    // SAFETY: name is a valid C string; the returned descriptor is owned by us.
    let fd = unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    // SAFETY: st is written by fstat before use.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open; st is a valid out pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// Opens the folder holding the last component of `comps` (creating missing folders
/// owned by `owner` when given), refusing links. Returns it and the last component.
fn walk_parent(
    root: RawFd,
    comps: &[CString],
    create: Option<(u32, u32)>,
) -> io::Result<(Option<OwnedFd>, &CStr)> {
    let (last, dirs) = comps.split_last().ok_or(io::ErrorKind::InvalidInput)?;
    let mut cur: Option<OwnedFd> = None;
    for d in dirs {
        let at = cur.as_ref().map_or(root, |f| f.as_raw_fd());
        if let Some((uid, gid)) = create {
            // SAFETY: d is a valid C string.
            if unsafe { libc::mkdirat(at, d.as_ptr(), 0o755) } == 0 {
                let f = openat(at, d, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
                // SAFETY: f is open.
                unsafe { libc::fchown(f.as_raw_fd(), uid, gid) };
                cur = Some(f);
                continue;
            }
        }
        cur = Some(openat(at, d, libc::O_RDONLY | libc::O_DIRECTORY, 0)?);
    }
    Ok((cur, last.as_c_str()))
}

/// Writes a new file `rel` under the folder `root` (creating parent folders), owned by
/// `uid:gid`, mode 0755 when `executable` else 0644. Refuses links and existing files.
pub fn write_file(
    root: RawFd,
    rel: &str,
    content: &[u8],
    executable: bool,
    uid: u32,
    gid: u32,
) -> Result<(), SandboxError> {
    let comps = check_relative(rel)?;
    let io_err = |source| SandboxError::Io {
        op: "write box file",
        path: rel.into(),
        source,
    };
    let (parent, last) = walk_parent(root, &comps, Some((uid, gid))).map_err(io_err)?;
    let at = parent.as_ref().map_or(root, |f| f.as_raw_fd());
    let mode = if executable { 0o755 } else { 0o644 };
    let f = openat(
        at,
        last,
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        mode,
    )
    .map_err(io_err)?;
    let mut file = std::fs::File::from(f);
    io::Write::write_all(&mut file, content).map_err(io_err)?;
    // SAFETY: plain syscalls on an open descriptor.
    unsafe {
        if libc::fchown(file.as_raw_fd(), uid, gid) != 0
            || libc::fchmod(file.as_raw_fd(), mode) != 0
        {
            return Err(io_err(io::Error::last_os_error()));
        }
    }
    Ok(())
}

/// Why a file could not be collected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absent {
    /// No such file.
    Missing,
    /// A symlink, folder, FIFO, device or socket: not a regular file.
    NotRegular,
    /// Larger than the cap.
    TooLarge,
}

/// Reads the regular file `rel` under `root`, at most `cap` bytes. Links anywhere in
/// the path, non-regular files and files over `cap` are refused with the reason.
pub fn read_regular(
    root: RawFd,
    rel: &str,
    cap: u64,
) -> Result<Result<Vec<u8>, Absent>, SandboxError> {
    let comps = check_relative(rel)?;
    let map = |e: io::Error| match e.raw_os_error() {
        Some(libc::ENOENT) => Ok(Absent::Missing),
        Some(libc::ELOOP) | Some(libc::ENOTDIR) | Some(libc::ENXIO) => Ok(Absent::NotRegular),
        _ => Err(SandboxError::Io {
            op: "read box file",
            path: rel.into(),
            source: e,
        }),
    };
    let (parent, last) = match walk_parent(root, &comps, None) {
        Ok(x) => x,
        Err(e) => return map(e).map(Err),
    };
    let at = parent.as_ref().map_or(root, |f| f.as_raw_fd());
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    let f = match openat(
        at,
        last,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        0,
    ) {
        Ok(f) => f,
        Err(e) => return map(e).map(Err),
    };
    let st = fstat(f.as_raw_fd()).map_err(|source| SandboxError::Io {
        op: "stat box file",
        path: rel.into(),
        source,
    })?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(Err(Absent::NotRegular));
    }
    if st.st_size as u64 > cap {
        return Ok(Err(Absent::TooLarge));
    }
    let mut out = Vec::with_capacity(st.st_size as usize);
    let file = std::fs::File::from(f);
    io::Read::read_to_end(&mut io::Read::take(&file, cap + 1), &mut out).map_err(|source| {
        SandboxError::Io {
            op: "read box file",
            path: rel.into(),
            source,
        }
    })?;
    if out.len() as u64 > cap {
        return Ok(Err(Absent::TooLarge));
    }
    Ok(Ok(out))
}

/// Deletes everything inside the folder `dir` (never following links: a link is
/// unlinked itself). `budget` is the number of entries this wipe may remove; when it
/// runs out, `Ok(false)` tells the caller to discard the whole box instead (the kernel
/// frees a tmpfs with its mount namespace at once).
pub fn wipe(dir: RawFd, budget: &mut usize) -> io::Result<bool> {
    // fdopendir takes ownership of its descriptor: give it a duplicate.
    // SAFETY: F_DUPFD_CLOEXEC on an open descriptor.
    let dup = unsafe { libc::fcntl(dir, libc::F_DUPFD_CLOEXEC, 3) };
    if dup < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: dup is ours; on success the DIR owns it.
    let d = unsafe { libc::fdopendir(dup) };
    if d.is_null() {
        let e = io::Error::last_os_error();
        // SAFETY: dup is still ours on failure.
        unsafe { libc::close(dup) };
        return Err(e);
    }
    // SAFETY: rewinding a freshly opened DIR (the duplicate shares the offset).
    unsafe { libc::rewinddir(d) };
    let mut names: Vec<CString> = Vec::new();
    loop {
        // SAFETY: d is a valid DIR until closedir below.
        let ent = unsafe { libc::readdir(d) };
        if ent.is_null() {
            break;
        }
        // SAFETY: d_name is a NUL-terminated array inside *ent.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        let b = name.to_bytes();
        if b == b"." || b == b".." {
            continue;
        }
        if *budget == 0 {
            // SAFETY: closing the DIR we opened.
            unsafe { libc::closedir(d) };
            return Ok(false);
        }
        *budget -= 1;
        names.push(name.to_owned());
    }
    // SAFETY: closing the DIR we opened.
    unsafe { libc::closedir(d) };
    for name in names {
        // SAFETY: name is a valid C string; unlinkat never follows links.
        if unsafe { libc::unlinkat(dir, name.as_ptr(), 0) } == 0 {
            continue;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            continue;
        }
        if e.raw_os_error() != Some(libc::EISDIR) {
            return Err(e);
        }
        let sub = openat(dir, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        // A folder the program made unreadable: root can still list it, but make sure.
        // SAFETY: fchmod on an open descriptor.
        unsafe { libc::fchmod(sub.as_raw_fd(), 0o700) };
        if !wipe(sub.as_raw_fd(), budget)? {
            return Ok(false);
        }
        drop(sub);
        // SAFETY: as above, AT_REMOVEDIR on a now empty folder.
        if unsafe { libc::unlinkat(dir, name.as_ptr(), libc::AT_REMOVEDIR) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(true)
}

/// Whether the folder `dir` is empty (a zero-budget [`wipe`] stops at the first entry
/// without removing anything).
pub fn is_empty(dir: RawFd) -> io::Result<bool> {
    wipe(dir, &mut 0)
}

/// The names of the extended attributes of the open file `fd` (ACLs among them).
///
/// Errors: the `flistxattr` error; a filesystem without extended attributes has none.
fn xattr_names(fd: RawFd) -> io::Result<Vec<CString>> {
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: flistxattr writes at most buf.len() bytes into buf.
        let n = unsafe { libc::flistxattr(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            buf.truncate(n as usize);
            break;
        }
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ERANGE) => {
                // SAFETY: a size query (no buffer).
                let want = unsafe { libc::flistxattr(fd, std::ptr::null_mut(), 0) };
                if want < 0 {
                    return Err(io::Error::last_os_error());
                }
                buf.resize(want as usize + 1, 0);
            }
            e if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
            e => return Err(e),
        }
    }
    Ok(buf
        .split(|&b| b == 0)
        .filter(|n| !n.is_empty())
        .filter_map(|n| CString::new(n).ok())
        .collect())
}

/// Removes every extended attribute of the folder `dir` (the box folders themselves
/// survive a [`wipe`], and a program owning `/box` can leave `user.*` attributes of up
/// to the filesystem's limit there: a channel to the box's next run, and memory held
/// meanwhile).
///
/// Errors: listing or removing failed.
fn clear_xattrs(dir: RawFd) -> io::Result<()> {
    for name in xattr_names(dir)? {
        // SAFETY: fremovexattr with a NUL-terminated name.
        if unsafe { libc::fremovexattr(dir, name.as_ptr()) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENODATA) {
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Whether the RAM filesystem holding the wiped folder `dir` really is empty: no data
/// pages in use. A deleted file can outlive its run, held open by a unix socket that
/// sits in its own queue (an `SCM_RIGHTS` cycle the kernel's collector frees later):
/// it keeps its space, so the box's next run would find its disk smaller (QA). Such a
/// box is dropped instead of reused. False when it cannot be told.
fn holds_no_data(dir: RawFd) -> bool {
    // SAFETY: fstatfs into a zeroed statfs.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::fstatfs(dir, &mut st) == 0 && st.f_blocks.saturating_sub(st.f_bfree) == 0
    }
}

/// Whether the folder `dir` has any extended attribute (see [`clear_xattrs`]).
fn has_xattrs(dir: RawFd) -> io::Result<bool> {
    Ok(!xattr_names(dir)?.is_empty())
}

/// Gives a box folder its owner `uid` (and group), `mode` and fixed times (the epoch)
/// back. A program may change the times of a folder it owns to anything
/// (`utimensat`), and the nanoseconds of `/tmp`'s change when it makes a file there:
/// read back by the box's next run, they carried ~60 bits (QA).
pub fn restore_attrs(dir: RawFd, uid: u32, mode: libc::mode_t) {
    let epoch = [libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    }; 2];
    // SAFETY: fchown/fchmod/futimens on a descriptor the caller holds, with a valid
    // array; failures leave the folder as it was (the health checks look at it).
    unsafe {
        libc::fchown(dir, uid, uid);
        libc::fchmod(dir, mode);
        libc::futimens(dir, epoch.as_ptr());
    }
}

/// Makes a used box folder ready for the box's next run: wipes it (within `budget`,
/// see [`wipe`]), removes its extended attributes ([`clear_xattrs`]), checks that no
/// data outlives the wipe ([`holds_no_data`]) and restores its attributes
/// ([`restore_attrs`]). Returns whether the folder is clean; when not, the box must be
/// dropped.
pub fn reset(dir: RawFd, budget: &mut usize, uid: u32, mode: libc::mode_t) -> bool {
    let clean =
        matches!(wipe(dir, budget), Ok(true)) && clear_xattrs(dir).is_ok() && holds_no_data(dir);
    if clean {
        restore_attrs(dir, uid, mode);
    }
    clean
}

/// Whether a box folder is clean: empty, without extended attributes.
///
/// Errors: reading the folder or its attributes failed.
pub fn is_clean(dir: RawFd) -> io::Result<bool> {
    Ok(is_empty(dir)? && !has_xattrs(dir)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn dirfd(p: &std::path::Path) -> OwnedFd {
        OwnedFd::from(std::fs::File::open(p).unwrap())
    }

    #[test]
    fn rejects_bad_relative_paths() {
        for p in ["", "/etc/passwd", "../x", "a/../b", "a//b", "./a"] {
            assert!(check_relative(p).is_err(), "{p}");
        }
        assert_eq!(check_relative("a/b.txt").unwrap().len(), 2);
    }

    #[test]
    fn reads_regular_files_and_refuses_links_anywhere() {
        let t = tempfile::tempdir().unwrap();
        let canary = t.path().join("canary");
        std::fs::write(&canary, b"SECRET").unwrap();
        let b = t.path().join("box");
        std::fs::create_dir(&b).unwrap();
        std::fs::write(b.join("out.txt"), b"42\n").unwrap();
        symlink(&canary, b.join("link")).unwrap();
        symlink(t.path(), b.join("dirlink")).unwrap();
        std::fs::create_dir(b.join("sub")).unwrap();
        let fd = dirfd(&b);
        let fd = fd.as_raw_fd();
        assert_eq!(
            read_regular(fd, "out.txt", 10).unwrap(),
            Ok(b"42\n".to_vec())
        );
        assert_eq!(
            read_regular(fd, "out.txt", 2).unwrap(),
            Err(Absent::TooLarge)
        );
        assert_eq!(
            read_regular(fd, "link", 10).unwrap(),
            Err(Absent::NotRegular)
        );
        assert_eq!(
            read_regular(fd, "dirlink/canary", 10).unwrap(),
            Err(Absent::NotRegular)
        );
        assert_eq!(
            read_regular(fd, "sub", 10).unwrap(),
            Err(Absent::NotRegular)
        );
        assert_eq!(read_regular(fd, "nope", 10).unwrap(), Err(Absent::Missing));
        // Writing through a link is refused and the canary is untouched.
        assert!(write_file(fd, "link", b"x", false, 0, 0).is_err());
        assert!(write_file(fd, "dirlink/new", b"x", false, 0, 0).is_err());
        assert_eq!(std::fs::read(&canary).unwrap(), b"SECRET");
        assert!(!t.path().join("new").exists());
        write_file(fd, "d1/d2/f", b"hi", true, 0, 0).unwrap();
        assert_eq!(std::fs::read(b.join("d1/d2/f")).unwrap(), b"hi");
    }

    #[test]
    fn wipe_removes_everything_but_never_follows_links() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), b"k").unwrap();
        let b = t.path().join("box");
        std::fs::create_dir_all(b.join("a/b/c")).unwrap();
        std::fs::write(b.join("a/b/c/f"), b"x").unwrap();
        symlink(&outside, b.join("a/l")).unwrap();
        let fd = dirfd(&b);
        let mut budget = 100;
        assert!(wipe(fd.as_raw_fd(), &mut budget).unwrap());
        assert_eq!(std::fs::read_dir(&b).unwrap().count(), 0);
        assert!(outside.join("keep").exists());
        // A budget too small asks for the box to be discarded.
        for i in 0..10 {
            std::fs::write(b.join(format!("f{i}")), b"").unwrap();
        }
        let mut budget = 5;
        assert!(!wipe(fd.as_raw_fd(), &mut budget).unwrap());
    }
}
