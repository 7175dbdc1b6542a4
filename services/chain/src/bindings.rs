//! Bindings generated from the compiled contract, and conversions from the shared types.

alloy::sol!(
    #[sol(rpc)]
    #[derive(Debug)]
    Strongroom,
    "../../contracts/out/Strongroom.sol/Strongroom.json"
);

impl From<&strongroom_types::DatasetOffer> for Strongroom::DatasetOffer {
    fn from(o: &strongroom_types::DatasetOffer) -> Self {
        Self { dataset: o.dataset, price: o.price, validUntil: o.validUntil, salt: o.salt }
    }
}

impl From<&strongroom_types::PoolOffer> for Strongroom::PoolOffer {
    fn from(o: &strongroom_types::PoolOffer) -> Self {
        Self { pool: o.pool, price: o.price, maxDuration: o.maxDuration, salt: o.salt }
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
