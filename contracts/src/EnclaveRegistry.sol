// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {StrongroomBase} from "./StrongroomBase.sol";
import {Signatures} from "./Signatures.sol";
import {PlatformKind, Quote, QUOTE_TYPE_SIMULATED} from "./Types.sol";

/// @notice Governance's trust lists (platform keys by kind, enclave measurements, the enclave
/// author and its least security version) and the enclaves registered from fresh quotes signed
/// by a trusted platform key.
abstract contract EnclaveRegistry is StrongroomBase {
    error SimulatedQuoteRefused();
    error InvalidPlatformSignature();
    error UntrustedPlatform(address platformKey);
    error UntrustedMeasurement(bytes32 measurement);
    error DebugEnclave();
    error BadReportData();
    error SimulatedPlatformRefused(address key);
    /// The platform key is trusted for the other kind of quote than this one's type.
    error PlatformKindMismatch(address platformKey, uint8 quoteType);
    error StaleQuote(uint64 quotedBlock, uint256 currentBlock);
    /// The quote's author, product or security version is not the one governance trusts
    /// (`enclaveIdentity`: the same author and product, at least `minSvn`).
    error UntrustedEnclaveIdentity(bytes32 signer, uint16 productId, uint16 svn);

    event PlatformKeyTrusted(address indexed key, PlatformKind kind);
    event EnclaveIdentitySet(bytes32 signer, uint16 productId, uint16 minSvn);
    event MeasurementTrusted(bytes32 indexed measurement, bool trusted);
    event EnclaveTtlSet(uint64 ttl);
    event EnclaveRegistered(
        address indexed enclave, bytes32 indexed measurement, address platformKey, uint64 expiresAt
    );

    /// One slot (64+160+32 bits), the measurement lives in its own mapping: settlement reads it
    /// only when a task pins one. `platformKey` is kept so that distrusting a platform key also
    /// retires every enclave it vouched for. `trustEpoch` is the governance trust epoch at
    /// registration: while nothing has been distrusted since, both trust lists are known to
    /// still hold, which saves two cold mapping reads (4,200 gas) on every result.
    struct EnclaveRecord {
        uint64 expiresAt;
        address platformKey;
        uint32 trustEpoch;
    }

    /// Fixed at deployment so that no governance action can ever make a
    /// production deployment trust simulated hardware.
    bool public immutable acceptSimulatedQuotes;

    /// How many blocks a quote's block may lie behind the one registering it: the most the EVM
    /// keeps hashes of.
    uint256 internal constant QUOTE_MAX_AGE_BLOCKS = 256;

    /// Who must have built the enclave (`Quote.signer`, the author's identity as the platform
    /// reports it), which product it is, and the least security version still trusted: raising
    /// `minSvn` after a vulnerability refuses the quotes of every build before the fix.
    struct EnclaveIdentity {
        bytes32 signer;
        uint16 productId;
        uint16 minSvn;
    }

    EnclaveIdentity public enclaveIdentity;

    mapping(address key => PlatformKind) public platformKeys;
    mapping(bytes32 measurement => bool) public trustedMeasurements;
    mapping(address enclave => EnclaveRecord) private _enclaves;
    mapping(address enclave => bytes32) private _measurements;

    constructor(bool acceptSimulatedQuotes_) {
        acceptSimulatedQuotes = acceptSimulatedQuotes_;
    }

    // ---------------------------------------------------------------------
    // Governance
    // ---------------------------------------------------------------------

    /// Trust a platform's quote-signing key for the quotes of its kind, or stop trusting it
    /// (`Untrusted`), which immediately retires every enclave it attested. A deployment that
    /// refuses simulated quotes refuses simulator keys too.
    function setPlatformKey(address key, PlatformKind kind) external onlyOwner {
        if (kind == PlatformKind.Simulated && !acceptSimulatedQuotes) revert SimulatedPlatformRefused(key);
        PlatformKind was = platformKeys[key];
        if (was != PlatformKind.Untrusted && kind != was) _bumpTrustEpoch();
        platformKeys[key] = kind;
        emit PlatformKeyTrusted(key, kind);
    }

    /// The enclave author, product and least security version a quote must report. Raising the
    /// version does not retire enclaves already registered; distrust their measurement for that.
    function setEnclaveIdentity(bytes32 signer, uint16 productId, uint16 minSvn) external onlyOwner {
        enclaveIdentity = EnclaveIdentity(signer, productId, minSvn);
        emit EnclaveIdentitySet(signer, productId, minSvn);
    }

    /// Trust (or stop trusting) an enclave code measurement. Distrusting one
    /// immediately retires every enclave registered with it.
    function setMeasurement(bytes32 measurement, bool trusted) external onlyOwner {
        if (!trusted && trustedMeasurements[measurement]) _bumpTrustEpoch();
        trustedMeasurements[measurement] = trusted;
        emit MeasurementTrusted(measurement, trusted);
    }

    /// Lifetime of future registrations; existing ones keep their expiry.
    /// Zero makes new registrations expire at once, which pauses onboarding.
    function setEnclaveTtl(uint64 ttl) external onlyOwner {
        _config.enclaveTtl = ttl;
        emit EnclaveTtlSet(ttl);
    }

    function enclaveTtl() external view returns (uint64) {
        return _config.enclaveTtl;
    }

    // ---------------------------------------------------------------------
    // Enclaves
    // ---------------------------------------------------------------------

    /// @notice Register (or refresh) the enclave whose address is bound in the
    /// quote's report data. Anyone may relay a quote: its validity rests on the
    /// platform signature, not on the caller.
    function registerEnclave(Quote calldata quote, bytes calldata platformSignature)
        external
        returns (address enclave)
    {
        if (quote.quoteType == QUOTE_TYPE_SIMULATED && !acceptSimulatedQuotes) {
            revert SimulatedQuoteRefused();
        }

        address platformKey = Signatures.recover(keccak256(abi.encode(quote)), platformSignature);
        if (platformKey == address(0)) revert InvalidPlatformSignature();
        PlatformKind kind = platformKeys[platformKey];
        if (kind == PlatformKind.Untrusted) revert UntrustedPlatform(platformKey);
        // The type is signed with the quote, and a key vouches only for its own kind: a simulator
        // key, whose holder can sign anything, cannot pass a quote off as hardware.
        PlatformKind claimed = quote.quoteType == QUOTE_TYPE_SIMULATED ? PlatformKind.Simulated : PlatformKind.Hardware;
        if (kind != claimed) revert PlatformKindMismatch(platformKey, quote.quoteType);
        if (!trustedMeasurements[quote.measurement]) revert UntrustedMeasurement(quote.measurement);
        EnclaveIdentity memory identity = enclaveIdentity;
        if (quote.signer != identity.signer || quote.productId != identity.productId || quote.svn < identity.minSvn) {
            revert UntrustedEnclaveIdentity(quote.signer, quote.productId, quote.svn);
        }
        // A debug enclave's memory can be inspected by the host, so it cannot keep data secret.
        if (quote.debug) revert DebugEnclave();

        enclave = address(bytes20(quote.reportData[0]));
        if (enclave == address(0)) revert BadReportData();
        // Fresh: the quote names a recent block by number and hash, so it was made after that
        // block, and an old one cannot be replayed to renew a registration.
        uint64 quotedBlock = uint64(uint256(quote.reportData[0]));
        if (
            quotedBlock >= block.number || block.number - quotedBlock > QUOTE_MAX_AGE_BLOCKS
                || blockhash(quotedBlock) != quote.reportData[1]
        ) revert StaleQuote(quotedBlock, block.number);

        Config memory config = _config;
        uint64 expiresAt = _saturatingDeadline(config.enclaveTtl);
        _enclaves[enclave] = EnclaveRecord(expiresAt, platformKey, config.trustEpoch);
        _measurements[enclave] = quote.measurement;
        emit EnclaveRegistered(enclave, quote.measurement, platformKey, expiresAt);
    }

    /// Registration of an enclave; zeros when it was never registered.
    function enclaves(address enclave) external view returns (bytes32 measurement, uint64 expiresAt) {
        return (_measurements[enclave], _enclaves[enclave].expiresAt);
    }

    /// @notice True while the enclave's registration has not expired and both
    /// its measurement and the platform key that attested it are still trusted.
    function isEnclaveActive(address enclave) external view returns (bool) {
        return _isEnclaveActive(enclave);
    }

    function _isEnclaveActive(address enclave) internal view returns (bool) {
        EnclaveRecord memory record = _enclaves[enclave]; // one SLOAD
        if (record.expiresAt == 0 || block.timestamp >= record.expiresAt) return false;
        // Registration checked both trust lists; if governance has distrusted nothing since,
        // they still hold and the two cold lookups can be skipped.
        if (record.trustEpoch == _config.trustEpoch) return true;
        return trustedMeasurements[_measurements[enclave]] && platformKeys[record.platformKey] != PlatformKind.Untrusted;
    }

    function _enclaveMeasurement(address enclave) internal view returns (bytes32) {
        return _measurements[enclave];
    }

    /// Called when something trusted stops being trusted; distrusting what was never trusted
    /// cannot retire any enclave and leaves the fast path alone.
    function _bumpTrustEpoch() private {
        // Checked on purpose: after 2^32 distrusts (never, in practice) governance would have to
        // redeploy, but a wrapped epoch could silently make a retired enclave look trusted again.
        _config.trustEpoch += 1;
    }
}
