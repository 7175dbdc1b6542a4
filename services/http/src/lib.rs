//! The HTTP scaffold every Strongroom service shares (the key service, the market): one way to
//! listen on a socket the caller bound (port 0 in tests), bound request bodies and times, and a
//! handle that stops the server gracefully.
//!
//! ```text
//!  spawn(config, listener) ─▶ strongroom_http::serve(listener, limits, routes) ─▶ ServiceHandle
//!                                                                   shutdown() / wait() ◀─┘
//! ```

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};

/// Request limits of one service.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The largest JSON body a route accepts.
    pub json_bytes: usize,
    /// How long a client may take to send its request.
    pub request_timeout: Duration,
    /// Worker threads serving requests.
    pub workers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { json_bytes: 64 * 1024, request_timeout: Duration::from_secs(30), workers: 2 }
    }
}

/// A running service. [`ServiceHandle::shutdown`] stops it gracefully: in-flight requests finish.
pub struct ServiceHandle {
    addr: SocketAddr,
    server: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ServiceHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn shutdown(self) {
        self.server.stop(true).await;
        let _ = self.task.await;
    }

    /// Waits until the server stops (for the `serve` commands).
    pub async fn wait(self) -> std::io::Result<()> {
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// A service's blocking store (SQLite with fsync, say), shared by its handlers: each call runs
/// on tokio's blocking pool, one at a time, never on the executor that serves requests.
pub struct Blocking<S>(Arc<Mutex<S>>);

impl<S> Clone for Blocking<S> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<S: Send + 'static> Blocking<S> {
    pub fn new(store: S) -> Self {
        Self(Arc::new(Mutex::new(store)))
    }

    /// Runs `call` on the store; `Err` if it panicked.
    pub async fn call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&S) -> T + Send + 'static,
    ) -> Result<T, tokio::task::JoinError> {
        let store = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || call(&store.lock().expect("store lock"))).await
    }
}

/// Serves `routes` on `listener` with `state` shared by every handler; must run inside a tokio
/// runtime. Signals are left to the caller, which owns the process.
pub fn serve<S: Send + Sync + 'static>(
    listener: TcpListener,
    limits: Limits,
    state: web::Data<S>,
    routes: fn(&mut web::ServiceConfig),
) -> std::io::Result<ServiceHandle> {
    let addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::JsonConfig::default().limit(limits.json_bytes))
            .configure(routes)
    })
    .workers(limits.workers)
    .client_request_timeout(limits.request_timeout)
    .disable_signals()
    .listen(listener)?
    .run();
    let handle = server.handle();
    Ok(ServiceHandle { addr, server: handle, task: tokio::spawn(server) })
}
