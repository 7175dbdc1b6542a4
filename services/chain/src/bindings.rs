//! Bindings generated from the compiled contract, and conversions from the shared types.

// The generated code mirrors the contract's signatures, long argument lists included.
#![allow(clippy::too_many_arguments)]

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug, PartialEq, Eq)]
    Strongroom,
    "../../contracts/out/Strongroom.sol/Strongroom.json"
);

impl From<&strongroom_types::DatasetOffer> for Strongroom::DatasetOffer {
    fn from(o: &strongroom_types::DatasetOffer) -> Self {
        Self {
            dataset: o.dataset,
            price: o.price,
            volume: o.volume,
            validFrom: o.validFrom,
            validUntil: o.validUntil,
            requester: o.requester,
            requesterRoot: o.requesterRoot,
            allowSql: o.allowSql,
            allowApps: o.allowApps,
            app: o.app,
            pool: o.pool,
            measurement: o.measurement,
            policyHash: o.policyHash,
            maxEpsilon: o.maxEpsilon,
            salt: o.salt,
        }
    }
}

impl From<&strongroom_types::PoolOffer> for Strongroom::PoolOffer {
    fn from(o: &strongroom_types::PoolOffer) -> Self {
        Self {
            pool: o.pool,
            price: o.price,
            volume: o.volume,
            maxDuration: o.maxDuration,
            validUntil: o.validUntil,
            keyService: o.keyService,
            salt: o.salt,
        }
    }
}

impl From<&strongroom_types::AppOffer> for Strongroom::AppOffer {
    fn from(o: &strongroom_types::AppOffer) -> Self {
        Self {
            app: o.app,
            price: o.price,
            volume: o.volume,
            dataset: o.dataset,
            pool: o.pool,
            requester: o.requester,
            salt: o.salt,
        }
    }
}

impl From<&strongroom_types::Quote> for Strongroom::Quote {
    fn from(q: &strongroom_types::Quote) -> Self {
        Self {
            quoteType: q.quoteType,
            measurement: q.measurement,
            signer: q.signer,
            productId: q.productId,
            svn: q.svn,
            debug: q.debug,
            reportData: q.reportData,
        }
    }
}
