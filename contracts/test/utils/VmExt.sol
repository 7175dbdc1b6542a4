// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// Cheatcodes that forge (1.x) implements but forge-std 1.1.2's `Vm` interface does not
/// declare. Same cheatcode address, so `VmExt(address(vm))` reaches them.
interface VmExt {
    struct Log {
        bytes32[] topics;
        bytes data;
        address emitter;
    }

    struct Gas {
        uint64 gasLimit;
        uint64 gasTotalUsed;
        uint64 gasMemoryUsed;
        int64 gasRefunded;
        uint64 gasRemaining;
    }

    function recordLogs() external;
    function getRecordedLogs() external returns (Log[] memory);
    function lastCallGas() external view returns (Gas memory);
    function getBlockTimestamp() external view returns (uint256);
    function broadcast(uint256 privateKey) external;
    function toString(uint256 value) external pure returns (string memory);
    function setBlockhash(uint256 blockNumber, bytes32 blockHash) external;
}
