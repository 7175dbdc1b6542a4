// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// Lifecycle of a task. `None` is the zero value, i.e. "no such task".
enum TaskStatus {
    None,
    Active,
    Completed,
    Failed,
    Refunded
}

// `Quote.quoteType` of quotes produced by the enclave simulator. Only test
// deployments accept them; they prove nothing about real hardware.
uint8 constant QUOTE_TYPE_SIMULATED = 1;

/// An attestation quote, shaped like a hardware report. The platform (hardware
/// vendor) key signs `keccak256(abi.encode(quote))` with raw secp256k1 ECDSA.
/// `reportData[0]` carries the enclave's signing address in its first 20 bytes.
struct Quote {
    uint8 quoteType;
    bytes32 measurement;
    bytes32 signer;
    uint16 productId;
    uint16 svn;
    bool debug;
    bytes32[2] reportData;
}

struct Dataset {
    address owner;
    bytes32 checksum;
    bytes32 kmsKey;
    bytes32 policyHash;
    string uri;
    string kmsUrl;
}

/// Signed off chain by the dataset owner (EIP-712). Reusable by any number of
/// analysts until `validUntil`; `salt` lets an owner publish distinct offers.
struct DatasetOffer {
    bytes32 dataset;
    uint256 price;
    uint64 validUntil;
    bytes32 salt;
}

/// Signed off chain by the pool operator (EIP-712).
struct PoolOffer {
    bytes32 pool;
    uint256 price;
    uint64 maxDuration;
    bytes32 salt;
}

/// Field order keeps `analyst`/`deadline`/`status` in one slot and both prices
/// in another, so creating and settling a task touches as few slots as possible.
struct Task {
    bytes32 dataset;
    bytes32 pool;
    address analyst;
    uint64 deadline;
    TaskStatus status;
    uint128 datasetPrice;
    uint128 poolPrice;
    bytes32 jobHash;
    bytes32 resultKey;
    bytes32 resultDigest;
}

