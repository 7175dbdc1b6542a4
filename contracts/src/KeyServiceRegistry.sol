// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {StrongroomBase} from "./StrongroomBase.sol";
import {Signatures} from "./Signatures.sol";

/// @notice Key services by their sealing key, each bound to the Ethereum key it signs receipts
/// with. A dataset names its key service by the X25519 key its keys are sealed to (`kmsKey`),
/// which cannot sign; the chain checks the key service's word (that it released a task's keys,
/// see `Strongroom.refundReleased`) against the signer registered here.
/// @dev A registration is signed by the signer, so anyone may post it (the key service needs no
/// ether). An X25519 key cannot prove itself on chain, so somebody could register a key service's
/// sealing key under their own signer first: the genuine service then cannot register that key
/// (and makes a new one), but the squatter gains nothing, because only the holder of the sealing
/// key can open deposits sealed to it. Pools check a key service's registration (the service
/// signs with both keys) before they pin it in an offer and stake on its receipts.
abstract contract KeyServiceRegistry is StrongroomBase {
    error KeyServiceExists(bytes32 sealingKey, address signer);
    error InvalidKeyServiceSignature(bytes32 sealingKey);

    event KeyServiceRegistered(bytes32 indexed sealingKey, address indexed signer);

    bytes32 private constant KEY_SERVICE_TYPEHASH = keccak256("KeyService(bytes32 sealingKey)");

    mapping(bytes32 sealingKey => address) private _keyServiceSigners;

    /// @notice Register a key service's sealing key and the signer of its receipts, once.
    /// @param sig The signer's EIP-712 `KeyService(bytes32 sealingKey)`.
    function registerKeyService(bytes32 sealingKey, bytes calldata sig) external {
        address signer = Signatures.recover(hashKeyService(sealingKey), sig);
        if (signer == address(0)) revert InvalidKeyServiceSignature(sealingKey);
        address existing = _keyServiceSigners[sealingKey];
        if (existing != address(0)) revert KeyServiceExists(sealingKey, existing);
        _keyServiceSigners[sealingKey] = signer;
        emit KeyServiceRegistered(sealingKey, signer);
    }

    /// The signer registered for a sealing key; zero when none is.
    function keyServiceSigner(bytes32 sealingKey) public view returns (address) {
        return _keyServiceSigners[sealingKey];
    }

    function hashKeyService(bytes32 sealingKey) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(KEY_SERVICE_TYPEHASH, sealingKey)));
    }
}
