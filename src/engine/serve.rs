//! Building the engine from a [`ServeConfig`] and running it: [`serve`] (mini-redis style:
//! the caller binds the listener, so tests bind `127.0.0.1:0`).
//!
//! Data folder layout: `judge.db` (the store), `queue.db` (the job queues), `blobs/`
//! (sources), `problems/<id>/` (unpacked problem packages).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use crate::engine::api;
use crate::engine::blob::{self, BlobError};
use crate::engine::catalog::{Catalog, CatalogError};
use crate::engine::config::ServeConfig;
use crate::engine::credentials::{self, ClientCredentials};
use crate::engine::events::EventHub;
use crate::engine::pool::Pool;
use crate::engine::queue::{self, Job, QueueError};
use crate::engine::router::PoolName;
use crate::engine::store::{
    self, generate_token, hash_token, Role, Store, StoreError, Trust, User,
};
use crate::engine::worker::Shared;
use crate::judge::language::Languages;
use crate::sandbox::{Sandbox, SandboxError};

/// Name of the first admin user created on an empty data folder.
pub const FIRST_ADMIN: &str = "admin";

/// Why the engine could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The data folder could not be created or used.
    #[error("data folder {path}: {source}")]
    DataDir {
        /// The folder.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue failed.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The blob store failed.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// Loading problems failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A pool's sandbox backend is not usable on this host.
    #[error("pool {pool}: sandbox backend {backend:?}: {source} (run `judge doctor`, or pick another backend in judge.toml [pools.{pool}])")]
    Sandbox {
        /// The pool.
        pool: PoolName,
        /// Its backend.
        backend: String,
        /// Why.
        source: SandboxError,
    },
    /// Writing the client credentials failed.
    #[error("writing the client credentials {path}: {source}")]
    Credentials {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
}

/// The running engine: what the API handlers, the pools and (later) the autoscaler share.
#[derive(Debug)]
pub struct Engine {
    /// Store, queue, blobs, problems, languages, event hub, pause switch.
    pub shared: Arc<Shared>,
    /// The three pools.
    pub pools: BTreeMap<PoolName, Arc<Pool>>,
    /// Token buckets per user and per IP.
    pub limiter: api::ratelimit::RateLimiter,
    /// When the engine started (uptime).
    pub started: Instant,
    /// Turns true at shutdown: event streams end, replicas drain.
    pub shutdown: watch::Receiver<bool>,
    /// The base URL clients on this machine use.
    pub url: String,
}

/// Opens (creating if needed) the store of a data folder: `judge token create` uses it
/// while a server may be running (SQLite WAL allows that).
pub fn open_store(data_dir: &Path) -> Result<Arc<dyn Store>, ServeError> {
    std::fs::create_dir_all(data_dir).map_err(|source| ServeError::DataDir {
        path: data_dir.to_path_buf(),
        source,
    })?;
    Ok(Arc::new(store::open_sqlite(&data_dir.join("judge.db"))?))
}

/// Creates user `name` (or updates its role and trust) and a new token for it; returns the
/// token, which is stored only as its SHA-256.
pub async fn create_token(
    store: &dyn Store,
    name: &str,
    role: Role,
    trust: Trust,
    label: &str,
) -> Result<String, StoreError> {
    store
        .upsert_user(&User {
            name: name.to_string(),
            role,
            trust,
        })
        .await?;
    let token = generate_token();
    store.insert_token(name, &hash_token(&token), label).await?;
    Ok(token)
}

fn base_url(config: &ServeConfig, addr: SocketAddr) -> String {
    if let Some(u) = &config.public_url {
        return u.clone();
    }
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_string(),
        ip if ip.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        ip => ip.to_string(),
    };
    format!("http://{host}:{}", addr.port())
}

