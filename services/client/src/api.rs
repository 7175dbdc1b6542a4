//! Typed clients of the key service and the market HTTP APIs. A refusal arrives as the
//! servers' own [`ApiError`], never as a body scraped for a field.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use strongroom_types::{
    ApiError, AuditEntry, DatasetId, DepositRequest, DepositResponse, KmsInfo, PolicyResponse, PostOfferRequest,
    ReleaseReceipt, ReleaseRequest, ReleaseResponse, SignedOffer, TaskId,
};

use crate::{ClientError, Result};

/// Every request gives up after this long.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The largest reply read from a service: far above any key release, policy, offer list or
/// audit page, and small enough that a hostile service cannot make a worker buffer gigabytes.
pub const MAX_REPLY_BYTES: usize = 16 << 20;

/// An HTTP client with the timeout every call here uses; share one to reuse connections.
/// Redirects are never followed: a key service's URL is chosen by a dataset owner, and a
/// redirect would let them point a worker's requests at any address the worker can reach.
pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ClientError::Internal(format!("cannot set up an HTTP client: {e}")))
}

/// One HTTP service at one base URL.
#[derive(Clone, Debug)]
struct Service {
    name: &'static str,
    url: String,
    http: reqwest::Client,
}

impl Service {
    fn new(name: &'static str, url: &str) -> Result<Self> {
        Ok(Self::with_http(name, url, http_client()?))
    }

    fn with_http(name: &'static str, url: &str, http: reqwest::Client) -> Self {
        Self { name, url: url.trim_end_matches('/').to_owned(), http }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, action: &'static str) -> Result<T> {
        self.send(self.http.get(format!("{}{path}", self.url)), action).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B, action: &'static str) -> Result<T> {
        self.send(self.http.post(format!("{}{path}", self.url)).json(body), action).await
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder, action: &'static str) -> Result<T> {
        let unreachable =
            |reason: String| ClientError::Unreachable { service: self.name, url: self.url.clone(), reason };
        let mut response = request.send().await.map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        if status.is_redirection() {
            let to = response.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok()).unwrap_or("?");
            return Err(unreachable(format!(
                "it answered with a redirect (HTTP {status} to {to}), which is not followed: give the service's own URL"
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| unreachable(e.to_string()))? {
            if body.len() + chunk.len() > MAX_REPLY_BYTES {
                return Err(unreachable(format!("its reply is larger than {} MiB", MAX_REPLY_BYTES >> 20)));
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| unreachable(format!("a reply that does not decode: {e}")));
        }
        let error = serde_json::from_slice::<ApiError>(&body).unwrap_or_else(|_| ApiError {
            code: "http_error".into(),
            message: format!("HTTP {status} without an error body"),
        });
        Err(ClientError::Refused { service: self.name, url: self.url.clone(), action, error })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A real HTTP server on a port the OS picks that answers every request with `reply`.
    fn serve(reply: Vec<u8>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(&reply);
            }
        });
        url
    }

    #[tokio::test]
    async fn a_redirect_is_refused_not_followed() {
        let target = serve(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec());
        let redirect = format!("HTTP/1.1 302 Found\r\nlocation: {target}/v1/info\r\ncontent-length: 0\r\n\r\n");
        let url = serve(redirect.into_bytes());
        let err = KmsClient::new(&url).unwrap().info().await.unwrap_err().to_string();
        assert_eq!(
            err,
            format!(
                "key service at {url} is unreachable: it answered with a redirect (HTTP 302 Found to {target}/v1/info), which is not followed: give the service's own URL"
            )
        );
    }

    #[tokio::test]
    async fn a_reply_beyond_the_limit_is_refused_before_it_is_all_read() {
        let size = MAX_REPLY_BYTES + 1;
        let mut reply = format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n").into_bytes();
        reply.resize(reply.len() + size, b' ');
        let url = serve(reply);
        let err = KmsClient::new(&url).unwrap().info().await.unwrap_err().to_string();
        assert_eq!(err, format!("key service at {url} is unreachable: its reply is larger than 16 MiB"));
    }
}

