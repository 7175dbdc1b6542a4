// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {StrongroomBase} from "./StrongroomBase.sol";
import {Pool} from "./Types.sol";

/// @notice Compute pools and their stake. A task rented under a pool offer that names its key
/// service locks part of the pool's free stake; the lock is released when the task settles or
/// is refunded, and slashed to the analyst when the key service shows it released the keys and
/// no result came (`Strongroom.refundReleased`).
abstract contract PoolRegistry is StrongroomBase {
    using SafeCast for uint256;

    error PoolExists(bytes32 id);
    error UnknownPool(bytes32 id);
    error NotPoolOperator(bytes32 id, address caller);
    error InsufficientStake(bytes32 pool, uint256 required, uint256 available);
    error UnbondingNotOver(bytes32 pool, uint64 unbondingAt);
    error NothingUnbonding(bytes32 pool);

    event UnbondingDelaySet(uint64 delay);
    event StakeRatioSet(uint16 bps);
    event PoolRegistered(bytes32 indexed id, address indexed operator);
    event StakeDeposited(bytes32 indexed pool, address indexed from, uint256 amount);
    event UnstakeRequested(bytes32 indexed pool, uint128 amount, uint64 unbondingAt);
    event StakeWithdrawn(bytes32 indexed pool, uint128 amount);

    /// Two slots, although `Pool`'s 160+3*128+64 bits would take three: amounts are kept in 96
    /// bits (7.9e28 wei, more than all the ether there is) and `locked` is not stored but derived
    /// as `stake - free`. The first slot (operator, free) is all that `rent` and `submitResult`
    /// touch: rent checks and lowers `free`, settlement raises it again, and a refund slashes by
    /// lowering `stake` alone (which lowers `locked` with it).
    struct PoolRecord {
        address operator;
        uint96 free; // stake neither locked by active tasks nor unbonding
        uint96 stake; // free + locked
        uint96 unbonding;
        uint64 unbondingAt;
    }

    mapping(bytes32 id => PoolRecord) internal _pools;

    // ---------------------------------------------------------------------
    // Governance
    // ---------------------------------------------------------------------

    /// How long unstaked funds stay slashable-in-waiting before they can be withdrawn.
    function setUnbondingDelay(uint64 delay) external onlyOwner {
        _config.unbondingDelay = delay;
        emit UnbondingDelaySet(delay);
    }

    /// Stake locked per task, in basis points of the pool price (10,000 = the pool price).
    /// Applies to tasks rented from now on; each task carries its own `stake`.
    function setStakeRatio(uint16 bps) external onlyOwner {
        _config.stakeRatio = bps;
        emit StakeRatioSet(bps);
    }

    function unbondingDelay() external view returns (uint64) {
        return _config.unbondingDelay;
    }

    function stakeRatio() external view returns (uint16) {
        return _config.stakeRatio;
    }

    // ---------------------------------------------------------------------
    // Pools
    // ---------------------------------------------------------------------

    /// @notice Create a compute pool operated by the caller.
    function registerPool(bytes32 salt) external returns (bytes32 id) {
        id = poolId(msg.sender, salt);
        PoolRecord storage p = _pools[id];
        if (p.operator != address(0)) revert PoolExists(id);
        p.operator = msg.sender;
        emit PoolRegistered(id, msg.sender);
    }

    /// @notice Add the sent ether to the pool's stake. Anyone may back a pool; only its
    /// operator can take stake out again (to the operator's balance).
    function depositStake(bytes32 pool) external payable {
        PoolRecord storage p = _pools[pool];
        if (p.operator == address(0)) revert UnknownPool(pool);
        uint96 amount = msg.value.toUint96();
        p.free += amount;
        p.stake += amount;
        emit StakeDeposited(pool, msg.sender, msg.value);
    }

    /// @notice Start unbonding `amount` of free stake. A further request adds to the amount
    /// and restarts the delay, so stake can never leave earlier than one full delay after it
    /// stopped backing tasks.
    function requestUnstake(bytes32 pool, uint128 amount) external {
        PoolRecord storage p = _operatedPool(pool);
        uint96 free = p.free;
        if (amount > free) revert InsufficientStake(pool, amount, free);
        // casting to 'uint96' is safe because amount <= free, a uint96
        // forge-lint: disable-next-line(unsafe-typecast)
        uint96 a = uint96(amount);
        p.free = free - a;
        p.stake -= a;
        p.unbonding += a;
        uint64 unbondingAt = _saturatingDeadline(_config.unbondingDelay);
        p.unbondingAt = unbondingAt;
        emit UnstakeRequested(pool, amount, unbondingAt);
    }

    /// @notice Move the unbonded stake to the operator's withdrawable balance.
    function withdrawUnbonded(bytes32 pool) external {
        PoolRecord storage p = _operatedPool(pool);
        uint96 amount = p.unbonding;
        if (amount == 0) revert NothingUnbonding(pool);
        uint64 unbondingAt = p.unbondingAt;
        if (block.timestamp < unbondingAt) revert UnbondingNotOver(pool, unbondingAt);
        p.unbonding = 0;
        p.unbondingAt = 0;
        _credit(msg.sender, amount);
        emit StakeWithdrawn(pool, amount);
    }

    // ---------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------

    /// Pool record; all zero when the id is unknown.
    function getPool(bytes32 id) external view returns (Pool memory) {
        PoolRecord memory p = _pools[id];
        return Pool({
            operator: p.operator,
            stake: p.stake,
            locked: p.stake - p.free,
            unbonding: p.unbonding,
            unbondingAt: p.unbondingAt
        });
    }

    function poolOperator(bytes32 id) external view returns (address) {
        return _pools[id].operator;
    }

    function poolId(address operator, bytes32 salt) public pure returns (bytes32) {
        return keccak256(abi.encode(operator, salt));
    }

    function _operatedPool(bytes32 pool) internal view returns (PoolRecord storage p) {
        p = _pools[pool];
        address operator = p.operator;
        if (operator == address(0)) revert UnknownPool(pool);
        if (operator != msg.sender) revert NotPoolOperator(pool, msg.sender);
    }
}
