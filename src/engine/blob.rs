//! The blob store: source code, problem packages and artifacts, by key.
//!
//! Keys are `/`-separated relative names such as `"sources/<id>"` or
//! `"problems/<id>.tar"`. [`ObjectBlobStore`] keeps an [`object_store::ObjectStore`]
//! inside: the local-file store rooted in the data folder now, S3 (or any other
//! object_store backend) later by constructing it with [`ObjectBlobStore::new`] — callers
//! hold an `Arc<dyn BlobStore>` and do not change.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};

/// Errors of a [`BlobStore`].
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// No blob has this key.
    #[error("blob {key} not found")]
    NotFound {
        /// The key looked up.
        key: String,
    },
    /// The key is not a valid blob key (see [`validate_key`]).
    #[error("invalid blob key {key:?}: {reason}")]
    InvalidKey {
        /// The key given.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The backend failed; `context` says during what.
    #[error("blob store error while {context}: {source}")]
    Backend {
        /// The operation, e.g. `"writing blob sources/7f3c…"`.
        context: String,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Result of blob operations.
pub type BlobResult<T> = Result<T, BlobError>;

/// Longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 512;

/// Checks a blob key: 1..=[`MAX_KEY_LEN`] bytes of `[A-Za-z0-9._-]` segments joined by
/// single `/`, no empty, `.` or `..` segment, no leading or trailing `/`. (Keeps keys valid
/// and identical on every object_store backend, and a local-file key inside its root.)
/// Errors: [`BlobError::InvalidKey`].
pub fn validate_key(key: &str) -> BlobResult<()> {
    let bad = |reason| {
        Err(BlobError::InvalidKey {
            key: key.to_string(),
            reason,
        })
    };
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad("it is longer than 512 bytes");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return bad("it has an empty segment (a leading, trailing or doubled '/')");
        }
        if segment == "." || segment == ".." {
            return bad("it has a '.' or '..' segment");
        }
        if !segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return bad("only ASCII letters, digits, '.', '_', '-' and '/' are allowed");
        }
    }
    Ok(())
}

/// Blobs by key. `Send + Sync`, shared as `Arc<dyn BlobStore>`.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug {
    /// Stores `data` under `key`, replacing any blob there (atomically: readers see the old
    /// or the new blob, never a part).
    /// Errors: [`BlobError::InvalidKey`], [`BlobError::Backend`].
    async fn put(&self, key: &str, data: Bytes) -> BlobResult<()>;

    /// The blob under `key`.
    /// Errors: [`BlobError::NotFound`], [`BlobError::InvalidKey`], [`BlobError::Backend`].
    async fn get(&self, key: &str) -> BlobResult<Bytes>;

    /// Deletes the blob under `key`; deleting a missing blob is not an error.
    /// Errors: [`BlobError::InvalidKey`], [`BlobError::Backend`].
    async fn delete(&self, key: &str) -> BlobResult<()>;

    /// Whether a blob is stored under `key`.
    /// Errors: [`BlobError::InvalidKey`], [`BlobError::Backend`].
    async fn exists(&self, key: &str) -> BlobResult<bool>;
}

/// [`BlobStore`] over any [`ObjectStore`].
#[derive(Debug, Clone)]
pub struct ObjectBlobStore {
    /// The backend: local files now, S3 later.
    inner: Arc<dyn ObjectStore>,
    /// The local root folder, when the backend is the local file system (for messages).
    root: Option<PathBuf>,
}

impl ObjectBlobStore {
    /// Wraps any object_store backend (e.g. `AmazonS3Builder::...build()`).
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self { inner, root: None }
    }

    /// The local-file store rooted at `root` (created if missing); keys map to files under it.
    /// Errors: [`BlobError::Backend`] when the folder cannot be created or opened.
    pub fn local(root: &Path) -> BlobResult<Self> {
        std::fs::create_dir_all(root)
            .map_err(|e| backend(format!("creating the blob folder {}", root.display()), e))?;
        let fs = LocalFileSystem::new_with_prefix(root)
            .map_err(|e| backend(format!("opening the blob folder {}", root.display()), e))?;
        Ok(Self {
            inner: Arc::new(fs),
            root: Some(root.to_path_buf()),
        })
    }

    /// The local root folder, when the backend is the local file system.
    pub fn root(&self) -> Option<&Path> {
        self.root.as_deref()
    }
}

