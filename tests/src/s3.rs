//! An S3-compatible server on a loopback port the OS picks: s3s-fs, which speaks the S3 protocol
//! (SigV4 authentication included) over a temporary directory, one subdirectory per bucket.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use strongroom_storage::S3Scope;
use tokio::sync::oneshot;

pub const ACCESS_KEY: &str = "strongroom-test";
pub const SECRET_KEY: &str = "strongroom-test-secret";

pub struct S3Server {
    pub endpoint: String,
    /// The server's files: `<root>/<bucket>/<key>`.
    pub root: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl S3Server {
    /// Serves `buckets` (created empty) until [`S3Server::shutdown`].
    pub async fn start(buckets: &[&str]) -> Self {
        let root = tempfile::tempdir().unwrap();
        for bucket in buckets {
            std::fs::create_dir(root.path().join(bucket)).unwrap();
        }
        let mut builder = S3ServiceBuilder::new(s3s_fs::FileSystem::new(root.path()).unwrap());
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (stop, mut stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let http = ConnectionBuilder::new(TokioExecutor::new());
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((socket, _)) = accepted else { continue };
                        let connection = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                        connections.spawn(async move { let _ = connection.await; });
                    }
                }
            }
            connections.shutdown().await;
        });
        Self { endpoint, root, stop: Some(stop), task }
    }

    /// Credentials for every bucket of this server.
    pub fn scope(&self, secret: &str) -> S3Scope {
        S3Scope {
            scope: "s3://".into(),
            endpoint: Some(self.endpoint.clone()),
            region: Some("us-east-1".into()),
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(secret.into()),
            allow_http: true,
        }
    }

    /// The file behind `s3://<bucket>/<key>`, to tamper with.
    pub fn file(&self, url: &str) -> std::path::PathBuf {
        self.root.path().join(url.strip_prefix("s3://").unwrap())
    }

    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}
