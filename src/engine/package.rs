//! Unpacking an uploaded problem package (tar, tar.gz or zip) into an empty folder,
//! refusing anything that could reach outside it: absolute paths and `..` components,
//! symbolic links whose target resolves outside the package, hard links, device files,
//! and archives that unpack to more than a limit (a decompression bomb).
//!
//! Files are created with `O_CREAT | O_EXCL | O_NOFOLLOW` and every folder on the way is
//! checked not to be a symlink, so a link placed by an earlier entry is never written
//! through. Links themselves are checked after unpacking by resolving them on disk.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// Most entries an archive may hold.
pub const MAX_ENTRIES: usize = 20_000;

/// Why a package was refused. Every variant but [`PackageError::Io`] is the uploader's
/// fault (a 4xx); `Io` is the server's (a 500).
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// Neither tar (optionally gzip-compressed) nor zip.
    #[error("not a tar, tar.gz or zip archive")]
    Format,
    /// The archive is damaged.
    #[error("corrupt archive: {0}")]
    Corrupt(String),
    /// An entry's path is absolute or has a `..` component.
    #[error("entry {0:?} escapes the package (absolute path or `..`)")]
    Traversal(String),
    /// A symbolic link whose target is absolute or resolves outside the package.
    #[error("entry {name:?} is a link to {target:?}, outside the package")]
    LinkOutside {
        /// The link's path in the archive.
        name: String,
        /// Its target.
        target: String,
    },
    /// An entry of a kind packages may not hold (hard link, device, FIFO).
    #[error("entry {name:?}: {kind} entries are not allowed in a problem package")]
    Kind {
        /// The entry's path in the archive.
        name: String,
        /// What it is.
        kind: &'static str,
    },
    /// An entry's path is used twice, or passes through a file or a link.
    #[error("entry {0:?} clashes with an earlier entry")]
    Clash(String),
    /// The unpacked size exceeds the limit (bytes).
    #[error("package unpacks to more than {0} bytes")]
    TooLarge(u64),
    /// More than [`MAX_ENTRIES`] entries.
    #[error("package has more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    /// Neither the top folder nor a single top-level folder holds `problem.yaml` or `data/`.
    #[error("no problem package found: expected problem.yaml or data/ at the top, or in a single top folder")]
    NoPackage,
    /// Writing on the server failed.
    #[error("unpacking on the server: {0}")]
    Io(#[from] io::Error),
}

impl PackageError {
    /// Whether the server, not the upload, is at fault.
    pub fn is_server_fault(&self) -> bool {
        matches!(self, PackageError::Io(_))
    }
}

/// Unpacks `archive` into `dest` (an existing, empty folder) writing at most `max_bytes`
/// bytes of file content, and returns the package's root: `dest` itself, or its single
/// top folder when the archive wraps the package in one.
///
/// Errors: see [`PackageError`]; on error `dest` holds a partial tree the caller removes.
pub fn unpack(archive: &[u8], dest: &Path, max_bytes: u64) -> Result<PathBuf, PackageError> {
    let mut u = Unpacker {
        dest,
        budget: max_bytes,
        limit: max_bytes,
        entries: 0,
        links: Vec::new(),
    };
    if archive.starts_with(b"PK\x03\x04") || archive.starts_with(b"PK\x05\x06") {
        u.zip(archive)?;
    } else if archive.starts_with(&[0x1f, 0x8b]) {
        u.tar(flate2::read::GzDecoder::new(archive))?;
    } else if archive.len() >= 512 && &archive[257..262] == b"ustar" {
        u.tar(archive)?;
    } else {
        return Err(PackageError::Format);
    }
    u.check_links()?;
    find_root(dest)
}

struct Unpacker<'a> {
    dest: &'a Path,
    budget: u64,
    limit: u64,
    entries: usize,
    links: Vec<(PathBuf, String, String)>,
}

