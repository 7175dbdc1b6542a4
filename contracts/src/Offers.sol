// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {AppRegistry} from "./AppRegistry.sol";
import {DatasetRegistry} from "./DatasetRegistry.sol";
import {PoolRegistry} from "./PoolRegistry.sol";
import {Signatures} from "./Signatures.sol";
import {AppOffer, DatasetOffer, PoolOffer} from "./Types.sol";

/// @notice Offers of the three parties (dataset owner, pool operator, app owner): EIP-712
/// digests, on-chain presigning and cancelling, and per-offer use counts.
/// @dev An offer is identified by its full EIP-712 digest ("offer hash"): it commits to the
/// offer type, every field and the deployment, so counts of different offers never collide.
abstract contract Offers is DatasetRegistry, AppRegistry, PoolRegistry {
    error InvalidSignature(bytes32 offerHash, address signer);
    error OfferNotYetValid(uint64 validFrom);
    error OfferExpired(uint64 validUntil);
    error OfferVolumeExhausted(bytes32 offerHash, uint64 volume);
    error OfferAlreadyCancelled(bytes32 offerHash);

    /// An offer, or an authorization of an enclave for a task, accepted on chain by `signer`.
    event Presigned(bytes32 indexed digest, address indexed signer);
    event OfferCancelled(bytes32 indexed offerHash, address indexed signer);

    bytes32 private constant DATASET_OFFER_TYPEHASH = keccak256(
        "DatasetOffer(bytes32 dataset,uint256 price,uint64 volume,uint64 validFrom,uint64 validUntil,address requester,bytes32 requesterRoot,bool allowSql,bool allowApps,bytes32 app,bytes32 pool,bytes32 measurement,bytes32 policyHash,uint64 maxEpsilon,bytes32 salt)"
    );
    bytes32 private constant POOL_OFFER_TYPEHASH =
        keccak256(
        "PoolOffer(bytes32 pool,uint256 price,uint64 volume,uint64 maxDuration,uint64 validUntil,bytes32 keyService,bytes32 salt)"
    );
    bytes32 private constant APP_OFFER_TYPEHASH = keccak256(
        "AppOffer(bytes32 app,uint256 price,uint64 volume,bytes32 dataset,bytes32 pool,address requester,bytes32 salt)"
    );

    /// A cancelled offer's count; at least any volume, so a cancelled offer is simply used up.
    uint64 internal constant CANCELLED = type(uint64).max;

    /// Uses of each offer so far; `CANCELLED` once cancelled. A full word although the value
    /// is a uint64: writing a whole word saves the masking re-read of a packed one.
    mapping(bytes32 offerHash => uint256) private _offerUsed;

    /// Who presigned the offer (or the authorization). Kept (rather than a flag) so that a
    /// presignature only counts while its author is still the offer's party: after a transfer
    /// the new owner's consent is needed, exactly as for signatures.
    mapping(bytes32 digest => address) internal _presigner;

    // ---------------------------------------------------------------------
    // Presign and cancel (for contract accounts and for signing without an off-chain key)
    // ---------------------------------------------------------------------

    /// @notice Accept `offer` on chain: `rent` then takes it with an empty signature.
    function presignDatasetOffer(DatasetOffer calldata offer) external {
        _ownedDataset(offer.dataset);
        _presign(hashDatasetOffer(offer));
    }

    function presignPoolOffer(PoolOffer calldata offer) external {
        _operatedPool(offer.pool);
        _presign(hashPoolOffer(offer));
    }

    function presignAppOffer(AppOffer calldata offer) external {
        _ownedApp(offer.app);
        _presign(hashAppOffer(offer));
    }

    /// @notice Withdraw an offer (signed or presigned) for good: its remaining volume becomes zero.
    function cancelDatasetOffer(DatasetOffer calldata offer) external {
        _ownedDataset(offer.dataset);
        _cancel(hashDatasetOffer(offer));
    }

    function cancelPoolOffer(PoolOffer calldata offer) external {
        _operatedPool(offer.pool);
        _cancel(hashPoolOffer(offer));
    }

    function cancelAppOffer(AppOffer calldata offer) external {
        _ownedApp(offer.app);
        _cancel(hashAppOffer(offer));
    }

    /// Uses of the offer so far; type(uint64).max once cancelled.
    function offerUsed(bytes32 offerHash) external view returns (uint64) {
        // casting to 'uint64' is safe because counts never exceed a uint64 volume or CANCELLED
        // forge-lint: disable-next-line(unsafe-typecast)
        return uint64(_offerUsed[offerHash]);
    }

    /// Who presigned the offer or authorization with this digest (its party then); zero if nobody.
    function presigner(bytes32 digest) external view returns (address) {
        return _presigner[digest];
    }

    // ---------------------------------------------------------------------
    // EIP-712 digests (full digests, as signed off chain)
    // ---------------------------------------------------------------------

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // Every field of the three offers is an atomic EIP-712 type, in type-string order, so the
    // EIP-712 `encodeData` of an offer is its ABI encoding: the struct hash is one keccak over
    // the typehash and the offer's calldata words (cheaper than re-encoding field by field).
    // A non-canonical encoding (dirty high bits) hashes differently from what any signer signed,
    // and its fields would fail Solidity's calldata validation when read anyway.

    function hashDatasetOffer(DatasetOffer calldata offer) public view returns (bytes32) {
        uint256 offset;
        assembly ("memory-safe") {
            offset := offer
        }
        return _hashTypedDataV4(_structHash(DATASET_OFFER_TYPEHASH, offset, 15));
    }

    function hashPoolOffer(PoolOffer calldata offer) public view returns (bytes32) {
        uint256 offset;
        assembly ("memory-safe") {
            offset := offer
        }
        return _hashTypedDataV4(_structHash(POOL_OFFER_TYPEHASH, offset, 7));
    }

    function hashAppOffer(AppOffer calldata offer) public view returns (bytes32) {
        uint256 offset;
        assembly ("memory-safe") {
            offset := offer
        }
        return _hashTypedDataV4(_structHash(APP_OFFER_TYPEHASH, offset, 7));
    }

    /// keccak256(typehash ++ the `words` calldata words at `offset`), in scratch memory past
    /// the free memory pointer (not allocated: nothing else uses it before the hash is taken).
    function _structHash(bytes32 typehash, uint256 offset, uint256 words) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            let size := mul(words, 0x20)
            calldatacopy(add(ptr, 0x20), offset, size)
            h := keccak256(ptr, add(size, 0x20))
        }
    }

    // ---------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------

    /// Reverts unless `sig` is `signer`'s signature of the offer, or `sig` is empty and
    /// `signer` presigned it.
    function _checkOfferSignature(bytes32 offerHash, address signer, bytes calldata sig) internal view {
        bool ok = sig.length == 0
            ? signer != address(0) && _presigner[offerHash] == signer
            : Signatures.isValid(signer, offerHash, sig);
        if (!ok) revert InvalidSignature(offerHash, signer);
    }

    /// Count one use of the offer, refusing it once `volume` uses (or a cancel) are reached.
    function _useOffer(bytes32 offerHash, uint64 volume) internal {
        uint256 used = _offerUsed[offerHash];
        if (used >= volume) revert OfferVolumeExhausted(offerHash, volume);
        unchecked {
            // used < volume <= type(uint64).max
            _offerUsed[offerHash] = used + 1;
        }
    }

    function _presign(bytes32 digest) internal {
        if (_offerUsed[digest] == CANCELLED) revert OfferAlreadyCancelled(digest);
        _presigner[digest] = msg.sender;
        emit Presigned(digest, msg.sender);
    }

    function _cancel(bytes32 offerHash) private {
        if (_offerUsed[offerHash] == CANCELLED) revert OfferAlreadyCancelled(offerHash);
        _offerUsed[offerHash] = CANCELLED;
        emit OfferCancelled(offerHash, msg.sender);
    }
}
