// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Strongroom} from "../../src/Strongroom.sol";
import {Outcome} from "../../src/Types.sol";

/// The EIP-712 digests of a task's messages, computed here from their type strings rather than
/// by the contract (which keeps them internal): a signature over one of these verifying on chain
/// shows the contract hashes what the off-chain signers sign. `using TaskDigests for Strongroom`
/// lets a test write `sr.hashResult(...)`.
library TaskDigests {
    function domain(Strongroom sr) internal view returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Strongroom"),
                keccak256("2"),
                block.chainid,
                address(sr)
            )
        );
    }

    function typed(Strongroom sr, bytes32 structHash) internal view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", domain(sr), structHash));
    }

    function hashAuthorization(Strongroom sr, uint256 taskId, address enclave) internal view returns (bytes32) {
        return typed(sr, keccak256(abi.encode(keccak256("Authorization(uint256 taskId,address enclave)"), taskId, enclave)));
    }

    function hashReleased(Strongroom sr, uint256 taskId, address enclave) internal view returns (bytes32) {
        return typed(sr, keccak256(abi.encode(keccak256("Released(uint256 taskId,address enclave)"), taskId, enclave)));
    }

    function hashResult(
        Strongroom sr,
        uint256 taskId,
        bytes32 digest,
        Outcome outcome,
        bytes32 keyService,
        string memory location
    ) internal view returns (bytes32) {
        bytes32 typehash =
            keccak256("Result(uint256 taskId,bytes32 digest,uint8 outcome,bytes32 keyService,string location)");
        return typed(
            sr, keccak256(abi.encode(typehash, taskId, digest, uint8(outcome), keyService, keccak256(bytes(location))))
        );
    }
}
