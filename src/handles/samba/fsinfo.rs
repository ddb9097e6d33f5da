//! What the share's directory on disk tells us: inode numbers (the protocol's FileId and
//! ParentId) and whether a target path exists.
//!
//! smbstatus's text form has no inode, and a path with no open handle appears in no listing,
//! so both come from `stat` on the share's directory, which the service must see as smbd
//! does (same host, same mounts).

use std::collections::HashMap;
use std::io::ErrorKind;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use jiff::Timestamp;

use crate::handles::{PathKind, PathProperties};
use crate::protocol::StorageError;

/// What a target path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory (or the share root).
    Directory,
    /// Anything else smbd can open (a file; a symlink's target decides).
    File,
}

/// Why a target path could not be used.
#[derive(Debug)]
pub enum LookupError {
    /// A 404 the protocol defines (`ResourceNotFound`, `ParentNotFound`).
    NotFound(StorageError),
    /// stat failed for another reason (permissions, I/O).
    Io(String),
}

/// Looks a share-relative path up on disk: `ResourceNotFound` when its last segment is
/// missing, `ParentNotFound` when a directory above it is missing or is a file. `.` and `..`
/// segments are refused as missing without touching the disk, so a target never leaves
/// the share.
pub fn lookup(share_root: &Path, rel: &str) -> Result<Kind, LookupError> {
    let segments: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    if let Some(i) = segments.iter().position(|s| *s == "." || *s == "..") {
        let err = if i + 1 == segments.len() {
            StorageError::resource_not_found()
        } else {
            StorageError::parent_not_found()
        };
        return Err(LookupError::NotFound(err));
    }
    let full = segments
        .iter()
        .fold(share_root.to_path_buf(), |p, s| p.join(s));
    match std::fs::metadata(&full) {
        Ok(m) if m.is_dir() => Ok(Kind::Directory),
        Ok(_) => Ok(Kind::File),
        Err(e) if is_missing(&e) => {
            let parent = segments[..segments.len().saturating_sub(1)]
                .iter()
                .fold(share_root.to_path_buf(), |p, s| p.join(s));
            match std::fs::metadata(&parent) {
                Ok(m) if m.is_dir() => {
                    Err(LookupError::NotFound(StorageError::resource_not_found()))
                }
                Ok(_) => Err(LookupError::NotFound(StorageError::parent_not_found())),
                Err(e) if is_missing(&e) => {
                    Err(LookupError::NotFound(StorageError::parent_not_found()))
                }
                Err(e) => Err(LookupError::Io(format!(
                    "stat of a parent directory failed: {e}"
                ))),
            }
        }
        Err(e) => Err(LookupError::Io(format!("stat failed: {e}"))),
    }
}

/// The properties of a share-relative path, for Get File / Directory Properties: the 404s of
/// [`lookup`], and a path that resolves outside the share (through a symbolic link, which
/// smbd refuses with its default `wide links = no`) is `ResourceNotFound` too, so nothing
/// outside the share is ever described. Bounded: a few `stat` calls and one `realpath`.
pub fn properties(share_root: &Path, rel: &str) -> Result<PathProperties, LookupError> {
    let kind = lookup(share_root, rel)?;
    let io = |what: &str, e: std::io::Error| LookupError::Io(format!("{what} failed: {e}"));
    let root = share_root
        .canonicalize()
        .map_err(|e| io("resolving the share's directory", e))?;
    let segments: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    let full = segments.iter().fold(root.clone(), |p, s| p.join(s));
    let real = full.canonicalize().map_err(|e| {
        if is_missing(&e) {
            LookupError::NotFound(StorageError::resource_not_found())
        } else {
            io("resolving the path", e)
        }
    })?;
    if !real.starts_with(&root) {
        return Err(LookupError::NotFound(StorageError::resource_not_found()));
    }
    let meta = std::fs::metadata(&real).map_err(|e| io("stat", e))?;
    let (file_id, parent_id) = if real == root {
        (0, 0)
    } else {
        let parent = real.parent().unwrap_or(&root);
        let parent_id = if parent == root {
            0
        } else {
            std::fs::metadata(parent)
                .map_err(|e| io("stat of the parent directory", e))?
                .ino()
        };
        (meta.ino(), parent_id)
    };
    let time = |secs: i64, nanos: i64| {
        Timestamp::new(secs, i32::try_from(nanos).unwrap_or(0)).unwrap_or(Timestamp::UNIX_EPOCH)
    };
    let last_write = time(meta.mtime(), meta.mtime_nsec());
    let changed = time(meta.ctime(), meta.ctime_nsec());
    // Not every file system records a birth time; the last write is the closest it has.
    let created = meta
        .created()
        .ok()
        .and_then(|t| Timestamp::try_from(t).ok())
        .unwrap_or(last_write);
    Ok(PathProperties {
        kind: match kind {
            Kind::Directory => PathKind::Directory,
            Kind::File => PathKind::File,
        },
        file_id,
        parent_id,
        size: if kind == Kind::File { meta.size() } else { 0 },
        created,
        last_write,
        changed,
        read_only: meta.mode() & 0o222 == 0,
    })
}

fn is_missing(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::NotFound | ErrorKind::NotADirectory | ErrorKind::InvalidInput
    )
}