impl Unpacker<'_> {
    fn tar(&mut self, r: impl Read) -> Result<(), PackageError> {
        let mut ar = tar::Archive::new(r);
        let entries = ar.entries().map_err(corrupt)?;
        for entry in entries {
            let mut e = entry.map_err(corrupt)?;
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let kind = e.header().entry_type();
            use tar::EntryType as T;
            match kind {
                T::Directory => {
                    let rel = self.entry(&name)?;
                    self.mkdirs(&rel, &name)?;
                }
                T::Regular | T::Continuous => {
                    let rel = self.entry(&name)?;
                    let mode = e.header().mode().unwrap_or(0o644);
                    self.file(&rel, &name, &mut e, mode)?;
                }
                T::Symlink => {
                    let rel = self.entry(&name)?;
                    let target = e
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    self.symlink(&rel, &name, &target)?;
                }
                T::Link => {
                    return Err(PackageError::Kind {
                        name,
                        kind: "hard link",
                    })
                }
                T::Char | T::Block => {
                    return Err(PackageError::Kind {
                        name,
                        kind: "device",
                    })
                }
                T::Fifo => return Err(PackageError::Kind { name, kind: "FIFO" }),
                // pax/GNU metadata records are consumed by the tar crate; skip anything else
                // that carries no file (e.g. global pax headers).
                T::XGlobalHeader | T::XHeader | T::GNULongName | T::GNULongLink => {}
                _ => {
                    return Err(PackageError::Kind {
                        name,
                        kind: "unknown",
                    })
                }
            }
        }
        Ok(())
    }

    fn zip(&mut self, bytes: &[u8]) -> Result<(), PackageError> {
        let mut ar = zip::ZipArchive::new(Cursor::new(bytes))
            .map_err(|e| PackageError::Corrupt(e.to_string()))?;
        for i in 0..ar.len() {
            let mut f = ar
                .by_index(i)
                .map_err(|e| PackageError::Corrupt(e.to_string()))?;
            let name = String::from_utf8_lossy(f.name_raw()).into_owned();
            let rel = self.entry(&name)?;
            let mode = f.unix_mode().unwrap_or(0o644);
            if f.is_dir() {
                self.mkdirs(&rel, &name)?;
            } else if mode & 0o170000 == 0o120000 {
                let mut target = String::new();
                f.by_ref()
                    .take(4096)
                    .read_to_string(&mut target)
                    .map_err(corrupt)?;
                self.symlink(&rel, &name, &target)?;
            } else if mode & 0o170000 == 0 || mode & 0o170000 == 0o100000 {
                self.file(&rel, &name, &mut f, mode)?;
            } else {
                return Err(PackageError::Kind {
                    name,
                    kind: "special file",
                });
            }
        }
        Ok(())
    }

    /// Checks an entry name and returns it as a clean relative path.
    fn entry(&mut self, name: &str) -> Result<PathBuf, PackageError> {
        self.entries += 1;
        if self.entries > MAX_ENTRIES {
            return Err(PackageError::TooManyEntries);
        }
        clean_relative(Path::new(name)).ok_or_else(|| PackageError::Traversal(name.to_string()))
    }

    /// Creates `rel` and its parents under dest; none may exist as anything but a real folder.
    fn mkdirs(&self, rel: &Path, name: &str) -> Result<(), PackageError> {
        let mut at = self.dest.to_path_buf();
        for c in rel.components() {
            at.push(c);
            match fs::symlink_metadata(&at) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(PackageError::Clash(name.to_string())),
                Err(e) if e.kind() == io::ErrorKind::NotFound => fs::create_dir(&at)?,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn file(
        &mut self,
        rel: &Path,
        name: &str,
        r: &mut dyn Read,
        mode: u32,
    ) -> Result<(), PackageError> {
        if rel.as_os_str().is_empty() {
            return Err(PackageError::Clash(name.to_string()));
        }
        if let Some(parent) = rel.parent() {
            self.mkdirs(parent, name)?;
        }
        let path = self.dest.join(rel);
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(if mode & 0o111 != 0 { 0o755 } else { 0o644 })
            .open(&path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => PackageError::Clash(name.to_string()),
                _ => PackageError::Io(e),
            })?;
        // Count what is actually decompressed, never what a header claims.
        let mut buf = [0u8; 64 * 1024];
        loop {
            let n = r.read(&mut buf).map_err(corrupt)?;
            if n == 0 {
                break;
            }
            if n as u64 > self.budget {
                return Err(PackageError::TooLarge(self.limit));
            }
            self.budget -= n as u64;
            out.write_all(&buf[..n])?;
        }
        Ok(())
    }

    fn symlink(&mut self, rel: &Path, name: &str, target: &str) -> Result<(), PackageError> {
        let outside = || PackageError::LinkOutside {
            name: name.to_string(),
            target: target.to_string(),
        };
        let t = Path::new(target);
        if target.is_empty() || t.is_absolute() {
            return Err(outside());
        }
        // Lexically, from the link's folder; chains through other links are checked on disk
        // after unpacking (check_links).
        let joined = rel.parent().unwrap_or(Path::new("")).join(t);
        if normalize_within(&joined).is_none() {
            return Err(outside());
        }
        if let Some(parent) = rel.parent() {
            self.mkdirs(parent, name)?;
        }
        let path = self.dest.join(rel);
        std::os::unix::fs::symlink(t, &path).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => PackageError::Clash(name.to_string()),
            _ => PackageError::Io(e),
        })?;
        self.links
            .push((path, name.to_string(), target.to_string()));
        Ok(())
    }

    /// Every link must resolve, on disk, to something inside the package.
    fn check_links(&self) -> Result<(), PackageError> {
        let root = fs::canonicalize(self.dest)?;
        for (path, name, target) in &self.links {
            match fs::canonicalize(path) {
                Ok(p) if p.starts_with(&root) => {}
                _ => {
                    return Err(PackageError::LinkOutside {
                        name: name.clone(),
                        target: target.clone(),
                    })
                }
            }
        }
        Ok(())
    }
}

