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

/// An HTTP client with the timeout every call here uses; share one to reuse connections.
pub fn http_client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
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
        let response = request.send().await.map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return response.json().await.map_err(|e| unreachable(format!("a reply that does not decode: {e}")));
        }
        let error = response.json::<ApiError>().await.unwrap_or_else(|_| ApiError {
            code: "http_error".into(),
            message: format!("HTTP {status} without an error body"),
        });
        Err(ClientError::Refused { service: self.name, url: self.url.clone(), action, error })
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

    /// The audit log, of one task or of all.
    pub async fn audit(&self, task: Option<TaskId>) -> Result<Vec<AuditEntry>> {
        let query = task.map(|t| format!("?task_id={t}")).unwrap_or_default();
        self.0.get(&format!("/v1/audit{query}"), "show its audit log").await
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
