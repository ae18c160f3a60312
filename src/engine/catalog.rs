//! The problems a server judges: packages unpacked under `<data>/problems/<id>/`, their
//! metadata in the [`Store`], and the loaded [`Problem`]s in memory for the workers and
//! the API's validation.
//!
//! A package is replaced atomically: the new one is unpacked and loaded beside the old,
//! then renamed into place; jobs already judging keep their `Arc<Problem>` (whose test
//! files they opened from the old folder, which stays until the next replacement).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use crate::engine::package::{self, PackageError};
use crate::engine::store::{ProblemMeta, Store, StoreError};
use crate::judge::problem::Problem;

/// Why a problem could not be added.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The id is not a plain short name.
    #[error("invalid problem id {0:?}: use 1-64 of a-z, 0-9, '-' and '_', starting with a letter or digit")]
    InvalidId(String),
    /// The archive was refused.
    #[error(transparent)]
    Package(#[from] PackageError),
    /// The package does not load as a Kattis problem package.
    #[error("problem package {id:?} does not load: {reason}")]
    Invalid {
        /// Problem id.
        id: String,
        /// The loader's message.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The data folder could not be written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// Path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl CatalogError {
    /// Whether the uploader (4xx), not the server (5xx), is at fault.
    pub fn is_client_fault(&self) -> bool {
        match self {
            CatalogError::InvalidId(_) | CatalogError::Invalid { .. } => true,
            CatalogError::Package(p) => !p.is_server_fault(),
            CatalogError::Store(_) | CatalogError::Io { .. } => false,
        }
    }
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CatalogError + 'a {
    move |source| CatalogError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `id` is a valid problem id (Kattis short names: lower-case letters, digits,
/// `-` and `_`).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && id.as_bytes()[0].is_ascii_alphanumeric()
}

/// Loaded problems by id.
#[derive(Debug)]
pub struct Catalog {
    root: PathBuf,
    problems: RwLock<BTreeMap<String, Arc<Problem>>>,
}

/// The metadata row of a loaded problem.
pub fn meta_of(p: &Problem, location: &Path) -> ProblemMeta {
    let problem_type = if p.is_interactive() {
        "interactive"
    } else if p.is_scoring() {
        "scoring"
    } else {
        "pass-fail"
    };
    ProblemMeta {
        id: p.id.clone(),
        name: p.name.clone(),
        problem_type: problem_type.to_string(),
        time_limit_ms: p.time_limit_ms(),
        memory_limit_bytes: p.memory_limit_bytes(),
        test_count: p.test_count() as u32,
        location: location.display().to_string(),
        updated_at: OffsetDateTime::now_utc(),
    }
}

fn load_blocking(dir: PathBuf) -> Result<Problem, String> {
    Problem::load(&dir).map_err(|e| e.to_string())
}

/// Loads the package at `dir` on a blocking thread; a failure is the package's fault.
async fn load_checked(id: &str, dir: PathBuf) -> Result<Problem, CatalogError> {
    let invalid = |reason: String| CatalogError::Invalid {
        id: id.to_string(),
        reason,
    };
    tokio::task::spawn_blocking(move || load_blocking(dir))
        .await
        .map_err(|e| invalid(format!("the loader panicked: {e}")))?
        .map_err(invalid)
}

impl Catalog {
    /// An empty catalog keeping packages under `root` (`<data>/problems`).
    pub fn new(root: PathBuf) -> Self {
        Catalog {
            root,
            problems: RwLock::new(BTreeMap::new()),
        }
    }

    /// The loaded problem `id`.
    pub fn get(&self, id: &str) -> Option<Arc<Problem>> {
        self.problems
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
    }

    /// Every loaded problem, by id.
    pub fn all(&self) -> Vec<Arc<Problem>> {
        self.problems
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    fn insert(&self, p: Problem) -> Arc<Problem> {
        let p = Arc::new(p);
        self.problems
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(p.id.clone(), p.clone());
        p
    }

    /// Loads every problem the store lists. A package that no longer loads is skipped with
    /// a warning (its submissions then end in IE), never stopping the server. Returns how
    /// many loaded.
    pub async fn load_from_store(&self, store: &dyn Store) -> Result<usize, CatalogError> {
        let mut n = 0;
        for meta in store.list_problems().await? {
            let dir = PathBuf::from(&meta.location);
            match tokio::task::spawn_blocking(move || load_blocking(dir)).await {
                Ok(Ok(p)) if p.id == meta.id => {
                    self.insert(p);
                    n += 1;
                }
                Ok(Ok(p)) => {
                    tracing::warn!(id = %meta.id, loaded = %p.id, "problem folder name changed; skipped")
                }
                Ok(Err(e)) => tracing::warn!(id = %meta.id, "problem no longer loads: {e}"),
                Err(e) => tracing::warn!(id = %meta.id, "loading the problem panicked: {e}"),
            }
        }
        Ok(n)
    }

    /// Copies every package folder found in `dir` (folders holding `problem.yaml` or
    /// `data/`) into the catalog. Returns the ids added; packages that do not load are
    /// skipped with a warning.
    pub async fn import_folder(
        &self,
        store: &dyn Store,
        dir: &Path,
    ) -> Result<Vec<String>, CatalogError> {
        let mut added = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io("reading", dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir() && (p.join("problem.yaml").is_file() || p.join("data").is_dir()))
            .collect();
        entries.sort();
        for src in entries {
            let Some(id) = src.file_name().and_then(|n| n.to_str()).map(str::to_string) else {
                continue;
            };
            if !valid_id(&id) {
                tracing::warn!("skipping {}: not a valid problem id", src.display());
                continue;
            }
            let staging = self.staging_dir()?;
            let copy = staging.path().join(&id);
            let src2 = src.clone();
            let copy2 = copy.clone();
            tokio::task::spawn_blocking(move || copy_tree(&src2, &copy2))
                .await
                .map_err(|e| CatalogError::Io {
                    op: "copying",
                    path: src.clone(),
                    source: std::io::Error::other(e),
                })?
                .map_err(io("copying", &src))?;
            match self.install(store, &id, copy).await {
                Ok(_) => added.push(id),
                Err(e @ CatalogError::Invalid { .. }) => {
                    tracing::warn!("skipping {}: {e}", src.display())
                }
                Err(e) => return Err(e),
            }
        }
        Ok(added)
    }

    /// Installs an uploaded archive (tar, tar.gz or zip) as problem `id`, replacing any
    /// earlier version, unpacking at most `max_unpacked` bytes.
    pub async fn upload(
        &self,
        store: &dyn Store,
        id: &str,
        archive: bytes::Bytes,
        max_unpacked: u64,
    ) -> Result<ProblemMeta, CatalogError> {
        if !valid_id(id) {
            return Err(CatalogError::InvalidId(id.to_string()));
        }
        let staging = self.staging_dir()?;
        let unpack_at = staging.path().join("unpacked");
        std::fs::create_dir(&unpack_at).map_err(io("creating", &unpack_at))?;
        let at = unpack_at.clone();
        let root =
            tokio::task::spawn_blocking(move || package::unpack(&archive, &at, max_unpacked))
                .await
                .map_err(|e| CatalogError::Io {
                    op: "unpacking",
                    path: unpack_at.clone(),
                    source: std::io::Error::other(e),
                })??;
        // The package folder's name is the problem id.
        let named = staging.path().join(id);
        std::fs::rename(&root, &named).map_err(io("renaming", &root))?;
        self.install(store, id, named).await
    }

    fn staging_dir(&self) -> Result<tempfile::TempDir, CatalogError> {
        std::fs::create_dir_all(&self.root).map_err(io("creating", &self.root))?;
        tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(&self.root)
            .map_err(io("creating a folder in", &self.root))
    }

    /// Loads the package at `staged` (a folder named `id` inside a staging folder of the
    /// catalog root), moves it to `<root>/<id>` and records it.
    async fn install(
        &self,
        store: &dyn Store,
        id: &str,
        staged: PathBuf,
    ) -> Result<ProblemMeta, CatalogError> {
        load_checked(id, staged.clone()).await?;
        let _ = package::tighten_modes(&staged);
        let dest = self.root.join(id);
        let old = self.root.join(format!(".old-{id}"));
        if dest.exists() {
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(&dest, &old).map_err(io("moving aside", &dest))?;
        }
        std::fs::rename(&staged, &dest).map_err(io("installing", &dest))?;
        // Load again from its final place, so its paths point there.
        let problem = load_checked(id, dest.clone()).await?;
        let meta = meta_of(&problem, &dest);
        store.upsert_problem(&meta).await?;
        self.insert(problem);
        Ok(meta)
    }
}

/// Copies a folder tree; symbolic links are copied as links when they stay inside `src`
/// and refused otherwise (a shipped package must be self-contained).
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    let root = std::fs::canonicalize(src)?;
    fn walk(root: &Path, src: &Path, dst: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dst)?;
        for entry in std::fs::read_dir(src)? {
            let entry = entry?;
            let ft = entry.file_type()?;
            let to = dst.join(entry.file_name());
            if ft.is_dir() {
                walk(root, &entry.path(), &to)?;
            } else if ft.is_symlink() {
                let resolved = std::fs::canonicalize(entry.path())?;
                if !resolved.starts_with(root) {
                    return Err(std::io::Error::other(format!(
                        "{} links outside the package",
                        entry.path().display()
                    )));
                }
                std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &to)?;
            } else if ft.is_file() {
                std::fs::copy(entry.path(), &to)?;
            }
        }
        Ok(())
    }
    walk(&root, src, dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_ids() {
        for ok in ["aplusb", "a-b", "hello_2", "9lives"] {
            assert!(valid_id(ok), "{ok}");
        }
        for bad in ["", "A", "../x", "a/b", "-x", ".hidden", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
