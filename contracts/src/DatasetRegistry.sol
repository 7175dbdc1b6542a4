// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {StrongroomBase} from "./StrongroomBase.sol";
import {Dataset} from "./Types.sol";

/// @notice Datasets and the per-analyst privacy (epsilon) ledger of each dataset.
abstract contract DatasetRegistry is StrongroomBase {
    error DatasetExists(bytes32 id);
    error UnknownDataset(bytes32 id);
    error DatasetInactive(bytes32 id);
    error NotDatasetOwner(bytes32 id, address caller);
    error BudgetDecrease(uint64 current, uint64 requested);
    error PrivacyBudgetExhausted(bytes32 dataset, address analyst, uint64 remaining, uint64 requested);

    event DatasetRegistered(
        bytes32 indexed id,
        address indexed owner,
        string uri,
        bytes32 manifestDigest,
        string kmsUrl,
        bytes32 kmsKey,
        bytes32 policyHash,
        uint64 privacyBudget
    );
    event DatasetUpdated(
        bytes32 indexed id,
        uint64 version,
        string uri,
        bytes32 manifestDigest,
        string kmsUrl,
        bytes32 kmsKey,
        bytes32 policyHash
    );
    event DatasetTransferred(bytes32 indexed id, address indexed from, address indexed to);
    event DatasetActiveSet(bytes32 indexed id, bool active);
    event PrivacyBudgetSet(bytes32 indexed id, uint64 budget);
    event PrivacyReserved(bytes32 indexed dataset, address indexed analyst, uint256 indexed taskId, uint64 epsilon);
    event PrivacySpent(bytes32 indexed dataset, address indexed analyst, uint256 indexed taskId, uint64 epsilon);
    event PrivacyReleased(bytes32 indexed dataset, address indexed analyst, uint256 indexed taskId, uint64 epsilon);

    /// Everything `rent` needs besides the two hashes, in one slot (160+8+24+64 bits). The ABI's
    /// `version` is a uint64, but 37 bytes do not fit in a word: the counter is kept in 24 bits
    /// (16.7 million updates per dataset; the 16,777,216th update reverts with an overflow).
    /// `version != 0` marks a registered dataset, so that a transfer to the zero address
    /// (renouncing) can never free the id for re-registration.
    struct DatasetHeader {
        address owner;
        bool active;
        uint24 version;
        uint64 privacyBudget;
    }

    struct DatasetRecord {
        DatasetHeader header;
        bytes32 manifestDigest;
        bytes32 kmsKey;
        bytes32 policyHash;
        string uri;
        string kmsUrl;
    }


    mapping(bytes32 id => DatasetRecord) internal _datasets;
    /// Epsilon of one analyst on one dataset, one word: `spent` (by completed tasks) in bits
    /// 64..127, `reserved` (by active tasks) in bits 0..63. Kept as a plain word so that each
    /// update is exactly one SLOAD and one SSTORE (a packed struct field update re-reads the slot).
    mapping(bytes32 dataset => mapping(address analyst => uint256)) private _privacy;

    // ---------------------------------------------------------------------
    // Owner actions
    // ---------------------------------------------------------------------

    /// @notice Publish a dataset. The id is derived from the caller and a salt,
    /// so nobody can squat another owner's id.
    function registerDataset(
        bytes32 salt,
        string calldata uri,
        bytes32 manifestDigest,
        string calldata kmsUrl,
        bytes32 kmsKey,
        bytes32 policyHash,
        uint64 privacyBudget
    ) external returns (bytes32 id) {
        id = datasetId(msg.sender, salt);
        DatasetRecord storage d = _datasets[id];
        if (d.header.version != 0) revert DatasetExists(id);
        d.header = DatasetHeader({owner: msg.sender, active: true, version: 1, privacyBudget: privacyBudget});
        _setContent(d, uri, manifestDigest, kmsUrl, kmsKey, policyHash);
        emit DatasetRegistered(id, msg.sender, uri, manifestDigest, kmsUrl, kmsKey, policyHash, privacyBudget);
    }

    /// @notice Replace the dataset's content, key and policy. Offers signed for the old policy
    /// stop matching (`PolicyMismatch`); active tasks keep the version they were rented with.
    function updateDataset(
        bytes32 id,
        string calldata uri,
        bytes32 manifestDigest,
        string calldata kmsUrl,
        bytes32 kmsKey,
        bytes32 policyHash
    ) external {
        DatasetRecord storage d = _ownedDataset(id);
        uint24 version = d.header.version + 1;
        d.header.version = version;
        _setContent(d, uri, manifestDigest, kmsUrl, kmsKey, policyHash);
        emit DatasetUpdated(id, version, uri, manifestDigest, kmsUrl, kmsKey, policyHash);
    }

    /// @notice Hand the dataset to `newOwner`. Offers signed or presigned by the old owner stop
    /// being accepted, since they are checked against the current owner; tasks already rented
    /// still pay the owner recorded at rent. The zero address renounces the dataset for good.
    function transferDataset(bytes32 id, address newOwner) external {
        DatasetRecord storage d = _ownedDataset(id);
        d.header.owner = newOwner;
        emit DatasetTransferred(id, msg.sender, newOwner);
    }

    /// @notice Pause (or resume) rentals of the dataset; active tasks are not affected.
    function setDatasetActive(bytes32 id, bool active) external {
        _ownedDataset(id).header.active = active;
        emit DatasetActiveSet(id, active);
    }

    /// @notice Raise the total epsilon each analyst may spend on the dataset. Lowering is
    /// refused: reservations already made against the old budget must stay valid.
    function setPrivacyBudget(bytes32 id, uint64 budget) external {
        DatasetRecord storage d = _ownedDataset(id);
        uint64 current = d.header.privacyBudget;
        if (budget < current) revert BudgetDecrease(current, budget);
        d.header.privacyBudget = budget;
        emit PrivacyBudgetSet(id, budget);
    }

    // ---------------------------------------------------------------------
    // Views
    // ---------------------------------------------------------------------

    /// Dataset record; all zero when the id is unknown.
    function getDataset(bytes32 id) external view returns (Dataset memory) {
        DatasetRecord storage d = _datasets[id];
        DatasetHeader memory h = d.header;
        return Dataset({
            owner: h.owner,
            active: h.active,
            version: h.version,
            privacyBudget: h.privacyBudget,
            manifestDigest: d.manifestDigest,
            kmsKey: d.kmsKey,
            policyHash: d.policyHash,
            uri: d.uri,
            kmsUrl: d.kmsUrl
        });
    }

    function datasetId(address owner, bytes32 salt) public pure returns (bytes32) {
        return keccak256(abi.encode(owner, salt));
    }

    /// Epsilon `analyst` has spent on `dataset` (completed tasks) and holds reserved (active tasks).
    function privacySpend(bytes32 dataset, address analyst) external view returns (uint64 spent, uint64 reserved) {
        return _unpackPrivacy(_privacy[dataset][analyst]);
    }

    // ---------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------

    function _ownedDataset(bytes32 id) internal view returns (DatasetRecord storage d) {
        d = _datasets[id];
        DatasetHeader memory h = d.header;
        if (h.version == 0) revert UnknownDataset(id);
        if (h.owner != msg.sender) revert NotDatasetOwner(id, msg.sender);
    }

    function _setContent(
        DatasetRecord storage d,
        string calldata uri,
        bytes32 manifestDigest,
        string calldata kmsUrl,
        bytes32 kmsKey,
        bytes32 policyHash
    ) private {
        d.manifestDigest = manifestDigest;
        d.kmsKey = kmsKey;
        d.policyHash = policyHash;
        d.uri = uri;
        d.kmsUrl = kmsUrl;
    }

    /// Reserve `epsilon` of `analyst`'s budget on `dataset` for an active task.
    function _reservePrivacy(bytes32 dataset, address analyst, uint64 epsilon, uint64 budget, uint256 taskId)
        internal
    {
        mapping(address => uint256) storage ledger = _privacy[dataset];
        (uint64 spent, uint64 reserved) = _unpackPrivacy(ledger[analyst]);
        // Budgets only grow, so spent + reserved <= budget always holds and this cannot underflow.
        uint64 remaining = budget - spent - reserved;
        if (epsilon > remaining) revert PrivacyBudgetExhausted(dataset, analyst, remaining, epsilon);
        // reserved + epsilon <= budget, a uint64: cannot overflow.
        ledger[analyst] = _packPrivacy(spent, reserved + epsilon);
        emit PrivacyReserved(dataset, analyst, taskId, epsilon);
    }

    /// Turn a reservation into spent epsilon (the task's result was released).
    function _spendPrivacy(bytes32 dataset, address analyst, uint64 epsilon, uint256 taskId) internal {
        mapping(address => uint256) storage ledger = _privacy[dataset];
        (uint64 spent, uint64 reserved) = _unpackPrivacy(ledger[analyst]);
        ledger[analyst] = _packPrivacy(spent + epsilon, reserved - epsilon);
        emit PrivacySpent(dataset, analyst, taskId, epsilon);
    }

    /// Give a reservation back (no result was released: attested failure or refund).
    function _releasePrivacy(bytes32 dataset, address analyst, uint64 epsilon, uint256 taskId) internal {
        mapping(address => uint256) storage ledger = _privacy[dataset];
        (uint64 spent, uint64 reserved) = _unpackPrivacy(ledger[analyst]);
        ledger[analyst] = _packPrivacy(spent, reserved - epsilon);
        emit PrivacyReleased(dataset, analyst, taskId, epsilon);
    }

    function _packPrivacy(uint64 spent, uint64 reserved) private pure returns (uint256) {
        return (uint256(spent) << 64) | reserved;
    }

    function _unpackPrivacy(uint256 word) private pure returns (uint64 spent, uint64 reserved) {
        // casting to 'uint64' keeps exactly the field's 64 bits
        // forge-lint: disable-next-line(unsafe-typecast)
        return (uint64(word >> 64), uint64(word));
    }
}
