// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {StrongroomBase} from "./StrongroomBase.sol";
import {Signatures} from "./Signatures.sol";
import {Quote, QUOTE_TYPE_SIMULATED} from "./Types.sol";

/// @notice Governance's trust lists (platform keys, enclave measurements) and the enclaves
/// registered from quotes signed by a trusted platform key.
abstract contract EnclaveRegistry is StrongroomBase {
    error SimulatedQuoteRefused();
    error InvalidPlatformSignature();
    error UntrustedPlatform(address platformKey);
    error UntrustedMeasurement(bytes32 measurement);
    error DebugEnclave();
    error BadReportData();

    event PlatformKeyTrusted(address indexed key, bool trusted);
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

    mapping(address key => bool) public trustedPlatformKeys;
    mapping(bytes32 measurement => bool) public trustedMeasurements;
    mapping(address enclave => EnclaveRecord) private _enclaves;
    mapping(address enclave => bytes32) private _measurements;

    constructor(bool acceptSimulatedQuotes_) {
        acceptSimulatedQuotes = acceptSimulatedQuotes_;
    }

    // ---------------------------------------------------------------------
    // Governance
    // ---------------------------------------------------------------------

    /// Trust (or stop trusting) a hardware vendor's quote-signing key. Distrusting one
    /// immediately retires every enclave it attested.
    function setPlatformKey(address key, bool trusted) external onlyOwner {
        if (!trusted && trustedPlatformKeys[key]) _bumpTrustEpoch();
        trustedPlatformKeys[key] = trusted;
        emit PlatformKeyTrusted(key, trusted);
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
        if (!trustedPlatformKeys[platformKey]) revert UntrustedPlatform(platformKey);
        if (!trustedMeasurements[quote.measurement]) revert UntrustedMeasurement(quote.measurement);
        // A debug enclave's memory can be inspected by the host, so it cannot keep data secret.
        if (quote.debug) revert DebugEnclave();

        enclave = address(bytes20(quote.reportData[0]));
        if (enclave == address(0)) revert BadReportData();

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
        return trustedMeasurements[_measurements[enclave]] && trustedPlatformKeys[record.platformKey];
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
