// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";
import {Vm} from "forge-std/Vm.sol";
import {VmExt} from "./utils/VmExt.sol";
import {DatasetRegistry} from "../src/DatasetRegistry.sol";
import {Offers} from "../src/Offers.sol";
import {PoolRegistry} from "../src/PoolRegistry.sol";
import {
    Strongroom,
    Quote,
    Pool,
    DatasetOffer,
    PoolOffer,
    AppOffer,
    Outcome,
    Rental,
    TaskParams,
    TaskStatus,
    PlatformKind,
    QUOTE_TYPE_SIMULATED
} from "../src/Strongroom.sol";
import {TaskDigests} from "./utils/TaskDigests.sol";

using TaskDigests for Strongroom;

/// Drives Strongroom with random registrations, rentals, settlements (good and bad),
/// refunds, withdrawals and stake moves, and keeps an independent model of what every
/// account, pool, offer and privacy ledger should hold.
/// Every action swallows the contract's reverts, checking that they are expected ones.
contract Handler {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));
    VmExt internal constant vmx = VmExt(address(uint160(uint256(keccak256("hevm cheat code")))));

    Strongroom public immutable sr;

    uint256 internal constant PLATFORM_PK = 0xA11CE;
    uint256 internal constant ENCLAVE_PK = 0xE1C1A7E;
    uint256 internal constant APP_OWNER_PK = 0xA99;
    bytes32 internal constant MEASUREMENT = keccak256("strongroom-worker v2");
    bytes32 internal constant POLICY = keccak256("policy");
    uint256 internal constant KMS_PK = 0xC0FFEE;
    bytes32 internal constant KMS_KEY = keccak256("kms");
    /// The last dataset's key service never registered: no receipt of it can be valid.
    bytes32 internal constant UNREGISTERED_KMS_KEY = keccak256("unregistered kms");

    struct TaskRec {
        uint256 id;
        TaskParams params;
        uint256 payouts; // successful submitResult/refund/refundReleased calls; must never exceed 1
    }

    struct DatasetRec {
        bytes32 id;
        uint64 budget;
    }

    // Actors, each with a private key so that they can sign.
    uint256[] internal ownerKeys;
    uint256[] internal operatorKeys;
    address[] public analysts;
    address[] public actors; // everyone who may ever hold a balance

    DatasetRec[] public datasets;
    bytes32[] public pools;
    mapping(bytes32 pool => uint256) internal operatorKeyOf;
    bytes32 public app;

    DatasetOffer[] internal datasetOffers;
    PoolOffer[] internal poolOffers;
    AppOffer internal appOffer;
    bytes32[] public offerHashes;
    mapping(bytes32 offerHash => uint64) public offerVolume;
    mapping(bytes32 offerHash => uint64) public ghostUses;

    TaskRec[] internal tasks;

    // The model.
    mapping(address account => uint256) public ghostCredited;
    mapping(address account => uint256) public ghostWithdrawn;
    mapping(bytes32 pool => uint256) public ghostStake; // incl. locked
    mapping(bytes32 pool => uint256) public ghostUnbonding;
    mapping(bytes32 dataset => mapping(address analyst => uint256)) public ghostSpent;
    mapping(bytes32 dataset => mapping(address analyst => uint256)) public ghostReserved;
    mapping(bytes32 pool => uint256) public ghostLocked; // stake of active tasks
    uint256 public ghostEscrow; // prices of active tasks
    bool public doublePayout; // a settlement or refund succeeded on a task already paid out
    uint256 public now_;
    bool public unexpectedRevert;
    bool public unexpectedSuccess; // a refund went through that its situation forbids
    bytes public lastUnexpected;

    uint256 public calls;
    uint256 public rents;
    uint256 public settlements;
    uint256 public refunds;
    uint256 public abandoned;

    constructor(Strongroom sr_) {
        sr = sr_;
        now_ = block.timestamp;
        for (uint256 i = 0; i < 3; i++) {
            address a = vm.addr(0xA000 + i);
            analysts.push(a);
            actors.push(a);
        }
        for (uint256 i = 0; i < 4; i++) {
            ownerKeys.push(0xD000 + i);
            actors.push(vm.addr(0xD000 + i));
        }
        for (uint256 i = 0; i < 3; i++) {
            operatorKeys.push(0x0B00 + i);
            actors.push(vm.addr(0x0B00 + i));
        }
        actors.push(vm.addr(APP_OWNER_PK));

        _registerEnclave();
        sr.registerKeyService(KMS_KEY, _sig(KMS_PK, sr.hashKeyService(KMS_KEY)));
        vm.prank(vm.addr(APP_OWNER_PK));
        app = sr.registerApp(bytes32(0), keccak256("wasm"), "oci://app");
        appOffer = AppOffer({
            app: app,
            price: 0.01 ether,
            volume: 50,
            dataset: bytes32(0),
            pool: bytes32(0),
            requester: address(0),
            salt: bytes32(0)
        });
        _trackOffer(sr.hashAppOffer(appOffer), appOffer.volume);
        registerDataset(0, 3_000_000);
        registerPool(uint256(keccak256("first pool")), 5 ether);
    }

    // ------------------------------------------------------------------
    // Helpers
    // ------------------------------------------------------------------

    /// The fuzzer favours small and edge values; derived choices use a hash of the input so
    /// that each of them is spread evenly.
    function _mix(uint256 seed) internal pure returns (uint256) {
        return uint256(keccak256(abi.encode(seed, "mix")));
    }

    function _bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return lo + x % (hi - lo + 1);
    }

    function _sig(uint256 pk, bytes32 digest) internal returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }

    /// forge may or may not carry `vm.warp` from one call of a sequence to the next; the
    /// handler keeps its own clock and re-applies it at the start of every action.
    modifier action() {
        vm.warp(now_);
        calls++;
        _;
    }

    function _advance(uint256 secs) internal {
        now_ += secs;
        vm.warp(now_);
    }

    function _registerEnclave() internal {
        Quote memory q;
        q.quoteType = QUOTE_TYPE_SIMULATED;
        q.measurement = MEASUREMENT;
        uint256 quoted = block.number - 1;
        q.reportData[0] = bytes32(bytes20(vm.addr(ENCLAVE_PK))) | bytes32(quoted);
        q.reportData[1] = blockhash(quoted);
        sr.registerEnclave(q, _sig(PLATFORM_PK, keccak256(abi.encode(q))));
    }

    function _trackOffer(bytes32 h, uint64 volume) internal {
        offerHashes.push(h);
        offerVolume[h] = volume;
    }

    function _expect(bytes memory ret, bytes4[6] memory allowed) internal {
        // forge-lint: disable-next-line(unsafe-typecast)
        bytes4 sel = bytes4(ret); // the selector: the first four bytes (or zeros)
        for (uint256 i = 0; i < allowed.length; i++) {
            if (allowed[i] != bytes4(0) && sel == allowed[i]) return;
        }
        unexpectedRevert = true;
        lastUnexpected = ret;
    }

    function _credit(address a, uint256 amount) internal {
        ghostCredited[a] += amount;
    }

    // ------------------------------------------------------------------
    // Registrations
    // ------------------------------------------------------------------

    function registerDataset(uint256 seed, uint64 budget) public action {
        if (datasets.length >= 4) return;
        uint256 pk = ownerKeys[datasets.length];
        budget = uint64(_bound(budget, 0, 20_000_000));
        vm.prank(vm.addr(pk));
        bytes32 kmsKey = datasets.length == 3 ? UNREGISTERED_KMS_KEY : KMS_KEY;
        bytes32 id = sr.registerDataset(bytes32(seed), "u", keccak256(abi.encode(seed)), "k", kmsKey, POLICY, budget);
        datasets.push(DatasetRec(id, budget));
        // Two offers per dataset: a small-volume one and an open one.
        for (uint256 i = 0; i < 2; i++) {
            DatasetOffer memory d;
            d.dataset = id;
            d.price = i == 0 ? 0.1 ether : _bound(seed, 0, 1 ether);
            d.volume = i == 0 ? 3 : 1_000;
            d.validUntil = type(uint64).max;
            d.allowSql = true;
            d.allowApps = true;
            d.policyHash = POLICY;
            d.maxEpsilon = 1_000_000;
            d.salt = bytes32(i);
            datasetOffers.push(d);
            _trackOffer(sr.hashDatasetOffer(d), d.volume);
        }
    }

    function registerPool(uint256 seed, uint256 stake) public action {
        if (pools.length >= 3) return;
        uint256 pk = operatorKeys[pools.length];
        address op = vm.addr(pk);
        vm.prank(op);
        bytes32 id = sr.registerPool(bytes32(seed));
        pools.push(id);
        operatorKeyOf[id] = pk;
        stake = _bound(stake, 0, 10 ether);
        vm.deal(op, stake);
        vm.prank(op);
        sr.depositStake{value: stake}(id);
        ghostStake[id] += stake;

        // Two offers per pool: one staking on the registered key service, one open to any
        // key service, which locks no stake.
        for (uint256 i = 0; i < 2; i++) {
            PoolOffer memory p = PoolOffer({
                pool: id,
                price: _bound(seed >> 8, 0, 0.5 ether),
                volume: uint64(_bound(seed >> 16, 5, 60)),
                maxDuration: uint64(_bound(seed >> 32, 10 minutes, 12 hours)),
                validUntil: type(uint64).max,
                keyService: i == 0 ? KMS_KEY : bytes32(0),
                salt: bytes32(seed + i)
            });
            poolOffers.push(p);
            _trackOffer(sr.hashPoolOffer(p), p.volume);
        }
    }

    // ------------------------------------------------------------------
    // Tasks
    // ------------------------------------------------------------------

    function rent(uint256 seed, uint64 epsilon, bool withApp, uint256 overpay) external action {
        seed = _mix(seed);
        DatasetOffer memory d = datasetOffers[seed % datasetOffers.length];
        PoolOffer memory p = poolOffers[(seed >> 8) % poolOffers.length];
        address analyst = analysts[(seed >> 16) % analysts.length];
        Rental memory r;
        r.resultKey = bytes32(seed);
        // Now and then above the offers' maximum of 1.0.
        r.epsilon = uint64(epsilon % 5 == 0 ? _bound(epsilon, 0, 1_200_000) : _bound(epsilon, 0, 1_000_000));
        r.maxPrice = type(uint256).max;
        r.requesterProof = new bytes32[](0);
        r.spec = abi.encodePacked("SELECT ", seed);
        uint256 total = d.price + p.price + (withApp ? appOffer.price : 0);
        overpay = (seed >> 24) % 3 == 0 ? _bound(overpay, 0, 1 ether) : 0;

        bytes memory call_;
        {
            bytes memory dSig = _sig(ownerKeyOfDataset(d.dataset), sr.hashDatasetOffer(d));
            bytes memory pSig = _sig(operatorKeyOf[p.pool], sr.hashPoolOffer(p));
            call_ = withApp
                ? abi.encodeCall(sr.rentApp, (d, dSig, p, pSig, appOffer, _sig(APP_OWNER_PK, sr.hashAppOffer(appOffer)), r))
                : abi.encodeCall(sr.rent, (d, dSig, p, pSig, r));
        }
        vm.deal(analyst, total + overpay);
        vmx.recordLogs();
        vm.prank(analyst);
        (bool ok, bytes memory ret) = address(sr).call{value: total + overpay}(call_);
        if (!ok) {
            _expect(
                ret,
                [
                    Offers.OfferVolumeExhausted.selector,
                    DatasetRegistry.PrivacyBudgetExhausted.selector,
                    PoolRegistry.InsufficientStake.selector,
                    Strongroom.EpsilonAboveOfferMax.selector,
                    Strongroom.KeyServiceNotAllowed.selector,
                    bytes4(0)
                ]
            );
            return;
        }
        rents++;
        uint256 taskId = abi.decode(ret, (uint256));
        TaskParams memory t = _created();
        tasks.push();
        TaskRec storage rec = tasks[tasks.length - 1];
        rec.id = taskId;
        rec.params = t;

        ghostUses[sr.hashDatasetOffer(d)]++;
        ghostUses[sr.hashPoolOffer(p)]++;
        if (withApp) ghostUses[sr.hashAppOffer(appOffer)]++;
        ghostEscrow += total;
        ghostLocked[p.pool] += t.stake;
        _credit(analyst, overpay);
        ghostReserved[d.dataset][analyst] += r.epsilon;
    }

    function _created() internal returns (TaskParams memory t) {
        VmExt.Log[] memory logs = vmx.getRecordedLogs();
        for (uint256 i = 0; i < logs.length; i++) {
            if (logs[i].topics[0] == Strongroom.TaskCreated.selector) {
                (t,) = abi.decode(logs[i].data, (TaskParams, bytes));
            }
        }
    }

    function ownerKeyOfDataset(bytes32 id) public view returns (uint256) {
        for (uint256 i = 0; i < datasets.length; i++) {
            if (datasets[i].id == id) return ownerKeys[i];
        }
        return 0;
    }

    /// A random task; three times out of four the first still active one from there on, so
    /// that most attempts hit live tasks while already settled ones keep being tried too.
    function _pick(uint256 seed) internal view returns (TaskRec storage) {
        seed = _mix(seed);
        uint256 i = seed % tasks.length;
        if ((seed >> 128) % 4 != 0) {
            for (uint256 k = 0; k < tasks.length; k++) {
                uint256 j = (i + k) % tasks.length;
                if (tasks[j].payouts == 0) return tasks[j];
            }
        }
        return tasks[i];
    }

    /// Settle a random task, sometimes with a wrong signer; settled or refunded tasks must refuse.
    function submit(uint256 seed, uint8 outcomeSeed) external action {
        Outcome outcome = Outcome(outcomeSeed % 4);
        if (tasks.length == 0) return;
        TaskRec storage rec = _pick(seed);
        bool forgeAuth = _mix(seed) % 5 == 0;
        (, uint64 expiresAt) = sr.enclaves(vm.addr(ENCLAVE_PK));
        if (block.timestamp >= expiresAt) _registerEnclave();
        (bool ok, bytes memory ret) = address(sr).call(_submitCall(rec, seed, outcome, forgeAuth));
        bool expectOk = rec.payouts == 0 && !forgeAuth && block.timestamp <= rec.params.deadline;
        if (!ok) {
            if (expectOk) {
                unexpectedRevert = true;
                lastUnexpected = ret;
            }
            _expect(
                ret,
                [
                    Strongroom.TaskNotActive.selector,
                    Strongroom.DeadlinePassed.selector,
                    Strongroom.NotAuthorized.selector,
                    bytes4(0),
                    bytes4(0),
                    bytes4(0)
                ]
            );
            return;
        }
        if (rec.payouts != 0) doublePayout = true;
        rec.payouts++;
        settlements++;
        _settleModel(rec.params, outcome);
    }

    function _submitCall(TaskRec storage rec, uint256 seed, Outcome outcome, bool forgeAuth)
        internal
        returns (bytes memory)
    {
        bytes32 digest = keccak256(abi.encode(seed));
        uint256 authPk = forgeAuth ? ENCLAVE_PK : operatorKeyOf[rec.params.pool];
        bytes memory auth = _sig(authPk, sr.hashAuthorization(rec.id, vm.addr(ENCLAVE_PK)));
        bytes memory res = _sig(ENCLAVE_PK, sr.hashResult(rec.id, digest, outcome, rec.params.kmsKey, "loc"));
        return abi.encodeCall(sr.submitResult, (rec.params, rec.id, digest, "loc", auth, res, outcome));
    }

    function _settleModel(TaskParams memory t, Outcome outcome) internal {
        ghostEscrow -= uint256(t.datasetPrice) + t.poolPrice + t.appPrice;
        ghostLocked[t.pool] -= t.stake;
        ghostReserved[t.dataset][t.analyst] -= t.epsilon;
        // A host fault pays nobody: everything goes back to the analyst.
        if (outcome == Outcome.HostFault) {
            _credit(t.analyst, uint256(t.datasetPrice) + t.poolPrice + t.appPrice);
            return;
        }
        _credit(t.poolOperator, t.poolPrice);
        // A job refused before reading the data is given back; any other outcome is paid.
        if (outcome == Outcome.Refused) {
            _credit(t.analyst, uint256(t.datasetPrice) + t.appPrice);
        } else {
            _credit(t.datasetOwner, t.datasetPrice);
            _credit(t.appOwner, t.appPrice);
            ghostSpent[t.dataset][t.analyst] += t.epsilon;
        }
    }

    /// Refund a random task without a receipt, moving the clock past its deadline (and, half of
    /// those times, past the claim window) first one time in three.
    function refund(uint256 seed) external action {
        if (tasks.length == 0) return;
        TaskRec storage rec = _pick(seed);
        uint256 mixed = _mix(seed);
        uint256 opens = uint256(rec.params.deadline) + sr.RELEASE_CLAIM_WINDOW();
        if (mixed % 3 == 0) {
            uint256 target = (mixed >> 8) % 2 == 0 ? uint256(rec.params.deadline) + 1 : opens + 1;
            if (block.timestamp < target) _advance(target - block.timestamp);
        }
        (bool ok, bytes memory ret) = address(sr).call(abi.encodeCall(sr.refund, (rec.params, rec.id)));
        bool expectOk = rec.payouts == 0 && block.timestamp > opens;
        if (!ok) {
            if (expectOk) {
                unexpectedRevert = true;
                lastUnexpected = ret;
            }
            _expect(
                ret,
                [
                    Strongroom.TaskNotActive.selector,
                    Strongroom.DeadlineNotReached.selector,
                    Strongroom.ClaimWindowOpen.selector,
                    bytes4(0),
                    bytes4(0),
                    bytes4(0)
                ]
            );
            return;
        }
        if (rec.payouts != 0) doublePayout = true;
        else if (!expectOk) unexpectedSuccess = true;
        rec.payouts++;
        refunds++;
        TaskParams memory t = rec.params;
        uint256 prices = uint256(t.datasetPrice) + t.poolPrice + t.appPrice;
        ghostEscrow -= prices;
        // Nobody is shown at fault: the stake is unlocked, not slashed.
        ghostLocked[t.pool] -= t.stake;
        _credit(t.analyst, prices);
        ghostReserved[t.dataset][t.analyst] -= t.epsilon;
    }

    /// Settle a random task past its deadline with the key service's receipt that it released
    /// the keys (one time in five signed by somebody else), moving the clock first one time in three
    /// and presigning the operator's authorization one time in four.
    function refundReleased(uint256 seed) external action {
        if (tasks.length == 0) return;
        TaskRec storage rec = _pick(seed);
        uint256 mixed = _mix(seed);
        if (mixed % 3 == 0 && block.timestamp <= rec.params.deadline) {
            _advance(uint256(rec.params.deadline) + 1 - block.timestamp);
        }
        bool forged = (mixed >> 8) % 5 == 0;
        address enclave = vm.addr(ENCLAVE_PK);
        bytes memory receipt = _sig(forged ? ENCLAVE_PK : KMS_PK, sr.hashReleased(rec.id, enclave));
        bytes memory auth;
        if ((mixed >> 16) % 4 == 0 && rec.payouts == 0) {
            // One time in four the operator assigned the enclave on chain (as a contract wallet
            // must), and the receipt comes with no signature.
            vm.prank(vm.addr(operatorKeyOf[rec.params.pool]));
            sr.presignAuthorization(rec.params, rec.id, enclave);
        } else {
            auth = _sig(operatorKeyOf[rec.params.pool], sr.hashAuthorization(rec.id, enclave));
        }
        (bool ok, bytes memory ret) =
            address(sr).call(abi.encodeCall(sr.refundReleased, (rec.params, rec.id, enclave, auth, receipt)));
        bool expectOk =
            rec.payouts == 0 && block.timestamp > rec.params.deadline && !forged && rec.params.kmsKey == KMS_KEY;
        if (!ok) {
            if (expectOk) {
                unexpectedRevert = true;
                lastUnexpected = ret;
            }
            _expect(
                ret,
                [
                    Strongroom.TaskNotActive.selector,
                    Strongroom.DeadlineNotReached.selector,
                    Strongroom.InvalidReleaseReceipt.selector,
                    bytes4(0),
                    bytes4(0),
                    bytes4(0)
                ]
            );
            return;
        }
        if (rec.payouts != 0) doublePayout = true;
        else if (!expectOk) unexpectedSuccess = true;
        rec.payouts++;
        abandoned++;
        TaskParams memory t = rec.params;
        ghostEscrow -= uint256(t.datasetPrice) + t.poolPrice + t.appPrice;
        // The pool had the keys and did not deliver: its stake goes to the analyst, the owners
        // are paid for the data their keys opened, and the epsilon is spent.
        ghostStake[t.pool] -= t.stake;
        ghostLocked[t.pool] -= t.stake;
        _credit(t.datasetOwner, t.datasetPrice);
        _credit(t.appOwner, t.appPrice);
        _credit(t.analyst, uint256(t.poolPrice) + t.stake);
        ghostReserved[t.dataset][t.analyst] -= t.epsilon;
        ghostSpent[t.dataset][t.analyst] += t.epsilon;
    }

    // ------------------------------------------------------------------
    // Money and stake
    // ------------------------------------------------------------------

    function withdraw(uint256 seed) external action {
        address a = actors[seed % actors.length];
        uint256 before = a.balance;
        uint256 owed = sr.balances(a);
        vm.prank(a);
        (bool ok, bytes memory ret) = address(sr).call(abi.encodeCall(sr.withdraw, ()));
        if (!ok) {
            if (owed != 0) {
                unexpectedRevert = true;
                lastUnexpected = ret;
            }
            _expect(ret, [Strongroom.NothingToWithdraw.selector, bytes4(0), bytes4(0), bytes4(0), bytes4(0), bytes4(0)]);
            return;
        }
        if (a.balance != before + owed) unexpectedRevert = true;
        ghostWithdrawn[a] += owed;
    }

    function depositStake(uint256 seed, uint256 amount) external action {
        bytes32 pool = pools[seed % pools.length];
        address from = actors[(seed >> 8) % actors.length];
        amount = _bound(amount, 0, 3 ether);
        vm.deal(from, from.balance + amount);
        vm.prank(from);
        sr.depositStake{value: amount}(pool);
        ghostStake[pool] += amount;
    }

    function requestUnstake(uint256 seed, uint256 amount) external action {
        bytes32 pool = pools[seed % pools.length];
        uint128 a = uint128(_bound(amount, 0, 4 ether) % 2 ** 128);
        vm.prank(vm.addr(operatorKeyOf[pool]));
        (bool ok, bytes memory ret) = address(sr).call(abi.encodeCall(sr.requestUnstake, (pool, a)));
        if (!ok) {
            _expect(ret, [PoolRegistry.InsufficientStake.selector, bytes4(0), bytes4(0), bytes4(0), bytes4(0), bytes4(0)]);
            return;
        }
        ghostStake[pool] -= a;
        ghostUnbonding[pool] += a;
    }

    function withdrawUnbonded(uint256 seed, bool wait) external action {
        bytes32 pool = pools[seed % pools.length];
        Pool memory p = sr.getPool(pool);
        if (wait && block.timestamp < p.unbondingAt) _advance(p.unbondingAt - block.timestamp);
        address op = vm.addr(operatorKeyOf[pool]);
        vm.prank(op);
        (bool ok, bytes memory ret) = address(sr).call(abi.encodeCall(sr.withdrawUnbonded, (pool)));
        if (!ok) {
            _expect(
                ret,
                [PoolRegistry.NothingUnbonding.selector, PoolRegistry.UnbondingNotOver.selector, bytes4(0), bytes4(0), bytes4(0), bytes4(0)]
            );
            return;
        }
        _credit(op, ghostUnbonding[pool]);
        ghostUnbonding[pool] = 0;
    }

    function warp(uint256 secs) external action {
        _advance(_bound(secs, 0, 10 minutes));
    }

    // ------------------------------------------------------------------
    // Views for the invariants
    // ------------------------------------------------------------------

    function actorCount() external view returns (uint256) {
        return actors.length;
    }

    function poolCount() external view returns (uint256) {
        return pools.length;
    }

    function datasetCount() external view returns (uint256) {
        return datasets.length;
    }

    function analystCount() external view returns (uint256) {
        return analysts.length;
    }

    function offerCount() external view returns (uint256) {
        return offerHashes.length;
    }

    function taskCount() external view returns (uint256) {
        return tasks.length;
    }

    function task(uint256 i) external view returns (uint256 id, TaskParams memory params, uint256 payouts) {
        TaskRec storage rec = tasks[i];
        return (rec.id, rec.params, rec.payouts);
    }
}

