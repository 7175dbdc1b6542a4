//! HTTP routes of the market.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::{HttpResponse, web};
use alloy::primitives::{Address, B256};
use serde::{Deserialize, Serialize};
use strongroom_chain::Chain;
use strongroom_http::{Limits, ServiceHandle};
use strongroom_types::{OfferKind, PostOfferRequest, SignedOffer, recover_typed};
use tracing::info;

use crate::store::{OfferStore, SqliteOfferStore};
use crate::{MarketError, Result};

/// Market configuration.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MarketConfig {
    /// Directory holding the SQLite order book.
    pub data_dir: PathBuf,
    pub rpc_url: String,
    pub contract: Address,
}

struct State {
    chain: Chain,
    store: Arc<dyn OfferStore>,
}

/// A running market. [`MarketHandle::shutdown`] stops it gracefully.
pub type MarketHandle = ServiceHandle;

/// Starts the market on `listener`; must run inside a tokio runtime.
pub async fn spawn(config: MarketConfig, listener: TcpListener) -> Result<MarketHandle> {
    std::fs::create_dir_all(&config.data_dir)?;
    let chain = Chain::connect(&config.rpc_url, config.contract, None).await?;
    let store = Arc::new(SqliteOfferStore::open(&config.data_dir.join("market.sqlite"))?);
    let state = web::Data::new(State { chain, store });
    let service = strongroom_http::serve(listener, Limits::default(), state, routes)?;
    info!(addr = %service.addr(), "market listening");
    Ok(service)
}

fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/v1/offers", web::post().to(post_offer))
        .route("/v1/datasets/{id}/offers", web::get().to(dataset_offers))
        .route("/v1/pools/offers", web::get().to(pool_offers))
        .route("/v1/apps/{id}/offers", web::get().to(app_offers));
}

async fn post_offer(state: web::Data<State>, body: web::Json<PostOfferRequest>) -> Result<HttpResponse> {
    let domain = state.chain.domain();
    let (kind, subject, signed) = match body.into_inner() {
        PostOfferRequest::Dataset { offer, signature, requesters } => {
            let signer = recover_typed(&offer, &domain, &signature).ok_or(MarketError::BadSignature)?;
            let dataset =
                state.chain.dataset(offer.dataset).await?.ok_or(MarketError::UnknownDataset(offer.dataset))?;
            if dataset.owner != signer {
                return Err(MarketError::NotOwner {
                    what: format!("dataset {}", offer.dataset),
                    signer,
                    owner: dataset.owner,
                });
            }
            (OfferKind::Dataset, offer.dataset, SignedOffer::Dataset { offer, signature, signer, requesters })
        }
        PostOfferRequest::Pool { offer, signature } => {
            let signer = recover_typed(&offer, &domain, &signature).ok_or(MarketError::BadSignature)?;
            let operator = state.chain.pool_operator(offer.pool).await?;
            if operator.is_zero() {
                return Err(MarketError::UnknownPool(offer.pool));
            }
            if operator != signer {
                return Err(MarketError::NotOwner { what: format!("pool {}", offer.pool), signer, owner: operator });
            }
            (OfferKind::Pool, offer.pool, SignedOffer::Pool { offer, signature, signer })
        }
        PostOfferRequest::App { offer, signature } => {
            let signer = recover_typed(&offer, &domain, &signature).ok_or(MarketError::BadSignature)?;
            let app = state.chain.app(offer.app).await?.ok_or(MarketError::UnknownApp(offer.app))?;
            if app.owner != signer {
                return Err(MarketError::NotOwner { what: format!("app {}", offer.app), signer, owner: app.owner });
            }
            (OfferKind::App, offer.app, SignedOffer::App { offer, signature, signer })
        }
    };
    state.store.put(kind, subject, signed.clone()).await?;
    info!(?kind, %subject, "offer listed");
    Ok(HttpResponse::Created().json(signed))
}

async fn dataset_offers(state: web::Data<State>, path: web::Path<B256>) -> Result<HttpResponse> {
    let offers = state.store.list(OfferKind::Dataset, Some(path.into_inner())).await?;
    Ok(HttpResponse::Ok().json(offers))
}

#[derive(Deserialize)]
struct PoolQuery {
    pool: Option<B256>,
}

async fn pool_offers(state: web::Data<State>, query: web::Query<PoolQuery>) -> Result<HttpResponse> {
    let offers = state.store.list(OfferKind::Pool, query.pool).await?;
    Ok(HttpResponse::Ok().json(offers))
}

async fn app_offers(state: web::Data<State>, path: web::Path<B256>) -> Result<HttpResponse> {
    let offers = state.store.list(OfferKind::App, Some(path.into_inner())).await?;
    Ok(HttpResponse::Ok().json(offers))
}
