use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use alloy::primitives::{Address, B256};
use thiserror::Error;

pub type Result<T, E = MarketError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum MarketError {
    // The caller's request.
    #[error("the offer signature does not recover to an address")]
    BadSignature,
    #[error("dataset {0} is not registered on chain")]
    UnknownDataset(B256),
    #[error("pool {0} is not registered on chain")]
    UnknownPool(B256),
    #[error("app {0} is not registered on chain")]
    UnknownApp(B256),
    #[error("the offer is signed by {signer}, but {owner} owns {what}")]
    NotOwner { what: String, signer: Address, owner: Address },
    // The environment.
    #[error("chain: {0}")]
    Chain(#[from] strongroom_chain::ChainError),
    #[error("offer store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    // Our own bug.
    #[error("internal: {0}")]
    Internal(String),
}

impl MarketError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadSignature => "bad_signature",
            Self::UnknownDataset(_) => "unknown_dataset",
            Self::UnknownPool(_) => "unknown_pool",
            Self::UnknownApp(_) => "unknown_app",
            Self::NotOwner { .. } => "not_owner",
            Self::Chain(_) => "chain_unavailable",
            Self::Store(_) | Self::Io(_) => "storage_error",
            Self::Internal(_) => "internal",
        }
    }
}

impl ResponseError for MarketError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::BadSignature => StatusCode::BAD_REQUEST,
            Self::UnknownDataset(_) | Self::UnknownPool(_) | Self::UnknownApp(_) => StatusCode::NOT_FOUND,
            Self::NotOwner { .. } => StatusCode::FORBIDDEN,
            Self::Chain(_) => StatusCode::BAD_GATEWAY,
            Self::Store(_) | Self::Io(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = strongroom_types::ApiError { code: self.code().to_owned(), message: self.to_string() };
        HttpResponse::build(self.status_code()).json(body)
    }
}