contract InvariantTest is Test {
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    Strongroom internal sr;
    Handler internal handler;
    address[] internal targets;
    FuzzSelector[] internal selectors;

    function setUp() public {
        vm.warp(1_700_000_000);
        sr = new Strongroom(true);
        vm.roll(1000);
        sr.setPlatformKey(vm.addr(0xA11CE), PlatformKind.Simulated);
        sr.setMeasurement(keccak256("strongroom-worker v2"), true);
        sr.setUnbondingDelay(1 hours);
        handler = new Handler(sr);

        targets.push(address(handler));
        bytes4[] memory s = new bytes4[](14);
        s[0] = Handler.registerDataset.selector;
        s[1] = Handler.registerPool.selector;
        s[2] = Handler.rent.selector; // renting and settling are weighted up
        s[3] = Handler.rent.selector;
        s[4] = Handler.rent.selector;
        s[5] = Handler.submit.selector;
        s[6] = Handler.submit.selector;
        s[7] = Handler.refund.selector;
        s[8] = Handler.withdraw.selector;
        s[9] = Handler.depositStake.selector;
        s[10] = Handler.requestUnstake.selector;
        s[11] = Handler.withdrawUnbonded.selector;
        s[12] = Handler.warp.selector;
        s[13] = Handler.refundReleased.selector;
        selectors.push(FuzzSelector(address(handler), s));
    }

    // forge-std 1.1.2 predates StdInvariant: forge reads these two functions directly.
    function targetContracts() public view returns (address[] memory) {
        return targets;
    }

    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return selectors;
    }

    /// One campaign checks every property after every call: forge runs each `invariant_*`
    /// function as a campaign of its own, so separate functions would multiply the run time.
    function invariant_Protocol() public {
        _checkEtherIsAccounted();
        _checkBalancesMatchModel();
        _checkNoTaskPaysTwice();
        _checkOfferUsesWithinVolume();
        _checkPrivacyWithinBudget();
        _checkPoolsMatchModel();
        _checkNoUnexpectedRevert();
    }

    /// (a) The contract holds exactly the escrow of active tasks, every withdrawable balance
    /// and every pool's stake (locked or not) and unbonding stake.
    function _checkEtherIsAccounted() internal {
        uint256 owed;
        for (uint256 i = 0; i < handler.actorCount(); i++) {
            owed += sr.balances(handler.actors(i));
        }
        uint256 staked;
        for (uint256 i = 0; i < handler.poolCount(); i++) {
            Pool memory p = sr.getPool(handler.pools(i));
            staked += uint256(p.stake) + p.unbonding;
        }
        assertEq(address(sr).balance, handler.ghostEscrow() + owed + staked);
    }

    /// The balances follow the model: everything credited minus everything withdrawn.
    function _checkBalancesMatchModel() internal {
        for (uint256 i = 0; i < handler.actorCount(); i++) {
            address a = handler.actors(i);
            assertEq(sr.balances(a), handler.ghostCredited(a) - handler.ghostWithdrawn(a));
        }
    }

    /// (b) No task pays out twice: the handler keeps trying to settle and refund paid tasks and
    /// records any success on one. (The full per-task scan is in `afterInvariant`.)
    function _checkNoTaskPaysTwice() internal {
        assertFalse(handler.doublePayout());
    }

    /// (c) No offer is used more often than its volume, and the count is exact.
    function _checkOfferUsesWithinVolume() internal {
        for (uint256 i = 0; i < handler.offerCount(); i++) {
            bytes32 h = handler.offerHashes(i);
            uint64 used = sr.offerUsed(h);
            assertLe(used, handler.offerVolume(h));
            assertEq(uint256(used), handler.ghostUses(h));
        }
    }

    /// (d) No analyst's spent + reserved epsilon exceeds the dataset's budget.
    function _checkPrivacyWithinBudget() internal {
        for (uint256 i = 0; i < handler.datasetCount(); i++) {
            (bytes32 id, uint64 budget) = handler.datasets(i);
            for (uint256 j = 0; j < handler.analystCount(); j++) {
                address a = handler.analysts(j);
                (uint64 spent, uint64 reserved) = sr.privacySpend(id, a);
                assertLe(uint256(spent) + reserved, budget);
                assertEq(uint256(spent), handler.ghostSpent(id, a));
                assertEq(uint256(reserved), handler.ghostReserved(id, a));
            }
        }
    }

    /// Pools follow the model; `locked` is exactly the stake of their active tasks.
    function _checkPoolsMatchModel() internal {
        for (uint256 i = 0; i < handler.poolCount(); i++) {
            bytes32 pool = handler.pools(i);
            Pool memory p = sr.getPool(pool);
            assertEq(uint256(p.stake), handler.ghostStake(pool));
            assertEq(uint256(p.unbonding), handler.ghostUnbonding(pool));
            assertEq(uint256(p.locked), handler.ghostLocked(pool));
        }
    }

    /// Every revert the handler saw was one the situation called for.
    function _checkNoUnexpectedRevert() internal {
        if (handler.unexpectedRevert()) emit log_named_bytes("unexpected", handler.lastUnexpected());
        assertFalse(handler.unexpectedRevert());
        assertFalse(handler.unexpectedSuccess());
    }

    /// Once per run: every task's status agrees with its payouts (at most one), and the
    /// progress is logged (-vv) to see that the sequences exercise the protocol.
    function afterInvariant() public {
        uint256 escrow;
        for (uint256 i = 0; i < handler.taskCount(); i++) {
            (uint256 id, TaskParams memory t, uint256 payouts) = handler.task(i);
            assertLe(payouts, 1);
            bool active = sr.taskStatus(id) == TaskStatus.Active;
            assertEq(active, payouts == 0);
            if (active) escrow += uint256(t.datasetPrice) + t.poolPrice + t.appPrice;
        }
        assertEq(escrow, handler.ghostEscrow());
        emit log_named_uint("calls", handler.calls());
        emit log_named_uint("rents", handler.rents());
        emit log_named_uint("settlements", handler.settlements());
        emit log_named_uint("refunds", handler.refunds());
        emit log_named_uint("abandoned", handler.abandoned());
    }
}