fn corrupt(e: io::Error) -> PackageError {
    PackageError::Corrupt(e.to_string())
}

/// `p` without `.` components, or `None` when it is absolute or has `..`.
fn clean_relative(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Resolves `..` lexically; `None` when it climbs above the start.
fn normalize_within(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn is_package(dir: &Path) -> bool {
    dir.join("problem.yaml").is_file() || dir.join("data").is_dir()
}

fn find_root(dest: &Path) -> Result<PathBuf, PackageError> {
    if is_package(dest) {
        return Ok(dest.to_path_buf());
    }
    let entries: Vec<_> = fs::read_dir(dest)?.collect::<Result<_, _>>()?;
    if let [only] = entries.as_slice() {
        if only.file_type()?.is_dir() && is_package(&only.path()) {
            return Ok(only.path());
        }
    }
    Err(PackageError::NoPackage)
}

/// Marks `dir` and everything under it read-only for group and others (packages are
/// read by sandboxed runs through read-only mounts only).
pub fn tighten_modes(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        if ft.is_dir() {
            tighten_modes(&entry.path())?;
        } else if ft.is_file() {
            let m = entry.metadata()?.permissions().mode();
            fs::set_permissions(entry.path(), fs::Permissions::from_mode(m & 0o755))?;
        }
    }
    Ok(())
}

/// Reads a whole file but at most `limit` bytes; `None` when it is larger.
pub fn read_capped(path: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let mut v = Vec::new();
    File::open(path)?.take(limit + 1).read_to_end(&mut v)?;
    Ok((v.len() as u64 <= limit).then_some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar header with a raw name (the tar crate's builder refuses `..`, which is the point).
    fn raw_header(name: &str, kind: tar::EntryType, size: u64, link: Option<&str>) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                old.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_cksum();
        h
    }

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let h = raw_header(name, *kind, data.len() as u64, *link);
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    use tar::EntryType as T;

    fn unpack_tmp(bytes: &[u8], max: u64) -> (tempfile::TempDir, Result<PathBuf, PackageError>) {
        let d = tempfile::tempdir().unwrap();
        let r = unpack(bytes, d.path(), max);
        (d, r)
    }

    #[test]
    fn unpacks_a_wrapped_tar_and_a_gzipped_one() {
        let t = tar_of(&[
            ("pkg/problem.yaml", T::Regular, b"name: x\n", None),
            ("pkg/data/secret/1.in", T::Regular, b"1 2\n", None),
            (
                "pkg/data/sample/link.in",
                T::Symlink,
                b"",
                Some("../secret/1.in"),
            ),
        ]);
        let (d, r) = unpack_tmp(&t, 1 << 20);
        let root = r.unwrap();
        assert_eq!(root, d.path().join("pkg"));
        assert_eq!(
            fs::read(root.join("data/sample/link.in")).unwrap(),
            b"1 2\n"
        );

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&t).unwrap();
        let (_d, r) = unpack_tmp(&gz.finish().unwrap(), 1 << 20);
        assert!(r.is_ok());
    }

    #[test]
    fn refuses_traversal() {
        for name in ["../evil", "pkg/../../evil", "/etc/evil"] {
            let t = tar_of(&[(name, T::Regular, b"x", None)]);
            let (_d, r) = unpack_tmp(&t, 1 << 20);
            assert!(
                matches!(r, Err(PackageError::Traversal(_))),
                "{name}: {r:?}"
            );
        }
    }

    #[test]
    fn refuses_links_out_of_the_package() {
        for target in ["/etc/passwd", "../../../etc/passwd", "../../.."] {
            let t = tar_of(&[("p/data/x", T::Symlink, b"", Some(target))]);
            let (_d, r) = unpack_tmp(&t, 1 << 20);
            assert!(
                matches!(r, Err(PackageError::LinkOutside { .. })),
                "{target}: {r:?}"
            );
        }
        // A chain of links, each inside lexically, that escapes on disk.
        let t = tar_of(&[
            ("a", T::Symlink, b"", Some(".")),
            ("b/c", T::Symlink, b"", Some("../a/..")),
            ("problem.yaml", T::Regular, b"", None),
        ]);
        let (_d, r) = unpack_tmp(&t, 1 << 20);
        assert!(matches!(r, Err(PackageError::LinkOutside { .. })), "{r:?}");
    }

    #[test]
    fn never_writes_through_a_link() {
        let t = tar_of(&[
            ("d", T::Symlink, b"", Some("sub")),
            ("sub/keep", T::Regular, b"", None),
            ("d/file", T::Regular, b"pwned", None),
        ]);
        let (d, r) = unpack_tmp(&t, 1 << 20);
        assert!(matches!(r, Err(PackageError::Clash(_))), "{r:?}");
        assert!(!d.path().join("sub/file").exists());
    }

    #[test]
    fn refuses_hard_links_and_devices() {
        let t = tar_of(&[("h", T::Link, b"", Some("/etc/shadow"))]);
        assert!(matches!(
            unpack_tmp(&t, 1 << 20).1,
            Err(PackageError::Kind {
                kind: "hard link",
                ..
            })
        ));
        let t = tar_of(&[("dev", T::Char, b"", None)]);
        assert!(matches!(
            unpack_tmp(&t, 1 << 20).1,
            Err(PackageError::Kind { kind: "device", .. })
        ));
    }

    #[test]
    fn refuses_a_decompression_bomb() {
        let zeros = vec![0u8; 4 << 20];
        let t = tar_of(&[("problem.yaml", T::Regular, &zeros, None)]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&t).unwrap();
        let gz = gz.finish().unwrap();
        assert!(gz.len() < 64 << 10);
        let (_d, r) = unpack_tmp(&gz, 1 << 20);
        assert!(matches!(r, Err(PackageError::TooLarge(1048576))), "{r:?}");
    }

    #[test]
    fn zip_packages_and_zip_traversal() {
        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default();
        w.start_file("problem.yaml", opts).unwrap();
        w.write_all(b"name: z\n").unwrap();
        w.add_symlink("data/escape", "../../../etc/passwd", opts)
            .unwrap();
        let bytes = w.finish().unwrap().into_inner();
        let (_d, r) = unpack_tmp(&bytes, 1 << 20);
        assert!(matches!(r, Err(PackageError::LinkOutside { .. })), "{r:?}");

        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("../../evil", opts).unwrap();
        w.write_all(b"x").unwrap();
        let bytes = w.finish().unwrap().into_inner();
        assert!(matches!(
            unpack_tmp(&bytes, 1 << 20).1,
            Err(PackageError::Traversal(_))
        ));

        let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
        w.start_file("p/problem.yaml", opts).unwrap();
        w.write_all(b"name: z\n").unwrap();
        let bytes = w.finish().unwrap().into_inner();
        let (d, r) = unpack_tmp(&bytes, 1 << 20);
        assert_eq!(r.unwrap(), d.path().join("p"));
    }

    #[test]
    fn refuses_other_formats_and_non_packages() {
        assert!(matches!(
            unpack_tmp(b"hello", 100).1,
            Err(PackageError::Format)
        ));
        let t = tar_of(&[
            ("a/x", T::Regular, b"", None),
            ("b/y", T::Regular, b"", None),
        ]);
        assert!(matches!(
            unpack_tmp(&t, 100).1,
            Err(PackageError::NoPackage)
        ));
    }
}
