// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";
import {
    Strongroom,
    Quote,
    DatasetOffer,
    PoolOffer,
    AppOffer,
    Outcome,
    Rental,
    TaskParams,
    TaskStatus,
    JobKind,
    PlatformKind,
    QUOTE_TYPE_SIMULATED
} from "../../src/Strongroom.sol";
import {VmExt} from "./VmExt.sol";
import {TaskDigests} from "./TaskDigests.sol";

using TaskDigests for Strongroom;

/// Minimal ERC-1271 smart wallet: valid signatures are its owner EOA's 65-byte ECDSA signatures
/// of the digest, exactly what a Safe-like wallet with one owner would accept.
contract TestWallet {
    address public immutable owner;

    constructor(address owner_) {
        owner = owner_;
    }

    function isValidSignature(bytes32 digest, bytes calldata sig) external view returns (bytes4) {
        if (sig.length != 65) return 0xffffffff;
        bytes32 r = bytes32(sig[0:32]);
        bytes32 s = bytes32(sig[32:64]);
        uint8 v = uint8(sig[64]);
        return ecrecover(digest, v, r, s) == owner ? bytes4(0x1626ba7e) : bytes4(0xffffffff);
    }

    /// Lets the wallet act as a dataset owner / pool operator / app owner.
    function exec(address target, bytes calldata data) external payable returns (bytes memory) {
        require(msg.sender == owner, "not owner");
        (bool ok, bytes memory ret) = target.call{value: msg.value}(data);
        if (!ok) {
            assembly {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret;
    }

    receive() external payable {}
}

/// Deployment, parties and helpers shared by the test suites.
abstract contract Fixture is Test {
    VmExt internal constant vmx = VmExt(address(uint160(uint256(keccak256("hevm cheat code")))));

    Strongroom internal sr;

    uint256 internal constant PLATFORM_PK = 0xA11CE;
    bytes32 internal constant AUTHOR = keccak256("enclave author");
    uint16 internal constant PRODUCT_ID = 7;
    uint16 internal constant SVN = 3;
    uint256 internal constant ENCLAVE_PK = 0xE1C1A7E;
    uint256 internal constant OWNER_PK = 0xDA7A;
    uint256 internal constant OPERATOR_PK = 0x9001;
    uint256 internal constant APP_OWNER_PK = 0xA99;
    uint256 internal constant ANALYST_PK = 0xA7A1;
    uint256 internal constant STRANGER_PK = 0xBAD;
    uint256 internal constant KMS_PK = 0xC0FFEE;

    address internal platform;
    address internal enclave;
    address internal datasetOwner;
    address internal operator;
    address internal appOwner;
    address internal analyst;
    address internal stranger;
    address internal keyService;

    bytes32 internal constant MEASUREMENT = keccak256("strongroom-worker v2");
    bytes32 internal constant DATASET_SALT = bytes32(uint256(1));
    bytes32 internal constant POOL_SALT = bytes32(uint256(2));
    bytes32 internal constant APP_SALT = bytes32(uint256(3));
    bytes32 internal constant MANIFEST_DIGEST = keccak256("manifest");
    bytes32 internal constant KMS_KEY = keccak256("kms key");
    bytes32 internal constant POLICY = keccak256("aggregate-only");
    bytes32 internal constant CODE_HASH = keccak256("app.wasm");
    bytes32 internal constant RESULT_KEY = keccak256("analyst x25519 key");
    bytes32 internal constant DIGEST = keccak256("sealed result");
    string internal constant LOCATION = "s3://results/1";
    bytes internal constant SQL = "SELECT region, COUNT(*) FROM dataset GROUP BY region";

    uint128 internal constant DATASET_PRICE = 1 ether;
    uint128 internal constant POOL_PRICE = 0.25 ether;
    uint128 internal constant APP_PRICE = 0.1 ether;
    uint64 internal constant MAX_DURATION = 1 hours;
    uint64 internal constant BUDGET = 10_000_000; // 10 epsilon
    uint64 internal constant EPSILON = 100_000; // 0.1 epsilon
    uint64 internal constant MAX_EPSILON = 1_000_000;
    uint128 internal constant STAKE = 100 ether;
    uint64 internal constant T0 = 1_700_000_000;

    bytes32 internal datasetId;
    bytes32 internal poolId;
    bytes32 internal appId;

    function setUp() public virtual {
        platform = vm.addr(PLATFORM_PK);
        enclave = vm.addr(ENCLAVE_PK);
        datasetOwner = vm.addr(OWNER_PK);
        operator = vm.addr(OPERATOR_PK);
        appOwner = vm.addr(APP_OWNER_PK);
        analyst = vm.addr(ANALYST_PK);
        stranger = vm.addr(STRANGER_PK);
        keyService = vm.addr(KMS_PK);

        vm.warp(T0);
        vm.roll(1000);
        sr = new Strongroom(true);
        sr.setPlatformKey(platform, PlatformKind.Simulated);
        sr.setEnclaveIdentity(AUTHOR, PRODUCT_ID, SVN);
        sr.setMeasurement(MEASUREMENT, true);
        _registerEnclave(enclave);
        sr.registerKeyService(KMS_KEY, _sig(KMS_PK, sr.hashKeyService(KMS_KEY)));

        vm.prank(datasetOwner);
        datasetId = sr.registerDataset(DATASET_SALT, "s3://data/sales.parquet", MANIFEST_DIGEST, "http://kms", KMS_KEY, POLICY, BUDGET);
        vm.prank(operator);
        poolId = sr.registerPool(POOL_SALT);
        vm.deal(operator, STAKE);
        vm.prank(operator);
        sr.depositStake{value: STAKE}(poolId);
        vm.prank(appOwner);
        appId = sr.registerApp(APP_SALT, CODE_HASH, "oci://apps/stats");

        vm.deal(analyst, 1000 ether);
    }

    // ------------------------------------------------------------------
    // Builders
    // ------------------------------------------------------------------

    /// A quote for `enclave_` made just now: it names the previous block by number and hash.
    function _quote(address enclave_) internal returns (Quote memory q) {
        q.quoteType = QUOTE_TYPE_SIMULATED;
        q.measurement = MEASUREMENT;
        q.signer = AUTHOR;
        q.productId = PRODUCT_ID;
        q.svn = SVN;
        q.debug = false;
        uint256 quoted = block.number - 1;
        bytes32 hash = keccak256(abi.encode("block", quoted));
        VmExt(address(vm)).setBlockhash(quoted, hash);
        q.reportData[0] = bytes32(bytes20(enclave_)) | bytes32(quoted);
        q.reportData[1] = hash;
    }

    function _registerEnclave(address enclave_) internal {
        Quote memory q = _quote(enclave_);
        sr.registerEnclave(q, _sig(PLATFORM_PK, keccak256(abi.encode(q))));
    }

    function _datasetOffer() internal view returns (DatasetOffer memory) {
        return DatasetOffer({
            dataset: datasetId,
            price: DATASET_PRICE,
            volume: 1000,
            validFrom: T0,
            validUntil: T0 + 30 days,
            requester: address(0),
            requesterRoot: bytes32(0),
            allowSql: true,
            allowApps: true,
            app: bytes32(0),
            pool: bytes32(0),
            measurement: bytes32(0),
            policyHash: POLICY,
            maxEpsilon: MAX_EPSILON,
            salt: keccak256("d1")
        });
    }

    function _poolOffer() internal view returns (PoolOffer memory) {
        return PoolOffer({
            pool: poolId,
            price: POOL_PRICE,
            volume: 1000,
            maxDuration: MAX_DURATION,
            validUntil: type(uint64).max,
            keyService: KMS_KEY,
            salt: keccak256("p1")
        });
    }

    function _appOffer() internal view returns (AppOffer memory) {
        return AppOffer({
            app: appId,
            price: APP_PRICE,
            volume: 1000,
            dataset: bytes32(0),
            pool: bytes32(0),
            requester: address(0),
            salt: keccak256("a1")
        });
    }

    function _rental() internal pure returns (Rental memory r) {
        r.resultKey = RESULT_KEY;
        r.epsilon = EPSILON;
        r.maxPrice = 100 ether;
        r.requesterProof = new bytes32[](0);
        r.spec = SQL;
    }

    // ------------------------------------------------------------------
    // Signatures
    // ------------------------------------------------------------------

    function _sig(uint256 pk, bytes32 digest) internal returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }

    /// EIP-2098 compact form: (r, yParity << 255 | s).
    function _sig64(uint256 pk, bytes32 digest) internal returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, bytes32(uint256(s) | (uint256(v - 27) << 255)));
    }

    function _dSig(DatasetOffer memory d) internal returns (bytes memory) {
        return _sig(OWNER_PK, sr.hashDatasetOffer(d));
    }

    function _pSig(PoolOffer memory p) internal returns (bytes memory) {
        return _sig(OPERATOR_PK, sr.hashPoolOffer(p));
    }

    function _aSig(AppOffer memory a) internal returns (bytes memory) {
        return _sig(APP_OWNER_PK, sr.hashAppOffer(a));
    }

    function _authSig(uint256 taskId, address enclave_) internal returns (bytes memory) {
        return _sig(OPERATOR_PK, sr.hashAuthorization(taskId, enclave_));
    }

    function _resultSig(uint256 taskId, bytes32 digest, Outcome outcome, string memory location)
        internal
        returns (bytes memory)
    {
        return _sig(ENCLAVE_PK, sr.hashResult(taskId, digest, outcome, KMS_KEY, location));
    }

    // ------------------------------------------------------------------
    // Actions
    // ------------------------------------------------------------------

    /// Rents as `analyst` with the given offers, signing them with the default keys, and
    /// returns the task with its parameters decoded from `TaskCreated`.
    function _rentWith(DatasetOffer memory d, PoolOffer memory p, Rental memory r, uint256 value)
        internal
        returns (uint256 taskId, TaskParams memory t)
    {
        bytes memory dSig = _dSig(d);
        bytes memory pSig = _pSig(p);
        vmx.recordLogs();
        vm.prank(analyst);
        taskId = sr.rent{value: value}(d, dSig, p, pSig, r);
        t = _createdParams(taskId);
    }

    function _rent() internal returns (uint256, TaskParams memory) {
        return _rentWith(_datasetOffer(), _poolOffer(), _rental(), DATASET_PRICE + POOL_PRICE);
    }

    function _rentAppWith(DatasetOffer memory d, PoolOffer memory p, AppOffer memory a, Rental memory r, uint256 value)
        internal
        returns (uint256 taskId, TaskParams memory t)
    {
        bytes memory dSig = _dSig(d);
        bytes memory pSig = _pSig(p);
        bytes memory aSig = _aSig(a);
        vmx.recordLogs();
        vm.prank(analyst);
        taskId = sr.rentApp{value: value}(d, dSig, p, pSig, a, aSig, r);
        t = _createdParams(taskId);
    }

    function _rentApp() internal returns (uint256, TaskParams memory) {
        return _rentAppWith(_datasetOffer(), _poolOffer(), _appOffer(), _rental(), DATASET_PRICE + POOL_PRICE + APP_PRICE);
    }

    /// The parameters of `taskId` from the `TaskCreated` log recorded since `recordLogs()`.
    function _createdParams(uint256 taskId) internal returns (TaskParams memory t) {
        VmExt.Log[] memory logs = vmx.getRecordedLogs();
        for (uint256 i = 0; i < logs.length; i++) {
            if (logs[i].emitter == address(sr) && logs[i].topics[0] == Strongroom.TaskCreated.selector) {
                assertEq(uint256(logs[i].topics[1]), taskId);
                (t,) = abi.decode(logs[i].data, (TaskParams, bytes));
                return t;
            }
        }
        fail("no TaskCreated");
    }

    function _submit(TaskParams memory t, uint256 taskId, Outcome outcome) internal {
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, outcome, LOCATION);
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, res, outcome);
    }

    /// The key service's receipt that it released `taskId`'s keys to `enclave_`.
    function _releasedSig(uint256 taskId, address enclave_) internal returns (bytes memory) {
        return _sig(KMS_PK, sr.hashReleased(taskId, enclave_));
    }

    function _status(uint256 taskId) internal view returns (uint256) {
        return uint256(sr.taskStatus(taskId));
    }

    // ------------------------------------------------------------------
    // Merkle trees (OpenZeppelin standard: double-hashed leaves, sorted pairs)
    // ------------------------------------------------------------------

    function _leaf(address account) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encode(account))));
    }

    function _hashPair(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a < b ? keccak256(abi.encodePacked(a, b)) : keccak256(abi.encodePacked(b, a));
    }

    /// Root of a tree over `accounts` (odd nodes are promoted unchanged) and the proof of
    /// `accounts[index]`.
    function _merkle(address[] memory accounts, uint256 index)
        internal
        pure
        returns (bytes32 root, bytes32[] memory proof)
    {
        bytes32[] memory level = new bytes32[](accounts.length);
        for (uint256 i = 0; i < accounts.length; i++) {
            level[i] = _leaf(accounts[i]);
        }
        bytes32[] memory path = new bytes32[](32);
        uint256 depth;
        while (level.length > 1) {
            uint256 sibling = index ^ 1;
            if (sibling < level.length) path[depth++] = level[sibling];
            bytes32[] memory next = new bytes32[]((level.length + 1) / 2);
            for (uint256 i = 0; i < next.length; i++) {
                next[i] = 2 * i + 1 < level.length ? _hashPair(level[2 * i], level[2 * i + 1]) : level[2 * i];
            }
            level = next;
            index /= 2;
        }
        root = level[0];
        proof = new bytes32[](depth);
        for (uint256 i = 0; i < depth; i++) {
            proof[i] = path[i];
        }
    }

    // ------------------------------------------------------------------
    // Misc
    // ------------------------------------------------------------------

    /// Intrinsic gas of a transaction with this calldata (21,000 + 4/16 per zero/non-zero byte),
    /// or the EIP-7623 floor (21,000 + 10 per token) when execution is small.
    function _intrinsic(bytes memory data, uint256 execution) internal pure returns (uint256) {
        uint256 zeros;
        for (uint256 i = 0; i < data.length; i++) {
            if (data[i] == 0) zeros++;
        }
        uint256 tokens = zeros + 4 * (data.length - zeros);
        uint256 standard = 21_000 + 4 * tokens + execution;
        uint256 floor = 21_000 + 10 * tokens;
        return (standard > floor ? standard : floor) - execution;
    }
}
