// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";

/// @notice Signature checks on calldata signatures.
/// @dev OpenZeppelin's `SignatureChecker` looks at the signer's code first (EXTCODESIZE, 2,600 gas
/// on a cold account) and takes `bytes memory` (a copy). Almost every signer here is an EOA, so
/// we try ECDSA straight from calldata first and only fall back to ERC-1271 when that fails and
/// the signer has code. Accepting a valid ECDSA signature of a signer that has code is sound: it
/// can only come from the holder of that address's key (an EIP-7702 delegated EOA).
library Signatures {
    /// Signer of a 65-byte (r, s, v) or 64-byte EIP-2098 (r, vs) signature; zero for any other
    /// length, for a malleable (high-s) signature and for one that recovers nobody. Callers
    /// compare the result with a known non-zero address, so zero never matches.
    function recover(bytes32 digest, bytes calldata sig) internal pure returns (address signer) {
        ECDSA.RecoverError err;
        if (sig.length == 65) {
            bytes32 r;
            bytes32 s;
            uint8 v;
            assembly ("memory-safe") {
                r := calldataload(sig.offset)
                s := calldataload(add(sig.offset, 0x20))
                v := byte(0, calldataload(add(sig.offset, 0x40)))
            }
            (signer, err,) = ECDSA.tryRecover(digest, v, r, s);
        } else if (sig.length == 64) {
            bytes32 r;
            bytes32 vs;
            assembly ("memory-safe") {
                r := calldataload(sig.offset)
                vs := calldataload(add(sig.offset, 0x20))
            }
            (signer, err,) = ECDSA.tryRecover(digest, r, vs);
        } else {
            return address(0);
        }
        if (err != ECDSA.RecoverError.NoError) return address(0);
    }

    /// True when `sig` is `signer`'s signature of `digest`: ECDSA for keys, ERC-1271
    /// `isValidSignature` for contract accounts. The zero address never signs.
    function isValid(address signer, bytes32 digest, bytes calldata sig) internal view returns (bool) {
        if (signer == address(0)) return false;
        if (recover(digest, sig) == signer) return true;
        if (signer.code.length == 0) return false;
        return SignatureChecker.isValidERC1271SignatureNow(signer, digest, sig);
    }
}
