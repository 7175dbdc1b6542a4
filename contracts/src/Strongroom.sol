// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {EnclaveRegistry} from "./EnclaveRegistry.sol";
import {KeyServiceRegistry} from "./KeyServiceRegistry.sol";
import {Offers} from "./Offers.sol";
import {Signatures} from "./Signatures.sol";
// Every protocol type is re-exported from here, so that users of the contract (tests,
// scripts) can import all of them from this one file.
import {
    App,
    AppOffer,
    Dataset,
    DatasetOffer,
    JobKind,
    Outcome,
    PlatformKind,
    Pool,
    PoolOffer,
    Quote,
    Rental,
    TaskParams,
    TaskStatus,
    QUOTE_TYPE_SIMULATED
} from "./Types.sol";

/// @title Strongroom (protocol v2)
/// @notice Escrow and attestation registry for renting datasets to jobs that run inside
/// attested enclaves. A dataset owner, a pool operator and (for app jobs) an app owner each
/// sign an offer off chain or presign it on chain; an analyst combines them into a task by
/// paying the sum into escrow, which also locks part of the pool's stake and reserves the
/// task's privacy cost (epsilon) against the analyst's budget on the dataset. An enclave of
/// that pool, authorised off chain by the operator, attests the result digest, which releases
/// the escrow. A task nobody settles before its deadline is refunded by who is at fault: if the
/// task's key service signs that it released the keys to the pool's enclave, the pool had all
/// it needed, so the owners are paid, the epsilon is spent and the analyst takes back the pool
/// price plus the pool's locked stake (`refundReleased`); otherwise nothing was released and
/// the analyst takes back the whole payment with nobody slashed (`refund`, after a claim window
/// that leaves time for the receipt). docs/SETTLEMENT.md is the table of every outcome.
/// @dev Per task, storage holds one word: keccak256(abi.encode(TaskParams)) with the status in
/// its low byte. The parameters travel in the `TaskCreated` event and come back as calldata,
/// which is far cheaper than storing them. Payments are pull-based (`balances` + `withdraw`),
/// so no settlement path ever calls out to an untrusted address.
contract Strongroom is EnclaveRegistry, KeyServiceRegistry, Offers {
    // ---------------------------------------------------------------------
    // Errors
    // ---------------------------------------------------------------------

    error RequesterNotAllowed(address analyst);
    error SqlNotAllowed();
    error AppNotAllowed(bytes32 app);
    error PoolNotAllowed(bytes32 pool);
    error DatasetNotAllowed(bytes32 dataset);
    error PolicyMismatch(bytes32 offered, bytes32 current);
    error EpsilonAboveOfferMax(uint64 epsilon, uint64 maxEpsilon);
    error PriceAboveMaximum(uint256 price, uint256 maxPrice);
    error InsufficientPayment(uint256 required, uint256 sent);
    error PriceTooLarge(uint256 price);
    error KeyServiceNotAllowed(bytes32 keyService, bytes32 required);

    error UnknownTask(uint256 taskId);
    error TaskMismatch(uint256 taskId);
    error TaskNotActive(uint256 taskId, TaskStatus status);
    error DeadlinePassed(uint256 taskId, uint64 deadline);
    error DeadlineNotReached(uint256 taskId, uint64 deadline);
    error ClaimWindowOpen(uint256 taskId, uint64 until);
    error InvalidReleaseReceipt(uint256 taskId, address enclave);
    error InvalidEnclaveSignature();
    error EnclaveNotActive(address enclave);
    error MeasurementNotAllowed(address enclave, bytes32 measurement);
    error NotAuthorized(uint256 taskId, address enclave);

    error NothingToWithdraw();
    error WithdrawFailed();

    // ---------------------------------------------------------------------
    // Events
    // ---------------------------------------------------------------------

    event TaskCreated(
        uint256 indexed taskId, bytes32 indexed dataset, bytes32 indexed pool, TaskParams params, bytes spec
    );
    event ResultSubmitted(
        uint256 indexed taskId, address indexed enclave, bytes32 digest, string location, Outcome outcome
    );
    /// Nothing was released in time: `amount`, the three prices, went back to the analyst.
    event TaskRefunded(uint256 indexed taskId, address indexed analyst, uint256 amount);
    /// The key service released the keys to `enclave` and no result came: `amount`, the pool
    /// price plus `slashed` (the stake the task had locked), went to the analyst.
    event TaskAbandoned(uint256 indexed taskId, address indexed enclave, uint256 amount, uint256 slashed);
    event Withdrawn(address indexed account, uint256 amount);

    // ---------------------------------------------------------------------
    // Storage
    // ---------------------------------------------------------------------

    bytes32 private constant AUTHORIZATION_TYPEHASH = keccak256("Authorization(uint256 taskId,address enclave)");
    bytes32 private constant RESULT_TYPEHASH =
        keccak256("Result(uint256 taskId,bytes32 digest,uint8 outcome,bytes32 keyService,string location)");
    bytes32 private constant RELEASED_TYPEHASH = keccak256("Released(uint256 taskId,address enclave)");

    /// How long after its deadline a task can be refunded only with a key service's receipt:
    /// time for the owner (or anyone) to show that the keys were released, before a refund that
    /// assumes they were not.
    uint64 public constant RELEASE_CLAIM_WINDOW = 1 days;

    bytes32 private constant STATUS_MASK = bytes32(uint256(0xff));
    /// abi.encode(TaskParams) is 21 words: every member is a value type.
    uint256 private constant TASK_PARAMS_SIZE = 672;

    /// Per task: keccak256(abi.encode(TaskParams)) with its low byte replaced by the status.
    /// 248 bits of the hash remain, still far beyond any collision search.
    mapping(uint256 taskId => bytes32) private _commitments;

    /// @param acceptSimulatedQuotes_ Whether quotes from the enclave simulator are
    /// accepted. Production deployments pass false.
    constructor(bool acceptSimulatedQuotes_) EnclaveRegistry(acceptSimulatedQuotes_) {}

    // ---------------------------------------------------------------------
    // Rent
    // ---------------------------------------------------------------------

    /// @notice Rent an SQL job: accept a dataset offer and a pool offer and escrow both prices.
    /// @return taskId The new task's id (ids start at 1).
    function rent(
        DatasetOffer calldata datasetOffer,
        bytes calldata datasetSig,
        PoolOffer calldata poolOffer,
        bytes calldata poolSig,
        Rental calldata rental
    ) external payable returns (uint256 taskId) {
        TaskParams memory t;
        uint16 ratio;
        (taskId, ratio) = _nextTask();
        _takeDatasetOffer(taskId, datasetOffer, datasetSig, rental, t);
        if (!datasetOffer.allowSql) revert SqlNotAllowed();
        _takePoolOffer(datasetOffer.pool, poolOffer, poolSig, ratio, t);
        // t.kind stays JobKind.Sql (zero), t.app and t.appOwner stay zero.
        _open(taskId, rental, t);
    }

    /// @notice Rent an app job: as `rent`, plus an app offer whose price is escrowed too.
    function rentApp(
        DatasetOffer calldata datasetOffer,
        bytes calldata datasetSig,
        PoolOffer calldata poolOffer,
        bytes calldata poolSig,
        AppOffer calldata appOffer,
        bytes calldata appSig,
        Rental calldata rental
    ) external payable returns (uint256 taskId) {
        TaskParams memory t;
        uint16 ratio;
        (taskId, ratio) = _nextTask();
        _takeDatasetOffer(taskId, datasetOffer, datasetSig, rental, t);
        bytes32 pinnedApp = datasetOffer.app;
        if (!datasetOffer.allowApps || (pinnedApp != bytes32(0) && pinnedApp != appOffer.app)) {
            revert AppNotAllowed(appOffer.app);
        }
        _takePoolOffer(datasetOffer.pool, poolOffer, poolSig, ratio, t);
        _takeAppOffer(appOffer, appSig, t);
        _open(taskId, rental, t);
    }

    // ---------------------------------------------------------------------
    // Settle
    // ---------------------------------------------------------------------

    /// @notice Settle a task with the enclave's attested result. Anyone may relay it (normally
    /// the worker host): authority comes from the two signatures.
    /// @param task The task's parameters, exactly as emitted in `TaskCreated`.
    /// @param digest Digest of the sealed result (or of the sealed failure report).
    /// @param location Where the sealed result can be fetched; only logged, but covered by the
    /// enclave's signature so that a relay (or a front-runner copying the signatures from the
    /// mempool) cannot settle the task with a location the analyst would never find.
    /// @param authSig Pool operator's `Authorization(taskId, enclave)` (ECDSA), or empty when it
    /// was presigned with `presignAuthorization`.
    /// @param enclaveSig Enclave's `Result(taskId, digest, outcome, location)`.
    /// @param outcome What the enclave attests (see `Outcome`). The pool is paid for the compute
    /// unless it is `HostFault`.
    function submitResult(
        TaskParams calldata task,
        uint256 taskId,
        bytes32 digest,
        string calldata location,
        bytes calldata authSig,
        bytes calldata enclaveSig,
        Outcome outcome
    ) external {
        bytes32 committed = _activeTask(task, taskId);
        uint64 deadline = task.deadline;
        if (block.timestamp > deadline) revert DeadlinePassed(taskId, deadline);
        address enclave = _checkAttestation(task, taskId, digest, outcome, location, authSig, enclaveSig);

        _commitments[taskId] = committed | _statusWord(_statusOf(outcome));
        _settle(task, taskId, outcome);
        emit ResultSubmitted(taskId, enclave, digest, location, outcome);
    }

    /// @notice Authorize `enclave` for the task on chain, for a pool operator that cannot sign
    /// (a contract wallet): `submitResult` and `refundReleased` then take an empty `authSig`, and
    /// the key service releases to that enclave on seeing it. Only the task's pool operator may,
    /// while the task is active, and it cannot be taken back.
    function presignAuthorization(TaskParams calldata task, uint256 taskId, address enclave) external {
        _activeTask(task, taskId);
        if (msg.sender != task.poolOperator) revert NotPoolOperator(task.pool, msg.sender);
        _presign(_hashAuthorization(taskId, enclave));
    }

    /// @notice Refund a task whose keys were never shown released: the whole payment goes back
    /// to the analyst, the epsilon is released, and the pool's stake is unlocked, not slashed.
    /// Nothing on chain tells a pool that never asked for the keys from a key service that never
    /// answered; slashing either would let an owner with a silent key service take a pool's
    /// stake. Anyone may call it, once the claim window after the deadline is over.
    function refund(TaskParams calldata task, uint256 taskId) external {
        bytes32 committed = _activeTask(task, taskId);
        uint64 deadline = task.deadline;
        if (block.timestamp <= deadline) revert DeadlineNotReached(taskId, deadline);
        uint256 until = uint256(deadline) + RELEASE_CLAIM_WINDOW;
        // casting to 'uint64' is safe because deadline < block.timestamp here, so until < 2^64
        // forge-lint: disable-next-line(unsafe-typecast)
        if (block.timestamp <= until) revert ClaimWindowOpen(taskId, uint64(until));

        _commitments[taskId] = committed | _statusWord(TaskStatus.Refunded);
        _unlockStake(task);
        uint256 amount = uint256(task.datasetPrice) + task.poolPrice + task.appPrice;
        address analyst = task.analyst;
        _credit(analyst, amount);
        uint64 epsilon = task.epsilon;
        if (epsilon != 0) _releasePrivacy(task.dataset, analyst, epsilon, taskId);
        emit TaskRefunded(taskId, analyst, amount);
    }

    /// @notice Settle a task past its deadline whose keys the key service released to the pool's
    /// enclave, with no result: the pool had the keys and did not deliver. The data was opened to
    /// the pool's enclave, and a host colluding with the analyst could have passed the result on,
    /// so the dataset and app owners are paid and the epsilon is spent; the analyst takes back the
    /// pool price plus the stake the task locked (slashed). Anyone may call it after the deadline.
    /// @param enclave The enclave the key service released to, as its receipt names it.
    /// @param authSig The pool operator's `Authorization(taskId, enclave)`, which the key service
    /// was shown with the request and returns with the receipt (empty when presigned): a key
    /// service cannot slash a pool for a release the pool never asked for.
    /// @param receipt The task's key service's EIP-712 `Released(uint256 taskId,address enclave)`,
    /// by the signer registered for the task's `kmsKey`.
    function refundReleased(
        TaskParams calldata task,
        uint256 taskId,
        address enclave,
        bytes calldata authSig,
        bytes calldata receipt
    ) external {
        bytes32 committed = _activeTask(task, taskId);
        uint64 deadline = task.deadline;
        if (block.timestamp <= deadline) revert DeadlineNotReached(taskId, deadline);
        address keyService = keyServiceSigner(task.kmsKey);
        if (keyService == address(0) || Signatures.recover(_hashReleased(taskId, enclave), receipt) != keyService) {
            revert InvalidReleaseReceipt(taskId, enclave);
        }
        _checkAuthorization(task.poolOperator, taskId, enclave, authSig);

        _commitments[taskId] = committed | _statusWord(TaskStatus.Abandoned);
        uint128 slashed = task.stake;
        // Lowering `stake` while `free` stays put removes exactly this task's lock.
        // casting to 'uint96' is safe because the stake was locked out of a uint96 amount at rent
        // forge-lint: disable-next-line(unsafe-typecast)
        if (slashed != 0) _pools[task.pool].stake -= uint96(slashed);
        _credit(task.datasetOwner, task.datasetPrice);
        _credit(task.appOwner, task.appPrice);
        uint256 amount = uint256(task.poolPrice) + slashed;
        _credit(task.analyst, amount);
        uint64 epsilon = task.epsilon;
        if (epsilon != 0) _spendPrivacy(task.dataset, task.analyst, epsilon, taskId);
        emit TaskAbandoned(taskId, enclave, amount, slashed);
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
    // Views
    // ---------------------------------------------------------------------

    /// Number of tasks created so far; task ids are 1..taskCount (0 is never a task).
    function taskCount() external view returns (uint256) {
        return _config.taskCount;
    }

    function taskStatus(uint256 taskId) external view returns (TaskStatus) {
        return TaskStatus(uint8(uint256(_commitments[taskId])));
    }

    /// The stored word: the parameters' hash with the status in the low byte; zero if unknown.
    function taskCommitment(uint256 taskId) external view returns (bytes32) {
        return _commitments[taskId];
    }

    /// EIP-712 `Released(uint256 taskId,address enclave)`: a key service's receipt that it
    /// released the task's keys to that enclave.
    function _hashReleased(uint256 taskId, address enclave) private view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(RELEASED_TYPEHASH, taskId, enclave)));
    }

    /// EIP-712 `Authorization(uint256 taskId,address enclave)`: the pool operator's assignment of
    /// the task to that enclave.
    function _hashAuthorization(uint256 taskId, address enclave) private view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(AUTHORIZATION_TYPEHASH, taskId, enclave)));
    }

    /// EIP-712 `Result(uint256 taskId,bytes32 digest,uint8 outcome,bytes32 keyService,string location)`:
    /// the outcome enters as its `uint8`, the string as keccak256 of its bytes (`locationHash`).
    /// `keyService` is the key that sealed the key release the enclave opened (its sender,
    /// authenticated); the contract settles only with the key service the task was rented
    /// against, so a release the host made up cannot settle.
    function _hashResult(uint256 taskId, bytes32 digest, Outcome outcome, bytes32 keyService, bytes32 locationHash)
        private
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(keccak256(abi.encode(RESULT_TYPEHASH, taskId, digest, outcome, keyService, locationHash)));
    }

    // ---------------------------------------------------------------------
    // Rent internals (split into steps to stay within the legacy code generator's stack)
    // ---------------------------------------------------------------------

    /// Next task id and the stake ratio: one read-modify-write of the packed config slot.
    function _nextTask() private returns (uint256 taskId, uint16 ratio) {
        Config storage config = _config;
        uint64 id = config.taskCount + 1;
        config.taskCount = id;
        return (id, config.stakeRatio);
    }

    function _takeDatasetOffer(
        uint256 taskId,
        DatasetOffer calldata offer,
        bytes calldata sig,
        Rental calldata rental,
        TaskParams memory t
    ) private {
        uint64 budget = _acceptDatasetOffer(offer, sig, t);
        _checkRequester(offer.requester, offer.requesterRoot, rental.requesterProof);
        _applyDatasetTerms(taskId, offer, rental.epsilon, budget, t);
    }

    /// The dataset is rentable and the offer is its owner's, valid now and not used up.
    /// Returns the dataset's privacy budget (read with the owner, in the same slot).
    function _acceptDatasetOffer(DatasetOffer calldata offer, bytes calldata sig, TaskParams memory t)
        private
        returns (uint64 privacyBudget)
    {
        bytes32 id = offer.dataset;
        DatasetHeader memory h = _datasets[id].header;
        if (h.version == 0) revert UnknownDataset(id);
        if (!h.active) revert DatasetInactive(id);

        bytes32 offerHash = hashDatasetOffer(offer);
        _checkOfferSignature(offerHash, h.owner, sig);
        if (block.timestamp < offer.validFrom) revert OfferNotYetValid(offer.validFrom);
        if (block.timestamp > offer.validUntil) revert OfferExpired(offer.validUntil);
        _useOffer(offerHash, offer.volume);

        t.dataset = id;
        t.registryVersion = h.version;
        t.analyst = msg.sender;
        t.datasetOwner = h.owner;
        return h.privacyBudget;
    }

    /// Policy, epsilon (reserved against the analyst's budget), price and measurement pin.
    function _applyDatasetTerms(
        uint256 taskId,
        DatasetOffer calldata offer,
        uint64 epsilon,
        uint64 privacyBudget,
        TaskParams memory t
    ) private {
        DatasetRecord storage d = _datasets[t.dataset];
        bytes32 policyHash = d.policyHash;
        if (offer.policyHash != policyHash) revert PolicyMismatch(offer.policyHash, policyHash);
        if (epsilon > offer.maxEpsilon) revert EpsilonAboveOfferMax(epsilon, offer.maxEpsilon);
        if (epsilon != 0) _reservePrivacy(t.dataset, msg.sender, epsilon, privacyBudget, taskId);

        t.epsilon = epsilon;
        t.datasetPrice = _price(offer.price);
        t.policyHash = policyHash;
        t.manifestDigest = d.manifestDigest;
        t.measurement = offer.measurement;
        t.kmsKey = d.kmsKey;
    }

    function _takePoolOffer(
        bytes32 pinnedPool,
        PoolOffer calldata offer,
        bytes calldata sig,
        uint16 ratio,
        TaskParams memory t
    ) private {
        bytes32 id = offer.pool;
        PoolRecord storage p = _pools[id];
        address operator = p.operator;
        if (operator == address(0)) revert UnknownPool(id);
        if (pinnedPool != bytes32(0) && pinnedPool != id) revert PoolNotAllowed(id);

        bytes32 offerHash = hashPoolOffer(offer);
        _checkOfferSignature(offerHash, operator, sig);
        if (block.timestamp > offer.validUntil) revert OfferExpired(offer.validUntil);
        _useOffer(offerHash, offer.volume);

        uint128 price = _price(offer.price);
        // The stake backs the task only under a key service the operator named (see PoolOffer).
        bytes32 keyService = offer.keyService;
        uint256 stake;
        if (keyService != bytes32(0)) {
            if (keyService != t.kmsKey) revert KeyServiceNotAllowed(t.kmsKey, keyService);
            stake = uint256(price) * ratio / 10_000;
            uint96 free = p.free;
            if (stake > free) revert InsufficientStake(id, stake, free);
            // casting to 'uint96' is safe because stake <= free, a uint96
            // forge-lint: disable-next-line(unsafe-typecast)
            p.free = free - uint96(stake);
        }

        t.pool = id;
        t.poolOperator = operator;
        t.poolPrice = price;
        // casting to 'uint128' is safe because stake <= free, a uint96
        // forge-lint: disable-next-line(unsafe-typecast)
        t.stake = uint128(stake);
        t.deadline = _saturatingDeadline(offer.maxDuration);
    }

    function _takeAppOffer(AppOffer calldata offer, bytes calldata sig, TaskParams memory t) private {
        bytes32 id = offer.app;
        AppRecord storage a = _apps[id];
        if (!a.registered) revert UnknownApp(id);
        address owner = a.owner;

        bytes32 offerHash = hashAppOffer(offer);
        _checkOfferSignature(offerHash, owner, sig);
        _useOffer(offerHash, offer.volume);

        bytes32 pinned = offer.dataset;
        if (pinned != bytes32(0) && pinned != t.dataset) revert DatasetNotAllowed(t.dataset);
        pinned = offer.pool;
        if (pinned != bytes32(0) && pinned != t.pool) revert PoolNotAllowed(t.pool);
        address requester = offer.requester;
        if (requester != address(0) && requester != msg.sender) revert RequesterNotAllowed(msg.sender);

        t.app = id;
        t.kind = JobKind.App;
        t.appOwner = owner;
        t.appPrice = _price(offer.price);
    }

    /// Payment, commitment and event: the parts common to both kinds of job.
    function _open(uint256 taskId, Rental calldata rental, TaskParams memory t) private {
        uint256 total = uint256(t.datasetPrice) + t.poolPrice + t.appPrice;
        if (total > rental.maxPrice) revert PriceAboveMaximum(total, rental.maxPrice);
        if (msg.value < total) revert InsufficientPayment(total, msg.value);
        // Overpayment is kept for the sender rather than lost or bounced.
        unchecked {
            _credit(msg.sender, msg.value - total);
        }

        bytes calldata spec = rental.spec;
        t.jobHash = keccak256(spec);
        t.resultKey = rental.resultKey;
        // A memory struct of 20 value-type members is 20 clean 32-byte words, i.e. exactly
        // abi.encode(t): hash it in place instead of encoding a copy first.
        bytes32 h;
        assembly ("memory-safe") {
            h := keccak256(t, TASK_PARAMS_SIZE)
        }
        _commitments[taskId] = (h & ~STATUS_MASK) | _statusWord(TaskStatus.Active);
        _emitTaskCreated(taskId, t, spec);
    }

    /// `emit TaskCreated(taskId, t.dataset, t.pool, t, spec)`, with the data encoded by a copy
    /// of the struct's words instead of the compiler's field-by-field re-encoding. The layout
    /// is the standard ABI encoding of (TaskParams, bytes): 20 words, the offset of `spec`
    /// (21 words), its length, its bytes zero-padded to a whole word.
    function _emitTaskCreated(uint256 taskId, TaskParams memory t, bytes calldata spec) private {
        bytes32 topic = TaskCreated.selector;
        bytes32 dataset = t.dataset;
        bytes32 pool = t.pool;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mcopy(ptr, t, TASK_PARAMS_SIZE)
            mstore(add(ptr, TASK_PARAMS_SIZE), add(TASK_PARAMS_SIZE, 0x20))
            let len := spec.length
            mstore(add(ptr, add(TASK_PARAMS_SIZE, 0x20)), len)
            let body := add(ptr, add(TASK_PARAMS_SIZE, 0x40))
            let padded := and(add(len, 0x1f), not(0x1f))
            // Zero the last word first: calldatacopy overwrites all but the padding.
            if padded { mstore(add(body, sub(padded, 0x20)), 0) }
            calldatacopy(body, spec.offset, len)
            log4(ptr, add(add(TASK_PARAMS_SIZE, 0x40), padded), topic, taskId, dataset, pool)
        }
    }

    /// The analyst must be the offer's single allowed requester (if any) and on its Merkle
    /// allow-list (if any). The leaf is hashed twice, as in OpenZeppelin's standard tree, so
    /// that a leaf can never be passed off as an inner node.
    function _checkRequester(address requester, bytes32 root, bytes32[] calldata proof) private view {
        if (requester != address(0) && requester != msg.sender) revert RequesterNotAllowed(msg.sender);
        if (root != bytes32(0)) {
            bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(msg.sender))));
            if (!MerkleProof.verifyCalldata(proof, root, leaf)) revert RequesterNotAllowed(msg.sender);
        }
    }

    function _price(uint256 price) private pure returns (uint128) {
        if (price > type(uint128).max) revert PriceTooLarge(price);
        // casting to 'uint128' is safe because of the check just above
        // forge-lint: disable-next-line(unsafe-typecast)
        return uint128(price);
    }

    // ---------------------------------------------------------------------
    // Settlement internals
    // ---------------------------------------------------------------------

    /// Checks that `task` is what was committed for `taskId` and that the task is active;
    /// returns the commitment with its status byte cleared.
    function _activeTask(TaskParams calldata task, uint256 taskId) private view returns (bytes32 committed) {
        bytes32 stored = _commitments[taskId];
        if (stored == bytes32(0)) revert UnknownTask(taskId);
        // Hash the calldata words as they are: a non-canonical encoding cannot match the
        // commitment, which was made from clean values.
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, task, TASK_PARAMS_SIZE)
            committed := and(keccak256(ptr, TASK_PARAMS_SIZE), not(0xff))
        }
        if (stored & ~STATUS_MASK != committed) revert TaskMismatch(taskId);
        TaskStatus status = TaskStatus(uint8(uint256(stored)));
        if (status != TaskStatus.Active) revert TaskNotActive(taskId, status);
    }

    /// Recovers the enclave from its result signature and checks that it may settle the task:
    /// registered, trusted, of the pinned measurement (if any), and assigned by the operator.
    function _checkAttestation(
        TaskParams calldata task,
        uint256 taskId,
        bytes32 digest,
        Outcome outcome,
        string calldata location,
        bytes calldata authSig,
        bytes calldata enclaveSig
    ) private view returns (address enclave) {
        enclave = _resultSigner(task.kmsKey, taskId, digest, outcome, keccak256(bytes(location)), enclaveSig);
        if (enclave == address(0)) revert InvalidEnclaveSignature();
        if (!_isEnclaveActive(enclave)) revert EnclaveNotActive(enclave);
        bytes32 pinned = task.measurement;
        if (pinned != bytes32(0)) {
            bytes32 measurement = _enclaveMeasurement(enclave);
            if (measurement != pinned) revert MeasurementNotAllowed(enclave, measurement);
        }
        // Any active enclave could sign a result; only the one the operator assigned may settle.
        _checkAuthorization(task.poolOperator, taskId, enclave, authSig);
    }

    /// Reverts unless the task's pool operator authorized `enclave`: by an ECDSA signature, or,
    /// with `sig` empty, presigned on chain. Never by ERC-1271: a contract's answer can change
    /// after the keys were released, and a pool whose authorization stopped holding at
    /// `refundReleased` would keep its stake, and its colluding analyst everything, after the
    /// result was passed on off chain. A contract operator presigns instead, which is for good.
    function _checkAuthorization(address operator, uint256 taskId, address enclave, bytes calldata sig)
        private
        view
    {
        bytes32 digest = _hashAuthorization(taskId, enclave);
        address signer = sig.length == 0 ? _presigner[digest] : Signatures.recover(digest, sig);
        if (operator == address(0) || signer != operator) revert NotAuthorized(taskId, enclave);
    }

    /// Who signed the result, if it names the task's key service as the sender of the release the
    /// enclave opened (else some unregistered address).
    function _resultSigner(
        bytes32 keyService,
        uint256 taskId,
        bytes32 digest,
        Outcome outcome,
        bytes32 locationHash,
        bytes calldata enclaveSig
    ) private view returns (address) {
        return Signatures.recover(_hashResult(taskId, digest, outcome, keyService, locationHash), enclaveSig);
    }

    /// Pays the parties recorded at rent, moves the epsilon reservation and unlocks the stake.
    function _settle(TaskParams calldata task, uint256 taskId, Outcome outcome) private {
        uint64 epsilon = task.epsilon;
        if (outcome == Outcome.HostFault) {
            // Nobody earns from a failure a host (or its storage) caused: a pool paid for it would
            // earn by breaking tasks, an owner paid for it by breaking its storage.
            _credit(task.analyst, uint256(task.datasetPrice) + task.poolPrice + task.appPrice);
            if (epsilon != 0) _releasePrivacy(task.dataset, task.analyst, epsilon, taskId);
            _unlockStake(task);
            return;
        }
        // The pool is paid for the compute whatever else the outcome.
        _credit(task.poolOperator, task.poolPrice);
        // Only a job refused before it read the data gives the prices and the epsilon back; a
        // failure while running may tell something of the data (see `Outcome.Failed`).
        if (outcome == Outcome.Refused) {
            _credit(task.analyst, uint256(task.datasetPrice) + task.appPrice);
            if (epsilon != 0) _releasePrivacy(task.dataset, task.analyst, epsilon, taskId);
        } else {
            _credit(task.datasetOwner, task.datasetPrice);
            _credit(task.appOwner, task.appPrice);
            if (epsilon != 0) _spendPrivacy(task.dataset, task.analyst, epsilon, taskId);
        }
        _unlockStake(task);
    }

    function _unlockStake(TaskParams calldata task) private {
        uint128 stake = task.stake;
        // casting to 'uint96' is safe because the stake was locked out of a uint96 amount at rent
        // forge-lint: disable-next-line(unsafe-typecast)
        if (stake != 0) _pools[task.pool].free += uint96(stake);
    }

    function _statusOf(Outcome outcome) private pure returns (TaskStatus) {
        if (outcome == Outcome.Completed) return TaskStatus.Completed;
        if (outcome == Outcome.Refused) return TaskStatus.Refused;
        if (outcome == Outcome.HostFault) return TaskStatus.HostFault;
        return TaskStatus.Failed;
    }

    function _statusWord(TaskStatus status) private pure returns (bytes32) {
        return bytes32(uint256(status));
    }
}