/// @title Strongroom
/// @notice Escrow and attestation registry for renting datasets to jobs that run
/// inside attested enclaves. A dataset owner and a pool operator each sign an
/// offer off chain; an analyst combines both into a task by paying the sum into
/// escrow. An enclave of that pool, authorised off chain by the operator, then
/// attests the result digest, which releases the escrow. If nobody settles the
/// task before its deadline the analyst can take the whole payment back.
/// @dev Payments are pull-based (`balances` + `withdraw`) so that no settlement
/// path ever calls out to an untrusted address.
contract Strongroom is EIP712, Ownable2Step {
    using SafeCast for uint256;

    // ---------------------------------------------------------------------
    // EIP-712 type hashes (the Rust side signs with the same type strings)
    // ---------------------------------------------------------------------

    bytes32 private constant DATASET_OFFER_TYPEHASH =
        keccak256("DatasetOffer(bytes32 dataset,uint256 price,uint64 validUntil,bytes32 salt)");
    bytes32 private constant POOL_OFFER_TYPEHASH =
        keccak256("PoolOffer(bytes32 pool,uint256 price,uint64 maxDuration,bytes32 salt)");
    bytes32 private constant AUTHORIZATION_TYPEHASH = keccak256("Authorization(uint256 taskId,address enclave)");
    bytes32 private constant RESULT_TYPEHASH = keccak256("Result(uint256 taskId,bytes32 digest,bool failed)");

    // ---------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------

    error SimulatedQuoteRefused();
    error InvalidPlatformSignature();
    error UntrustedPlatform(address platformKey);
    error UntrustedMeasurement(bytes32 measurement);
    error DebugEnclave();
    error BadReportData();

    error DatasetExists(bytes32 id);
    error PoolExists(bytes32 id);

    error UnknownDataset(bytes32 id);
    error InvalidDatasetOfferSignature();
    error OfferExpired(uint64 validUntil);
    error UnknownPool(bytes32 id);
    error InvalidPoolOfferSignature();
    error EmptyJob();
    error InsufficientPayment(uint256 required, uint256 sent);

    error UnknownTask(uint256 taskId);
    error TaskNotActive(uint256 taskId, TaskStatus status);
    error DeadlinePassed(uint256 taskId, uint64 deadline);
    error DeadlineNotReached(uint256 taskId, uint64 deadline);
    error InvalidEnclaveSignature();
    error EnclaveNotActive(address enclave);
    error NotAuthorized(uint256 taskId, address enclave);

    error NothingToWithdraw();
    error WithdrawFailed();

    // ---------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------

    event PlatformKeyTrusted(address indexed key, bool trusted);
    event MeasurementTrusted(bytes32 indexed measurement, bool trusted);
    event EnclaveTtlSet(uint64 ttl);
    event EnclaveRegistered(
        address indexed enclave, bytes32 indexed measurement, address platformKey, uint64 expiresAt
    );
    event DatasetRegistered(
        bytes32 indexed id,
        address indexed owner,
        string uri,
        bytes32 checksum,
        string kmsUrl,
        bytes32 kmsKey,
        bytes32 policyHash
    );
    event PoolRegistered(bytes32 indexed id, address indexed operator);
    event TaskCreated(
        uint256 indexed taskId,
        bytes32 indexed dataset,
        bytes32 indexed pool,
        address analyst,
        uint64 deadline,
        bytes32 jobHash,
        bytes32 resultKey,
        string sql
    );
    event ResultSubmitted(
        uint256 indexed taskId, address indexed enclave, bytes32 digest, string location, bool failed
    );
    event TaskRefunded(uint256 indexed taskId, address indexed analyst, uint256 amount);
    /// Every increase of a withdrawable balance, so balances can be audited from logs alone.
    event Credited(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);

    // ---------------------------------------------------------------------
    // Storage
    // ---------------------------------------------------------------------

    /// Fixed at deployment so that no governance action can ever make a
    /// production deployment trust simulated hardware.
    bool public immutable acceptSimulatedQuotes;

    /// How long an enclave registration stays valid before it must present a fresh quote.
    uint64 public enclaveTtl = 30 days;

    mapping(address key => bool) public trustedPlatformKeys;
    mapping(bytes32 measurement => bool) public trustedMeasurements;

    /// `platformKey` is kept (in the same slot as `expiresAt`, so at no extra
    /// storage cost) so that distrusting a platform key also retires every
    /// enclave it vouched for, instead of leaving them active until they expire.
    struct EnclaveRecord {
        bytes32 measurement;
        uint64 expiresAt;
        address platformKey;
    }

    mapping(address enclave => EnclaveRecord) private _enclaves;
    mapping(bytes32 id => Dataset) private _datasets;
    mapping(bytes32 id => address) public poolOperator;
    mapping(uint256 taskId => Task) private _tasks;

    /// Number of tasks created so far; task ids are 1..taskCount (0 is never a task).
    uint256 public taskCount;

    /// Withdrawable funds per account (settled payments, refunds and overpayments).
    mapping(address account => uint256) public balances;

    /// @param acceptSimulatedQuotes_ Whether quotes from the enclave simulator are
    /// accepted. Production deployments pass false.
    constructor(bool acceptSimulatedQuotes_) EIP712("Strongroom", "1") Ownable(msg.sender) {
        acceptSimulatedQuotes = acceptSimulatedQuotes_;
    }

    // ---------------------------------------------------------------------
    // Governance
    // ---------------------------------------------------------------------

    /// Trust (or stop trusting) a hardware vendor's quote-signing key.
    function setPlatformKey(address key, bool trusted) external onlyOwner {
        trustedPlatformKeys[key] = trusted;
        emit PlatformKeyTrusted(key, trusted);
    }

    /// Trust (or stop trusting) an enclave code measurement. Distrusting one
    /// immediately retires every enclave registered with it.
    function setMeasurement(bytes32 measurement, bool trusted) external onlyOwner {
        trustedMeasurements[measurement] = trusted;
        emit MeasurementTrusted(measurement, trusted);
    }

    /// Lifetime of future registrations; existing ones keep their expiry.
    /// Zero makes new registrations expire at once, which pauses onboarding.
    function setEnclaveTtl(uint64 ttl) external onlyOwner {
        enclaveTtl = ttl;
        emit EnclaveTtlSet(ttl);
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

        address platformKey = _recover(keccak256(abi.encode(quote)), platformSignature);
        if (platformKey == address(0)) revert InvalidPlatformSignature();
        if (!trustedPlatformKeys[platformKey]) revert UntrustedPlatform(platformKey);
        if (!trustedMeasurements[quote.measurement]) revert UntrustedMeasurement(quote.measurement);
        // A debug enclave's memory can be inspected by the host, so it cannot keep data secret.
        if (quote.debug) revert DebugEnclave();

        enclave = address(bytes20(quote.reportData[0]));
        if (enclave == address(0)) revert BadReportData();

        uint64 expiresAt = _saturatingDeadline(enclaveTtl);
        _enclaves[enclave] = EnclaveRecord(quote.measurement, expiresAt, platformKey);
        emit EnclaveRegistered(enclave, quote.measurement, platformKey, expiresAt);
    }

    /// Registration of an enclave; zeros when it was never registered.
    function enclaves(address enclave) external view returns (bytes32 measurement, uint64 expiresAt) {
        EnclaveRecord storage record = _enclaves[enclave];
        return (record.measurement, record.expiresAt);
    }

    /// @notice True while the enclave's registration has not expired and both
    /// its measurement and the platform key that attested it are still trusted.
    function isEnclaveActive(address enclave) public view returns (bool) {
        EnclaveRecord storage record = _enclaves[enclave];
        return record.expiresAt != 0 && block.timestamp < record.expiresAt && trustedMeasurements[record.measurement]
            && trustedPlatformKeys[record.platformKey];
    }

    // ---------------------------------------------------------------------
    // Datasets and pools
    // ---------------------------------------------------------------------

    /// @notice Publish a dataset. The id is derived from the caller and a salt,
    /// so nobody can squat another owner's id.
    function registerDataset(
        bytes32 salt,
        string calldata uri,
        bytes32 checksum,
        string calldata kmsUrl,
        bytes32 kmsKey,
        bytes32 policyHash
    ) external returns (bytes32 id) {
        id = datasetId(msg.sender, salt);
        if (_datasets[id].owner != address(0)) revert DatasetExists(id);
        _datasets[id] = Dataset(msg.sender, checksum, kmsKey, policyHash, uri, kmsUrl);
        emit DatasetRegistered(id, msg.sender, uri, checksum, kmsUrl, kmsKey, policyHash);
    }

    /// Dataset record; `owner` is zero when the id is unknown.
    function getDataset(bytes32 id) external view returns (Dataset memory) {
        return _datasets[id];
    }

    function datasetId(address owner, bytes32 salt) public pure returns (bytes32) {
        return keccak256(abi.encode(owner, salt));
    }

    /// @notice Create a compute pool operated by the caller.
    function registerPool(bytes32 salt) external returns (bytes32 id) {
        id = poolId(msg.sender, salt);
        if (poolOperator[id] != address(0)) revert PoolExists(id);
        poolOperator[id] = msg.sender;
        emit PoolRegistered(id, msg.sender);
    }

    function poolId(address operator, bytes32 salt) public pure returns (bytes32) {
        return keccak256(abi.encode(operator, salt));
    }

    // ---------------------------------------------------------------------
    // Tasks
    // ---------------------------------------------------------------------

    /// @notice Accept a dataset offer and a pool offer and escrow both prices.
    /// @param resultKey Key the enclave seals the result to (opaque to the contract).
    /// @param sql The job; only its hash is stored, the text is in the event.
    /// @return taskId The new task's id (ids start at 1).
    function rent(
        DatasetOffer calldata datasetOffer,
        bytes calldata datasetSig,
        PoolOffer calldata poolOffer,
        bytes calldata poolSig,
        bytes32 resultKey,
        string calldata sql
    ) external payable returns (uint256 taskId) {
        _checkDatasetOffer(datasetOffer, datasetSig);
        _checkPoolOffer(poolOffer, poolSig);
        if (bytes(sql).length == 0) revert EmptyJob();
        taskId = _openTask(datasetOffer, poolOffer, resultKey, sql);
    }

    /// @notice Settle a task with the enclave's attested result. Anyone may relay
    /// it (normally the worker host): authority comes from the two signatures.
    /// @param digest Digest of the sealed result (or of the sealed failure report).
    /// @param location Where the sealed result can be fetched; only logged.
    /// @param authSig Pool operator's `Authorization(taskId, enclave)`.
    /// @param enclaveSig Enclave's `Result(taskId, digest, failed)`.
    /// @param failed True when the enclave attests that the job itself failed: the
    /// pool is still paid for the compute, but the dataset price goes back to the analyst.
    function submitResult(
        uint256 taskId,
        bytes32 digest,
        string calldata location,
        bytes calldata authSig,
        bytes calldata enclaveSig,
        bool failed
    ) external {
        Task storage task = _activeTask(taskId);
        if (block.timestamp > task.deadline) revert DeadlinePassed(taskId, task.deadline);

        address enclave = _recover(hashResult(taskId, digest, failed), enclaveSig);
        if (enclave == address(0)) revert InvalidEnclaveSignature();
        if (!isEnclaveActive(enclave)) revert EnclaveNotActive(enclave);
        // Any active enclave could sign a result; only the one the operator assigned may settle.
        address operator = poolOperator[task.pool];
        if (_recover(hashAuthorization(taskId, enclave), authSig) != operator) {
            revert NotAuthorized(taskId, enclave);
        }

        task.resultDigest = digest;
        _credit(operator, task.poolPrice);
        if (failed) {
            task.status = TaskStatus.Failed;
            _credit(task.analyst, task.datasetPrice);
        } else {
            task.status = TaskStatus.Completed;
            _credit(_datasets[task.dataset].owner, task.datasetPrice);
        }

        emit ResultSubmitted(taskId, enclave, digest, location, failed);
    }

    /// @notice Return the whole escrow to the analyst of a task nobody settled in time.
    /// Anyone may trigger it; the funds only ever go to the analyst.
    function refund(uint256 taskId) external {
        Task storage task = _activeTask(taskId);
        if (block.timestamp <= task.deadline) revert DeadlineNotReached(taskId, task.deadline);

        task.status = TaskStatus.Refunded;
        uint256 amount = uint256(task.datasetPrice) + task.poolPrice;
        address analyst = task.analyst;
        _credit(analyst, amount);
        emit TaskRefunded(taskId, analyst, amount);
    }

    function getTask(uint256 taskId) external view returns (Task memory) {
        return _tasks[taskId];
    }

    // ---------------------------------------------------------------------
    // Payments
    // ---------------------------------------------------------------------

    /// @notice Pay out the caller's whole balance.
    function withdraw() external {
        uint256 amount = balances[msg.sender];
        if (amount == 0) revert NothingToWithdraw();
        // Zeroed before the call, so a re-entering receiver finds nothing left to take.
        balances[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        (bool ok,) = msg.sender.call{value: amount}("");
        if (!ok) revert WithdrawFailed();
    }

    // ---------------------------------------------------------------------
    // EIP-712 helpers (full digests, as signed off chain)
    // ---------------------------------------------------------------------

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function hashDatasetOffer(DatasetOffer calldata offer) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(DATASET_OFFER_TYPEHASH, offer.dataset, offer.price, offer.validUntil, offer.salt))
        );
    }

    function hashPoolOffer(PoolOffer calldata offer) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(POOL_OFFER_TYPEHASH, offer.pool, offer.price, offer.maxDuration, offer.salt))
        );
    }

    function hashAuthorization(uint256 taskId, address enclave) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(AUTHORIZATION_TYPEHASH, taskId, enclave)));
    }

    function hashResult(uint256 taskId, bytes32 digest, bool failed) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(RESULT_TYPEHASH, taskId, digest, failed)));
    }

    // ---------------------------------------------------------------------
    // Internals
    // ---------------------------------------------------------------------

    function _checkDatasetOffer(DatasetOffer calldata offer, bytes calldata sig) private view {
        address datasetOwner = _datasets[offer.dataset].owner;
        if (datasetOwner == address(0)) revert UnknownDataset(offer.dataset);
        if (_recover(hashDatasetOffer(offer), sig) != datasetOwner) revert InvalidDatasetOfferSignature();
        if (block.timestamp > offer.validUntil) revert OfferExpired(offer.validUntil);
    }

    function _checkPoolOffer(PoolOffer calldata offer, bytes calldata sig) private view {
        address operator = poolOperator[offer.pool];
        if (operator == address(0)) revert UnknownPool(offer.pool);
        if (_recover(hashPoolOffer(offer), sig) != operator) revert InvalidPoolOfferSignature();
    }

    /// Escrows the payment and records the task. Split out of `rent` only to
    /// keep the legacy code generator within its stack limit.
    function _openTask(
        DatasetOffer calldata datasetOffer,
        PoolOffer calldata poolOffer,
        bytes32 resultKey,
        string calldata sql
    ) private returns (uint256 taskId) {
        // Beyond uint128 a price could never be paid anyway; SafeCast turns it into a clean revert.
        uint128 datasetPrice = datasetOffer.price.toUint128();
        uint128 poolPrice = poolOffer.price.toUint128();
        uint256 required = uint256(datasetPrice) + poolPrice;
        if (msg.value < required) revert InsufficientPayment(required, msg.value);
        // Overpayment is kept for the sender rather than lost or bounced.
        if (msg.value > required) _credit(msg.sender, msg.value - required);

        taskId = ++taskCount;
        Task storage task = _tasks[taskId];
        task.dataset = datasetOffer.dataset;
        task.pool = poolOffer.pool;
        task.analyst = msg.sender;
        task.deadline = _saturatingDeadline(poolOffer.maxDuration);
        task.status = TaskStatus.Active;
        task.datasetPrice = datasetPrice;
        task.poolPrice = poolPrice;
        task.jobHash = keccak256(bytes(sql));
        task.resultKey = resultKey;

        emit TaskCreated(taskId, task.dataset, task.pool, msg.sender, task.deadline, task.jobHash, resultKey, sql);
    }

    function _activeTask(uint256 taskId) private view returns (Task storage task) {
        task = _tasks[taskId];
        TaskStatus status = task.status;
        if (status == TaskStatus.None) revert UnknownTask(taskId);
        if (status != TaskStatus.Active) revert TaskNotActive(taskId, status);
    }

    function _credit(address account, uint256 amount) private {
        if (amount == 0) return;
        balances[account] += amount;
        emit Credited(account, amount);
    }

    /// `now + duration`, clamped so that a huge duration means "no deadline" instead of overflowing.
    function _saturatingDeadline(uint64 duration) private view returns (uint64) {
        uint256 deadline = block.timestamp + duration;
        // casting to 'uint64' is safe because larger values were clamped just before
        // forge-lint: disable-next-line(unsafe-typecast)
        return deadline > type(uint64).max ? type(uint64).max : uint64(deadline);
    }

    /// Signer of `digest`, or zero for any malformed signature. Callers compare it
    /// with a known non-zero address, so zero never matches.
    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address) {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        return err == ECDSA.RecoverError.NoError ? signer : address(0);
    }
}