/// A key service: its key, deposits, attested releases and audit log.
#[derive(Clone, Debug)]
pub struct KmsClient(Service);

impl KmsClient {
    pub fn new(url: &str) -> Result<Self> {
        Service::new("key service", url).map(Self)
    }

    /// A client of the key service at `url` on a shared HTTP client (see [`http_client`]).
    pub fn with_http(url: &str, http: reqwest::Client) -> Self {
        Self(Service::with_http("key service", url, http))
    }

    pub fn url(&self) -> &str {
        &self.0.url
    }

    /// The service's public key and the deployment it serves.
    pub async fn info(&self) -> Result<KmsInfo> {
        self.0.get("/v1/info", "describe itself").await
    }

    pub async fn deposit(&self, request: &DepositRequest) -> Result<DepositResponse> {
        self.0.post("/v1/deposits", request, "take the deposit").await
    }

    pub async fn release(&self, request: &ReleaseRequest) -> Result<ReleaseResponse> {
        self.0.post("/v1/releases", request, "release the keys").await
    }

    /// The licence policy whose keccak256 is `hash` (as the chain records it), checked to be so.
    pub async fn policy(&self, hash: alloy::primitives::B256) -> Result<String> {
        let response: PolicyResponse = self.0.get(&format!("/v1/policies/{hash}"), "show the policy").await?;
        let found = alloy::primitives::keccak256(response.policy.as_bytes());
        if found != hash {
            return Err(ClientError::Unreachable {
                service: self.0.name,
                url: self.0.url.clone(),
                reason: format!("it served a policy hashing to {found} when asked for {hash}"),
            });
        }
        Ok(response.policy)
    }

    /// The service's receipt that it released `task`'s keys; `None` when it released none.
    pub async fn receipt(&self, task: TaskId) -> Result<Option<ReleaseReceipt>> {
        match self.0.get(&format!("/v1/receipts/{task}"), "show its release receipt").await {
            Ok(receipt) => Ok(Some(receipt)),
            Err(ClientError::Refused { error, .. }) if error.code == "not_released" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A dataset's audit log (of one task or of all), which its owner alone may read: `owner`
    /// signs the request for `domain`, the deployment the key service serves, and for
    /// `key_service`, the sealing key the chain records for it, good for a minute.
    pub async fn audit(
        &self,
        owner: &alloy::signers::local::PrivateKeySigner,
        domain: &alloy::sol_types::Eip712Domain,
        key_service: alloy::primitives::B256,
        dataset: DatasetId,
        task: Option<TaskId>,
    ) -> Result<Vec<AuditEntry>> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let not_after = now + 60;
        let message = strongroom_types::AuditRequest { dataset, keyService: key_service, notAfter: not_after };
        let signature = strongroom_types::sign_typed(owner.credential(), &message, domain);
        let request = strongroom_types::AuditLogRequest { dataset, key_service, not_after, task_id: task, signature };
        self.0.post("/v1/audit", &request, "show its audit log").await
    }
}

/// A market: the order book of signed offers.
#[derive(Clone, Debug)]
pub struct MarketClient(Service);

impl MarketClient {
    pub fn new(url: &str) -> Result<Self> {
        Service::new("market", url).map(Self)
    }

    pub fn url(&self) -> &str {
        &self.0.url
    }

    pub async fn post_offer(&self, request: &PostOfferRequest) -> Result<SignedOffer> {
        self.0.post("/v1/offers", request, "list the offer").await
    }

    pub async fn dataset_offers(&self, dataset: DatasetId) -> Result<Vec<SignedOffer>> {
        self.0.get(&format!("/v1/datasets/{dataset}/offers"), "list dataset offers").await
    }

    pub async fn pool_offers(&self) -> Result<Vec<SignedOffer>> {
        self.0.get("/v1/pools/offers", "list pool offers").await
    }
}