fn backend(context: String, e: impl std::error::Error + Send + Sync + 'static) -> BlobError {
    BlobError::Backend {
        context,
        source: Box::new(e),
    }
}

fn object_path(key: &str) -> BlobResult<ObjectPath> {
    validate_key(key)?;
    ObjectPath::parse(key).map_err(|e| backend(format!("parsing blob key {key}"), e))
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn put(&self, key: &str, data: Bytes) -> BlobResult<()> {
        let path = object_path(key)?;
        self.inner
            .put(&path, PutPayload::from_bytes(data))
            .await
            .map_err(|e| backend(format!("writing blob {key}"), e))?;
        Ok(())
    }

    async fn get(&self, key: &str) -> BlobResult<Bytes> {
        let path = object_path(key)?;
        let read = async { self.inner.get(&path).await?.bytes().await };
        match read.await {
            Ok(bytes) => Ok(bytes),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound {
                key: key.to_string(),
            }),
            Err(e) => Err(backend(format!("reading blob {key}"), e)),
        }
    }

    async fn delete(&self, key: &str) -> BlobResult<()> {
        let path = object_path(key)?;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(format!("deleting blob {key}"), e)),
        }
    }

    async fn exists(&self, key: &str) -> BlobResult<bool> {
        let path = object_path(key)?;
        match self.inner.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(backend(format!("looking up blob {key}"), e)),
        }
    }
}

/// Opens the local-file blob store rooted at `root` as the engine's `Arc<dyn BlobStore>`.
/// Errors: as [`ObjectBlobStore::local`].
pub fn open_local(root: &Path) -> BlobResult<Arc<dyn BlobStore>> {
    Ok(Arc::new(ObjectBlobStore::local(root)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_exists_delete_round_trip_on_local_files() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = ObjectBlobStore::local(&dir.path().join("blobs")).unwrap();
        assert!(!blobs.exists("sources/abc").await.unwrap());
        match blobs.get("sources/abc").await {
            Err(BlobError::NotFound { key }) => assert_eq!(key, "sources/abc"),
            other => panic!("expected NotFound, got {other:?}"),
        }
        blobs
            .put("sources/abc", Bytes::from_static(b"int main(){}"))
            .await
            .unwrap();
        assert!(blobs.exists("sources/abc").await.unwrap());
        assert_eq!(
            blobs.get("sources/abc").await.unwrap(),
            Bytes::from_static(b"int main(){}")
        );
        // The key maps to a file under the root.
        assert_eq!(
            std::fs::read(dir.path().join("blobs/sources/abc")).unwrap(),
            b"int main(){}"
        );
        blobs
            .put("sources/abc", Bytes::from_static(b"v2"))
            .await
            .unwrap();
        assert_eq!(
            blobs.get("sources/abc").await.unwrap(),
            Bytes::from_static(b"v2")
        );
        blobs.delete("sources/abc").await.unwrap();
        assert!(!blobs.exists("sources/abc").await.unwrap());
        blobs.delete("sources/abc").await.unwrap();
    }

    #[tokio::test]
    async fn empty_blobs_are_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = ObjectBlobStore::local(dir.path()).unwrap();
        blobs.put("problems/p.tar", Bytes::new()).await.unwrap();
        assert!(blobs.exists("problems/p.tar").await.unwrap());
        assert_eq!(blobs.get("problems/p.tar").await.unwrap().len(), 0);
    }

    #[tokio::test]
    async fn keys_that_could_escape_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = ObjectBlobStore::local(&dir.path().join("root")).unwrap();
        for key in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "a/",
            "a/./b",
            "a b",
            "a\\b",
            "é",
        ] {
            match blobs.put(key, Bytes::from_static(b"x")).await {
                Err(BlobError::InvalidKey { .. }) => {}
                other => panic!("key {key:?}: expected InvalidKey, got {other:?}"),
            }
        }
        assert!(validate_key(&"a".repeat(MAX_KEY_LEN)).is_ok());
        assert!(validate_key(&"a".repeat(MAX_KEY_LEN + 1)).is_err());
        assert!(validate_key("problems/aplusb-2.tar.gz").is_ok());
        // Nothing was written outside (or inside) the root.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(
            std::fs::read_dir(dir.path().join("root")).unwrap().count(),
            0
        );
    }
}