/// Inode lookups for one page of handles, remembering each path once (siblings share a
/// parent).
pub struct Inodes<'a> {
    root: &'a Path,
    cache: HashMap<String, u64>,
}

impl<'a> Inodes<'a> {
    /// Lookups below `root`.
    pub fn new(root: &'a Path) -> Self {
        Self {
            root,
            cache: HashMap::new(),
        }
    }

    /// `(FileId, ParentId)` of a share-relative path: inode numbers, 0 for the share root
    /// (the protocol's convention) and 0 when the file is gone from disk (deleted while open).
    pub fn ids(&mut self, rel: &str) -> (u64, u64) {
        if rel.is_empty() {
            return (0, 0);
        }
        let parent = rel.rsplit_once('/').map_or("", |(p, _)| p);
        (self.inode(rel), self.inode(parent))
    }

    fn inode(&mut self, rel: &str) -> u64 {
        if rel.is_empty() {
            return 0;
        }
        if let Some(&ino) = self.cache.get(rel) {
            return ino;
        }
        let ino = std::fs::symlink_metadata(self.root.join(rel)).map_or(0, |m| m.ino());
        self.cache.insert(rel.to_owned(), ino);
        ino
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    fn code(r: Result<Kind, LookupError>) -> String {
        match r {
            Ok(k) => format!("{k:?}"),
            Err(LookupError::NotFound(e)) => e.code.to_string(),
            Err(LookupError::Io(m)) => m,
        }
    }

    #[test]
    fn lookups_and_inodes() {
        let dir = std::env::temp_dir().join(format!("sh-fsinfo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("a/f.txt"), b"x").unwrap();

        assert_eq!(code(lookup(&dir, "")), "Directory");
        assert_eq!(code(lookup(&dir, "a/b")), "Directory");
        assert_eq!(code(lookup(&dir, "a/f.txt")), "File");
        assert_eq!(
            code(lookup(&dir, "a/nope")),
            ErrorCode::ResourceNotFound.to_string()
        );
        assert_eq!(
            code(lookup(&dir, "nope/x")),
            ErrorCode::ParentNotFound.to_string()
        );
        assert_eq!(
            code(lookup(&dir, "a/f.txt/x")),
            ErrorCode::ParentNotFound.to_string()
        );
        assert_eq!(
            code(lookup(&dir, "a/..")),
            ErrorCode::ResourceNotFound.to_string()
        );
        assert_eq!(
            code(lookup(&dir, "../etc/passwd")),
            ErrorCode::ParentNotFound.to_string()
        );

        let mut inodes = Inodes::new(&dir);
        let (f, p) = inodes.ids("a/f.txt");
        assert_eq!(f, std::fs::metadata(dir.join("a/f.txt")).unwrap().ino());
        assert_eq!(p, std::fs::metadata(dir.join("a")).unwrap().ino());
        assert_eq!(inodes.ids("a"), (p, 0), "a child of the root has parent 0");
        assert_eq!(inodes.ids(""), (0, 0));
        assert_eq!(inodes.ids("gone.txt").0, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn not_found(r: Result<PathProperties, LookupError>) -> String {
        match r {
            Err(LookupError::NotFound(e)) => e.code.to_string(),
            Err(LookupError::Io(m)) => format!("io: {m}"),
            Ok(p) => format!("found {p:?}"),
        }
    }

    #[test]
    fn properties_of_files_and_directories_never_outside_the_share() {
        let base = std::env::temp_dir().join(format!("sh-fsprops-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = base.join("share");
        let outside = base.join("outside");
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(dir.join("a/f.txt"), b"hello").unwrap();
        std::fs::write(outside.join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("escape")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), dir.join("a/leak")).unwrap();
        std::os::unix::fs::symlink("b", dir.join("a/inside")).unwrap();

        let root = properties(&dir, "").unwrap();
        assert_eq!(
            (root.kind, root.file_id, root.parent_id),
            (PathKind::Directory, 0, 0)
        );
        let a = properties(&dir, "a").unwrap();
        assert_eq!((a.kind, a.parent_id), (PathKind::Directory, 0));
        assert_eq!(a.file_id, std::fs::metadata(dir.join("a")).unwrap().ino());
        let f = properties(&dir, "a/f.txt").unwrap();
        assert_eq!(
            (f.kind, f.size, f.parent_id),
            (PathKind::File, 5, a.file_id)
        );
        assert!(!f.read_only);
        let b = properties(&dir, "a/inside").unwrap();
        assert_eq!(
            b.kind,
            PathKind::Directory,
            "a link within the share is followed"
        );

        assert_eq!(not_found(properties(&dir, "escape")), "ResourceNotFound");
        assert_eq!(
            not_found(properties(&dir, "escape/secret")),
            "ResourceNotFound"
        );
        assert_eq!(not_found(properties(&dir, "a/leak")), "ResourceNotFound");
        assert_eq!(not_found(properties(&dir, "../outside")), "ParentNotFound");
        assert_eq!(not_found(properties(&dir, "a/nope")), "ResourceNotFound");
        assert_eq!(not_found(properties(&dir, "a/f.txt/x")), "ParentNotFound");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