impl Engine {
    /// Opens everything the config names, runs the first-start bootstrap, recovers the
    /// queues after a crash and starts each pool's minimum replicas.
    ///
    /// Errors: see [`ServeError`].
    pub async fn start(
        config: ServeConfig,
        addr: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Engine>, ServeError> {
        let data = config.data_dir.clone();
        let store = open_store(&data)?;
        let queue: Arc<dyn queue::JobQueue> = Arc::new(queue::open_sqlite(&data.join("queue.db"))?);
        let blobs = blob::open_local(&data.join("blobs"))?;
        let catalog = Catalog::new(data.join("problems"));
        let loaded = catalog.load_from_store(&*store).await?;
        tracing::info!("{loaded} problems loaded");
        let url = base_url(&config, addr);

        // First start on this data folder: shipped problems, an admin, the local client.
        if store.list_problems().await?.is_empty() {
            if let Some(dir) = &config.problems_dir {
                let added = catalog.import_folder(&*store, dir).await?;
                tracing::info!(
                    "imported {} problems from {}: {}",
                    added.len(),
                    dir.display(),
                    added.join(", ")
                );
            }
        }
        let creds_path = credentials::path_in(&config.config_dir);
        if store.count_admins().await? == 0 {
            let token = create_token(
                &*store,
                FIRST_ADMIN,
                Role::Admin,
                Trust::Verified,
                "local client (first start)",
            )
            .await?;
            ClientCredentials {
                server: url.clone(),
                token,
            }
            .write(&creds_path)
            .map_err(|source| ServeError::Credentials {
                path: creds_path.clone(),
                source,
            })?;
            tracing::info!(
                "created user {FIRST_ADMIN:?}; client credentials written to {}",
                creds_path.display()
            );
        } else if let Ok(Some(mut c)) = ClientCredentials::read(&creds_path) {
            // Keep the local client pointed at this server when its token is one of ours.
            if c.server != url
                && store
                    .user_by_token_hash(&hash_token(&c.token))
                    .await?
                    .is_some()
            {
                c.server = url.clone();
                c.write(&creds_path)
                    .map_err(|source| ServeError::Credentials {
                        path: creds_path.clone(),
                        source,
                    })?;
            }
        }

        // Crash recovery: leases of the previous process are handed back, and every
        // unfinished submission is enqueued again (idempotent per submission).
        let released = queue.recover().await?;
        let unfinished = store.unfinished_submissions().await?;
        for s in &unfinished {
            let job = Job {
                submission_id: s.id.clone(),
                priority: s.priority,
                enqueued_at: s.submitted_at,
            };
            queue.enqueue(&s.pool, job).await?;
        }
        if released > 0 || !unfinished.is_empty() {
            tracing::info!(
                "recovered {released} leases; {} unfinished submissions queued",
                unfinished.len()
            );
        }

        let (paused, _) = watch::channel(config.judging.paused);
        let limiter = api::ratelimit::RateLimiter::new(config.rate_limit);
        let (metrics, backpressure) = crate::engine::autoscale::observability(&config);
        let shared = Arc::new(Shared {
            config,
            store,
            queue,
            blobs,
            catalog,
            languages: Arc::new(Languages::builtin()),
            hub: EventHub::new(),
            paused,
            metrics,
            backpressure,
        });

        let mut sandboxes: BTreeMap<String, Arc<dyn Sandbox>> = BTreeMap::new();
        let mut pools = BTreeMap::new();
        for pc in &shared.config.pools {
            let sandbox = match sandboxes.get(&pc.backend) {
                Some(s) => s.clone(),
                None => {
                    let s = crate::sandbox::open(&pc.backend).map_err(|source| {
                        ServeError::Sandbox {
                            pool: pc.name,
                            backend: pc.backend.clone(),
                            source,
                        }
                    })?;
                    sandboxes.insert(pc.backend.clone(), s.clone());
                    s
                }
            };
            pools.insert(pc.name, Pool::new(pc.clone(), sandbox, shared.clone()));
        }
        for pool in pools.values() {
            pool.scale_to(pool.config.min_replicas).await;
        }

        Ok(Arc::new(Engine {
            shared,
            pools,
            limiter,
            started: Instant::now(),
            shutdown,
            url,
        }))
    }
}

/// Runs the engine on `listener` until `shutdown` completes, then shuts down gracefully:
/// the API stops accepting, event streams end, and every replica drains (finishes its jobs
/// or hands back their leases within `judging.drain_timeout`).
///
/// Errors: the engine could not start ([`ServeError`]), or the HTTP server failed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    serve_with(listener, config, shutdown, |_| {}).await
}

/// [`serve`], calling `ready` once the engine has started (bootstrap and crash recovery
/// done, replicas running) and just before the API accepts requests.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(&Arc<Engine>),
) -> Result<(), ServeError> {
    let addr = listener.local_addr().map_err(ServeError::Http)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let engine = Engine::start(config, addr, stop_rx.clone()).await?;
    tracing::info!("serving on {}", engine.url);
    let control = crate::engine::autoscale::spawn_control_loops(&engine, stop_rx.clone());
    ready(&engine);
    let app = api::router(engine.clone());
    let mut stop_http = stop_rx.clone();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop_http.wait_for(|s| *s).await;
    });
    let mut server_task = tokio::spawn(async move { server.await });
    let result = tokio::select! {
        _ = shutdown => None,
        r = &mut server_task => Some(r),
    };
    tracing::info!("shutting down: draining pools");
    let _ = stop_tx.send(true);
    // The autoscaler, sampler and alerts stop first, so nothing starts a replica mid-drain.
    futures::future::join_all(control).await;
    let drains = engine.pools.values().map(|p| {
        let p = p.clone();
        async move { p.stop().await }
    });
    futures::future::join_all(drains).await;
    let r = match result {
        Some(r) => r,
        None => server_task.await,
    };
    match r {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(ServeError::Http(e)),
        Err(e) => Err(ServeError::Http(std::io::Error::other(e))),
    }
}
