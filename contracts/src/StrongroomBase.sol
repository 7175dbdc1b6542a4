// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

/// @notice State shared by every part of Strongroom: the EIP-712 domain, governance
/// (Ownable2Step), the packed configuration word and the withdrawable balances.
abstract contract StrongroomBase is EIP712, Ownable2Step {
    /// Governance settings and the task counter in ONE storage slot (64+16+32+64+64 bits):
    /// every `rent` reads the stake ratio and bumps the counter, every `submitResult` reads the
    /// trust epoch, so packing them makes that a single cold SLOAD (and one SSTORE) per call.
    struct Config {
        uint64 taskCount; // ids are 1..taskCount
        uint16 stakeRatio; // bps of the pool price locked as stake per task
        uint32 trustEpoch; // bumped whenever governance distrusts a key or a measurement
        uint64 enclaveTtl;
        uint64 unbondingDelay;
    }

    Config internal _config;

    /// Withdrawable funds per account (settled payments, refunds, overpayments, unbonded stake).
    mapping(address account => uint256) public balances;

    constructor() EIP712("Strongroom", "2") Ownable(msg.sender) {
        _config = Config({
            taskCount: 0,
            stakeRatio: 10_000,
            trustEpoch: 0,
            enclaveTtl: 30 days,
            unbondingDelay: 7 days
        });
    }

    function _credit(address account, uint256 amount) internal {
        // Skipping zero credits saves a cold SLOAD+SSTORE for free offers and SQL jobs' app share.
        if (amount != 0) balances[account] += amount;
    }

    /// `now + duration`, clamped so that a huge duration means "never" instead of overflowing.
    function _saturatingDeadline(uint64 duration) internal view returns (uint64) {
        uint256 deadline = block.timestamp + duration;
        // casting to 'uint64' is safe because larger values were clamped just before
        // forge-lint: disable-next-line(unsafe-typecast)
        return deadline > type(uint64).max ? type(uint64).max : uint64(deadline);
    }
}
