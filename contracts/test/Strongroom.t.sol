// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Test} from "forge-std/Test.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {
    Strongroom,
    Quote,
    Dataset,
    DatasetOffer,
    PoolOffer,
    Task,
    TaskStatus,
    QUOTE_TYPE_SIMULATED
} from "../src/Strongroom.sol";

/// Analyst that cannot receive ether, to exercise `WithdrawFailed`.
contract RevertingReceiver {
    function rent(
        Strongroom sr,
        DatasetOffer calldata d,
        bytes calldata dSig,
        PoolOffer calldata p,
        bytes calldata pSig,
        string calldata sql
    ) external payable returns (uint256) {
        return sr.rent{value: msg.value}(d, dSig, p, pSig, bytes32(0), sql);
    }

    function withdraw(Strongroom sr) external {
        sr.withdraw();
    }

    receive() external payable {
        revert("no ether please");
    }
}

/// Analyst that tries to withdraw again from inside the payout.
contract ReentrantReceiver {
    Strongroom public sr;
    bool public reentryFailed;

    function rent(
        Strongroom sr_,
        DatasetOffer calldata d,
        bytes calldata dSig,
        PoolOffer calldata p,
        bytes calldata pSig,
        string calldata sql
    ) external payable returns (uint256) {
        sr = sr_;
        return sr_.rent{value: msg.value}(d, dSig, p, pSig, bytes32(0), sql);
    }

    function withdraw() external {
        sr.withdraw();
    }

    receive() external payable {
        try sr.withdraw() {}
        catch {
            reentryFailed = true;
        }
    }
}

contract StrongroomTest is Test {
    Strongroom internal sr;

    // Keys: the platform (hardware vendor), an enclave, a dataset owner, a pool operator.
    uint256 internal constant PLATFORM_PK = 0xA11CE;
    uint256 internal constant ENCLAVE_PK = 0xE1C1A7E;
    uint256 internal constant OWNER_PK = 0xDA7A;
    uint256 internal constant OPERATOR_PK = 0x9001;
    uint256 internal constant STRANGER_PK = 0xBAD;

    address internal platform;
    address internal enclave;
    address internal datasetOwner;
    address internal operator;
    address internal stranger;
    address internal analyst = address(0xA7A1);

    bytes32 internal constant MEASUREMENT = keccak256("strongroom-worker v1");
    bytes32 internal constant DATASET_SALT = bytes32(uint256(1));
    bytes32 internal constant POOL_SALT = bytes32(uint256(2));
    bytes32 internal constant RESULT_KEY = keccak256("analyst x25519 key");
    bytes32 internal constant DIGEST = keccak256("sealed result");
    string internal constant SQL = "SELECT count(*) FROM t";
    string internal constant LOCATION = "s3://results/1";

    uint256 internal constant DATASET_PRICE = 1 ether;
    uint256 internal constant POOL_PRICE = 0.25 ether;
    uint64 internal constant MAX_DURATION = 1 hours;

    bytes32 internal datasetId;
    bytes32 internal poolId;

    function setUp() public {
        platform = vm.addr(PLATFORM_PK);
        enclave = vm.addr(ENCLAVE_PK);
        datasetOwner = vm.addr(OWNER_PK);
        operator = vm.addr(OPERATOR_PK);
        stranger = vm.addr(STRANGER_PK);

        vm.warp(1_700_000_000);
        sr = new Strongroom(true);
        sr.setPlatformKey(platform, true);
        sr.setMeasurement(MEASUREMENT, true);

        Quote memory q = _quote(enclave);
        sr.registerEnclave(q, _signQuote(q, PLATFORM_PK));

        vm.prank(datasetOwner);
        datasetId = sr.registerDataset(
            DATASET_SALT,
            "s3://data/sales.parquet",
            keccak256("data"),
            "http://kms",
            keccak256("kms key"),
            keccak256("p")
        );
        vm.prank(operator);
        poolId = sr.registerPool(POOL_SALT);

        vm.deal(analyst, 100 ether);
    }

    // ------------------------------------------------------------------
    // Helpers
    // ------------------------------------------------------------------

    function _quote(address enclave_) internal pure returns (Quote memory q) {
        q.quoteType = QUOTE_TYPE_SIMULATED;
        q.measurement = MEASUREMENT;
        q.signer = keccak256("enclave author");
        q.productId = 7;
        q.svn = 3;
        q.debug = false;
        q.reportData[0] = bytes32(bytes20(enclave_));
        q.reportData[1] = keccak256("extra report data");
    }

    function _sig(uint256 pk, bytes32 digest) internal returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }

    function _signQuote(Quote memory q, uint256 pk) internal returns (bytes memory) {
        return _sig(pk, keccak256(abi.encode(q)));
    }

    function _datasetOffer() internal view returns (DatasetOffer memory) {
        return DatasetOffer({
            dataset: datasetId,
            price: DATASET_PRICE,
            validUntil: uint64(block.timestamp + 1 days),
            salt: keccak256("d1")
        });
    }

    function _poolOffer() internal view returns (PoolOffer memory) {
        return PoolOffer({pool: poolId, price: POOL_PRICE, maxDuration: MAX_DURATION, salt: keccak256("p1")});
    }

    function _rentWith(DatasetOffer memory d, PoolOffer memory p, uint256 value) internal returns (uint256) {
        bytes memory dSig = _sig(OWNER_PK, sr.hashDatasetOffer(d));
        bytes memory pSig = _sig(OPERATOR_PK, sr.hashPoolOffer(p));
        vm.prank(analyst);
        return sr.rent{value: value}(d, dSig, p, pSig, RESULT_KEY, SQL);
    }

    function _rent() internal returns (uint256) {
        return _rentWith(_datasetOffer(), _poolOffer(), DATASET_PRICE + POOL_PRICE);
    }

    function _authSig(uint256 taskId, address enclave_) internal returns (bytes memory) {
        return _sig(OPERATOR_PK, sr.hashAuthorization(taskId, enclave_));
    }

    function _resultSig(uint256 taskId, bytes32 digest, bool failed) internal returns (bytes memory) {
        return _sig(ENCLAVE_PK, sr.hashResult(taskId, digest, failed));
    }

    function _submit(uint256 taskId, bool failed) internal {
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, failed);
        sr.submitResult(taskId, DIGEST, LOCATION, auth, res, failed);
    }

    // ------------------------------------------------------------------
    // Deployment and governance
    // ------------------------------------------------------------------

    function test_Constructor_Defaults() public {
        assertEq(sr.owner(), address(this));
        assertTrue(sr.acceptSimulatedQuotes());
        assertEq(uint256(sr.enclaveTtl()), 30 days);
        assertEq(sr.taskCount(), 0);
        assertFalse(new Strongroom(false).acceptSimulatedQuotes());
    }

    function test_SetPlatformKey() public {
        vm.expectEmit(true, false, false, true, address(sr));
        emit Strongroom.PlatformKeyTrusted(stranger, true);
        sr.setPlatformKey(stranger, true);
        assertTrue(sr.trustedPlatformKeys(stranger));

        sr.setPlatformKey(stranger, false);
        assertFalse(sr.trustedPlatformKeys(stranger));
    }

    function test_SetMeasurement() public {
        bytes32 m = keccak256("other");
        vm.expectEmit(true, false, false, true, address(sr));
        emit Strongroom.MeasurementTrusted(m, true);
        sr.setMeasurement(m, true);
        assertTrue(sr.trustedMeasurements(m));

        sr.setMeasurement(m, false);
        assertFalse(sr.trustedMeasurements(m));
    }

    function test_SetEnclaveTtl() public {
        vm.expectEmit(false, false, false, true, address(sr));
        emit Strongroom.EnclaveTtlSet(1 days);
        sr.setEnclaveTtl(1 days);
        assertEq(uint256(sr.enclaveTtl()), 1 days);

        // Only new registrations get the new lifetime.
        Quote memory q = _quote(enclave);
        sr.registerEnclave(q, _signQuote(q, PLATFORM_PK));
        (, uint64 expiresAt) = sr.enclaves(enclave);
        assertEq(uint256(expiresAt), block.timestamp + 1 days);
    }

    function test_RevertWhen_SetPlatformKeyNotOwner() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        vm.prank(stranger);
        sr.setPlatformKey(stranger, true);
    }

    function test_RevertWhen_SetMeasurementNotOwner() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        vm.prank(stranger);
        sr.setMeasurement(bytes32(uint256(1)), true);
    }

    function test_RevertWhen_SetEnclaveTtlNotOwner() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        vm.prank(stranger);
        sr.setEnclaveTtl(1);
    }

    function test_OwnershipIsTwoStep() public {
        address next = address(0xB0B);
        sr.transferOwnership(next);
        // Nothing changes until the new owner accepts.
        assertEq(sr.owner(), address(this));
        assertEq(sr.pendingOwner(), next);

        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        vm.prank(stranger);
        sr.acceptOwnership();

        vm.prank(next);
        sr.acceptOwnership();
        assertEq(sr.owner(), next);
        assertEq(sr.pendingOwner(), address(0));

        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(this)));
        sr.setPlatformKey(stranger, true);

        vm.prank(next);
        sr.setPlatformKey(stranger, true);
        assertTrue(sr.trustedPlatformKeys(stranger));
    }

    // ------------------------------------------------------------------
    // Enclave registration
    // ------------------------------------------------------------------

    function test_RegisterEnclave() public {
        address other = vm.addr(0x5EC0);
        Quote memory q = _quote(other);
        bytes memory sig = _signQuote(q, PLATFORM_PK);

        vm.expectEmit(true, true, false, true, address(sr));
        emit Strongroom.EnclaveRegistered(other, MEASUREMENT, platform, uint64(block.timestamp + 30 days));
        vm.prank(stranger); // anyone may relay a quote
        address registered = sr.registerEnclave(q, sig);

        assertEq(registered, other);
        (bytes32 measurement, uint64 expiresAt) = sr.enclaves(other);
        assertEq(measurement, MEASUREMENT);
        assertEq(uint256(expiresAt), block.timestamp + 30 days);
        assertTrue(sr.isEnclaveActive(other));
    }

    function test_RegisterEnclave_RefreshExtendsExpiry() public {
        vm.warp(block.timestamp + 29 days);
        Quote memory q = _quote(enclave);
        sr.registerEnclave(q, _signQuote(q, PLATFORM_PK));
        (, uint64 expiresAt) = sr.enclaves(enclave);
        assertEq(uint256(expiresAt), block.timestamp + 30 days);

        vm.warp(block.timestamp + 29 days);
        assertTrue(sr.isEnclaveActive(enclave));
    }

    function test_RegisterEnclave_ProductionAcceptsHardwareQuote() public {
        Strongroom prod = new Strongroom(false);
        prod.setPlatformKey(platform, true);
        prod.setMeasurement(MEASUREMENT, true);
        Quote memory q = _quote(enclave);
        q.quoteType = 2;
        assertEq(prod.registerEnclave(q, _signQuote(q, PLATFORM_PK)), enclave);
        assertTrue(prod.isEnclaveActive(enclave));
    }

    function test_RevertWhen_RegisterEnclaveSimulatedInProduction() public {
        Strongroom prod = new Strongroom(false);
        prod.setPlatformKey(platform, true);
        prod.setMeasurement(MEASUREMENT, true);
        Quote memory q = _quote(enclave);
        bytes memory sig = _signQuote(q, PLATFORM_PK);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.SimulatedQuoteRefused.selector));
        prod.registerEnclave(q, sig);
    }

    function test_RevertWhen_RegisterEnclaveMalformedSignature() public {
        Quote memory q = _quote(enclave);
        bytes memory sig = _signQuote(q, PLATFORM_PK);
        bytes memory truncated = new bytes(64);
        for (uint256 i = 0; i < 64; i++) {
            truncated[i] = sig[i];
        }

        vm.expectRevert(abi.encodeWithSelector(Strongroom.InvalidPlatformSignature.selector));
        sr.registerEnclave(q, truncated);
    }

    function test_RevertWhen_RegisterEnclaveUnrecoverableSignature() public {
        Quote memory q = _quote(enclave);
        // Well-formed length, but r = s = 0 recovers nobody.
        bytes memory sig = abi.encodePacked(bytes32(0), bytes32(0), uint8(27));

        vm.expectRevert(abi.encodeWithSelector(Strongroom.InvalidPlatformSignature.selector));
        sr.registerEnclave(q, sig);
    }

    function test_RevertWhen_RegisterEnclaveUntrustedPlatform() public {
        Quote memory q = _quote(enclave);
        bytes memory sig = _signQuote(q, STRANGER_PK);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.UntrustedPlatform.selector, stranger));
        sr.registerEnclave(q, sig);
    }

    function test_RevertWhen_RegisterEnclaveTamperedQuote() public {
        Quote memory q = _quote(enclave);
        bytes memory sig = _signQuote(q, PLATFORM_PK);
        // Rebinding the quote to another address after signing changes the
        // recovered key, so the forgery is refused as an unknown platform.
        q.reportData[0] = bytes32(bytes20(stranger));
        address recovered = _recoverAddr(keccak256(abi.encode(q)), sig);
        assertTrue(recovered != platform);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.UntrustedPlatform.selector, recovered));
        sr.registerEnclave(q, sig);
    }

    function test_RevertWhen_RegisterEnclaveUntrustedMeasurement() public {
        Quote memory q = _quote(enclave);
        q.measurement = keccak256("evil build");
        bytes memory sig = _signQuote(q, PLATFORM_PK);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.UntrustedMeasurement.selector, q.measurement));
        sr.registerEnclave(q, sig);
    }

    function test_RevertWhen_RegisterEnclaveDebug() public {
        Quote memory q = _quote(enclave);
        q.debug = true;
        bytes memory sig = _signQuote(q, PLATFORM_PK);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.DebugEnclave.selector));
        sr.registerEnclave(q, sig);
    }

    function test_RevertWhen_RegisterEnclaveZeroAddress() public {
        Quote memory q = _quote(address(0));
        bytes memory sig = _signQuote(q, PLATFORM_PK);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.BadReportData.selector));
        sr.registerEnclave(q, sig);
    }

    function test_EnclaveExpires() public {
        (, uint64 expiresAt) = sr.enclaves(enclave);
        vm.warp(expiresAt - 1);
        assertTrue(sr.isEnclaveActive(enclave));
        vm.warp(expiresAt);
        assertFalse(sr.isEnclaveActive(enclave));
    }

    function test_EnclaveRetiredWithMeasurement() public {
        sr.setMeasurement(MEASUREMENT, false);
        assertFalse(sr.isEnclaveActive(enclave));
        sr.setMeasurement(MEASUREMENT, true);
        assertTrue(sr.isEnclaveActive(enclave));
    }

    function test_EnclaveRetiredWithPlatformKey() public {
        sr.setPlatformKey(platform, false);
        assertFalse(sr.isEnclaveActive(enclave));
    }

    function test_UnregisteredEnclaveInactive() public {
        (bytes32 measurement, uint64 expiresAt) = sr.enclaves(stranger);
        assertEq(measurement, bytes32(0));
        assertEq(uint256(expiresAt), 0);
        assertFalse(sr.isEnclaveActive(stranger));
    }

    // ------------------------------------------------------------------
    // Datasets and pools
    // ------------------------------------------------------------------

    function test_RegisterDataset() public {
        bytes32 salt = keccak256("second");
        bytes32 expectedId = keccak256(abi.encode(datasetOwner, salt));
        assertEq(sr.datasetId(datasetOwner, salt), expectedId);

        vm.expectEmit(true, true, false, true, address(sr));
        emit Strongroom.DatasetRegistered(
            expectedId, datasetOwner, "s3://x", keccak256("sum"), "http://kms2", keccak256("k"), keccak256("pol")
        );
        vm.prank(datasetOwner);
        bytes32 id =
            sr.registerDataset(salt, "s3://x", keccak256("sum"), "http://kms2", keccak256("k"), keccak256("pol"));
        assertEq(id, expectedId);

        Dataset memory d = sr.getDataset(id);
        assertEq(d.owner, datasetOwner);
        assertEq(d.checksum, keccak256("sum"));
        assertEq(d.kmsKey, keccak256("k"));
        assertEq(d.policyHash, keccak256("pol"));
        assertEq(d.uri, "s3://x");
        assertEq(d.kmsUrl, "http://kms2");
    }

    function test_RegisterDataset_SameSaltOtherOwner() public {
        vm.prank(stranger);
        bytes32 id = sr.registerDataset(DATASET_SALT, "u", bytes32(0), "k", bytes32(0), bytes32(0));
        assertTrue(id != datasetId);
        assertEq(sr.getDataset(id).owner, stranger);
    }

    function test_GetDatasetUnknownIsEmpty() public {
        assertEq(sr.getDataset(keccak256("nope")).owner, address(0));
    }

    function test_RevertWhen_RegisterDatasetTwice() public {
        vm.expectRevert(abi.encodeWithSelector(Strongroom.DatasetExists.selector, datasetId));
        vm.prank(datasetOwner);
        sr.registerDataset(DATASET_SALT, "other", bytes32(0), "k", bytes32(0), bytes32(0));
    }

    function test_RegisterPool() public {
        bytes32 salt = keccak256("pool2");
        bytes32 expectedId = keccak256(abi.encode(operator, salt));
        assertEq(sr.poolId(operator, salt), expectedId);

        vm.expectEmit(true, true, false, true, address(sr));
        emit Strongroom.PoolRegistered(expectedId, operator);
        vm.prank(operator);
        assertEq(sr.registerPool(salt), expectedId);
        assertEq(sr.poolOperator(expectedId), operator);
        assertEq(sr.poolOperator(keccak256("nope")), address(0));
    }

    function test_RevertWhen_RegisterPoolTwice() public {
        vm.expectRevert(abi.encodeWithSelector(Strongroom.PoolExists.selector, poolId));
        vm.prank(operator);
        sr.registerPool(POOL_SALT);
    }

    // ------------------------------------------------------------------
    // EIP-712 digests (must match what the Rust side signs)
    // ------------------------------------------------------------------

    function test_Eip712Digests() public {
        bytes32 domain = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Strongroom"),
                keccak256("1"),
                block.chainid,
                address(sr)
            )
        );
        assertEq(sr.domainSeparator(), domain);

        DatasetOffer memory d = _datasetOffer();
        bytes32 dHash = keccak256(
            abi.encode(
                keccak256("DatasetOffer(bytes32 dataset,uint256 price,uint64 validUntil,bytes32 salt)"),
                d.dataset,
                d.price,
                d.validUntil,
                d.salt
            )
        );
        assertEq(sr.hashDatasetOffer(d), keccak256(abi.encodePacked("\x19\x01", domain, dHash)));

        PoolOffer memory p = _poolOffer();
        bytes32 pHash = keccak256(
            abi.encode(
                keccak256("PoolOffer(bytes32 pool,uint256 price,uint64 maxDuration,bytes32 salt)"),
                p.pool,
                p.price,
                p.maxDuration,
                p.salt
            )
        );
        assertEq(sr.hashPoolOffer(p), keccak256(abi.encodePacked("\x19\x01", domain, pHash)));

        bytes32 aHash = keccak256(abi.encode(keccak256("Authorization(uint256 taskId,address enclave)"), 7, enclave));
        assertEq(sr.hashAuthorization(7, enclave), keccak256(abi.encodePacked("\x19\x01", domain, aHash)));

        bytes32 rHash =
            keccak256(abi.encode(keccak256("Result(uint256 taskId,bytes32 digest,bool failed)"), 7, DIGEST, true));
        assertEq(sr.hashResult(7, DIGEST, true), keccak256(abi.encodePacked("\x19\x01", domain, rHash)));
    }

    // ------------------------------------------------------------------
    // rent
    // ------------------------------------------------------------------

    function test_Rent() public {
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        bytes memory dSig = _sig(OWNER_PK, sr.hashDatasetOffer(d));
        bytes memory pSig = _sig(OPERATOR_PK, sr.hashPoolOffer(p));
        uint64 deadline = uint64(block.timestamp) + MAX_DURATION;

        vm.expectEmit(true, true, true, true, address(sr));
        emit Strongroom.TaskCreated(1, datasetId, poolId, analyst, deadline, keccak256(bytes(SQL)), RESULT_KEY, SQL);
        vm.prank(analyst);
        uint256 taskId = sr.rent{value: DATASET_PRICE + POOL_PRICE}(d, dSig, p, pSig, RESULT_KEY, SQL);

        assertEq(taskId, 1);
        assertEq(sr.taskCount(), 1);
        assertEq(address(sr).balance, DATASET_PRICE + POOL_PRICE);
        assertEq(sr.balances(analyst), 0);

        Task memory t = sr.getTask(taskId);
        assertEq(t.dataset, datasetId);
        assertEq(t.pool, poolId);
        assertEq(t.analyst, analyst);
        assertEq(uint256(t.deadline), uint256(deadline));
        assertEq(uint256(t.status), uint256(TaskStatus.Active));
        assertEq(uint256(t.datasetPrice), DATASET_PRICE);
        assertEq(uint256(t.poolPrice), POOL_PRICE);
        assertEq(t.jobHash, keccak256(bytes(SQL)));
        assertEq(t.resultKey, RESULT_KEY);
        assertEq(t.resultDigest, bytes32(0));

        // Offers are reusable: a second rental gets the next id.
        assertEq(_rent(), 2);
        assertEq(sr.taskCount(), 2);
    }

    function test_Rent_ExcessIsCredited() public {
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        bytes memory dSig = _sig(OWNER_PK, sr.hashDatasetOffer(d));
        bytes memory pSig = _sig(OPERATOR_PK, sr.hashPoolOffer(p));

        vm.expectEmit(true, false, false, true, address(sr));
        emit Strongroom.Credited(analyst, 0.5 ether);
        vm.prank(analyst);
        sr.rent{value: DATASET_PRICE + POOL_PRICE + 0.5 ether}(d, dSig, p, pSig, RESULT_KEY, SQL);

        assertEq(sr.balances(analyst), 0.5 ether);
        assertEq(address(sr).balance, DATASET_PRICE + POOL_PRICE + 0.5 ether);
    }

    function test_Rent_FreeOffers() public {
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        d.price = 0;
        p.price = 0;
        uint256 taskId = _rentWith(d, p, 0);
        _submit(taskId, false);
        assertEq(sr.balances(datasetOwner), 0);
        assertEq(sr.balances(operator), 0);
        assertEq(uint256(sr.getTask(taskId).status), uint256(TaskStatus.Completed));
    }

    function test_Rent_HugeMaxDurationSaturates() public {
        PoolOffer memory p = _poolOffer();
        p.maxDuration = type(uint64).max;
        uint256 taskId = _rentWith(_datasetOffer(), p, DATASET_PRICE + POOL_PRICE);
        assertEq(uint256(sr.getTask(taskId).deadline), uint256(type(uint64).max));
    }

    function test_Rent_OfferValidUntilInclusive() public {
        DatasetOffer memory d = _datasetOffer();
        d.validUntil = uint64(block.timestamp);
        assertEq(_rentWith(d, _poolOffer(), DATASET_PRICE + POOL_PRICE), 1);
    }

    function test_RevertWhen_RentUnknownDataset() public {
        DatasetOffer memory d = _datasetOffer();
        d.dataset = keccak256("missing");
        bytes memory dSig = _sig(OWNER_PK, sr.hashDatasetOffer(d));
        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _sig(OPERATOR_PK, sr.hashPoolOffer(p));

        vm.expectRevert(abi.encodeWithSelector(Strongroom.UnknownDataset.selector, d.dataset));
        vm.prank(analyst);
        sr.rent{value: 2 ether}(d, dSig, p, pSig, RESULT_KEY, SQL);
    }

    function test_RevertWhen_RentDatasetOfferSignedByOther() public {
        DatasetOffer memory d = _datasetOffer();
        bytes memory dSig = _sig(STRANGER_PK, sr.hashDatasetOffer(d));
        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _sig(OPERATOR_PK, sr.hashPoolOffer(p));

        vm.expectRevert(abi.encodeWithSelector(Strongroom.InvalidDatasetOfferSignature.selector));
        vm.prank(analyst);
        sr.rent{value: 2 ether}(d, dSig, p, pSig, RESULT_KEY, SQL);
    }

    function test_RevertWhen_RentDatasetOfferTampered() public {
        DatasetOffer memory d = _datasetOffer();
        bytes memory dSig = _sig(OWNER_PK, sr.hashDatasetOffer(d));
        d.price = 1 wei; // the analyst tries to pay less than the owner signed for
        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _sig(OPERATOR_PK, sr.hashPoolOffer(p));

        vm.expectRevert(abi.encodeWithSelector(Strongroom.InvalidDatasetOfferSignature.selector));
        vm.prank(analyst);
        sr.rent{value: 2 ether}(d, dSig, p, pSig, RESULT_KEY, SQL);
    }

    function test_RevertWhen_RentDatasetOfferMalformedSignature() public {
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _sig(OPERATOR_PK, sr.hashPoolOffer(p));

        vm.expectRevert(abi.encodeWithSelector(Strongroom.InvalidDatasetOfferSignature.selector));
        vm.prank(analyst);
        sr.rent{value: 2 ether}(d, hex"1234", p, pSig, RESULT_KEY, SQL);
    }

    function test_RevertWhen_RentOfferExpired() public {
        DatasetOffer memory d = _datasetOffer();
        d.validUntil = uint64(block.timestamp - 1);
        bytes memory dSig = _sig(OWNER_PK, sr.hashDatasetOffer(d));
        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _sig(OPERATOR_PK, sr.hashPoolOffer(p));

        vm.expectRevert(abi.encodeWithSelector(Strongroom.OfferExpired.selector, d.validUntil));
        vm.prank(analyst);
        sr.rent{value: 2 ether}(d, dSig, p, pSig, RESULT_KEY, SQL);
    }

    function test_RevertWhen_RentUnknownPool() public {
        DatasetOffer memory d = _datasetOffer();
        bytes memory dSig = _sig(OWNER_PK, sr.hashDatasetOffer(d));
        PoolOffer memory p = _poolOffer();
        p.pool = keccak256("missing");
        bytes memory pSig = _sig(OPERATOR_PK, sr.hashPoolOffer(p));

        vm.expectRevert(abi.encodeWithSelector(Strongroom.UnknownPool.selector, p.pool));
        vm.prank(analyst);
        sr.rent{value: 2 ether}(d, dSig, p, pSig, RESULT_KEY, SQL);
    }

    function test_RevertWhen_RentPoolOfferSignedByOther() public {
        DatasetOffer memory d = _datasetOffer();
        bytes memory dSig = _sig(OWNER_PK, sr.hashDatasetOffer(d));
        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _sig(STRANGER_PK, sr.hashPoolOffer(p));

        vm.expectRevert(abi.encodeWithSelector(Strongroom.InvalidPoolOfferSignature.selector));
        vm.prank(analyst);
        sr.rent{value: 2 ether}(d, dSig, p, pSig, RESULT_KEY, SQL);
    }

    function test_RevertWhen_RentPoolOfferMalformedSignature() public {
        DatasetOffer memory d = _datasetOffer();
        bytes memory dSig = _sig(OWNER_PK, sr.hashDatasetOffer(d));
        PoolOffer memory p = _poolOffer();

        vm.expectRevert(abi.encodeWithSelector(Strongroom.InvalidPoolOfferSignature.selector));
        vm.prank(analyst);
        sr.rent{value: 2 ether}(d, dSig, p, "", RESULT_KEY, SQL);
    }

    function test_RevertWhen_RentEmptyJob() public {
        DatasetOffer memory d = _datasetOffer();
        bytes memory dSig = _sig(OWNER_PK, sr.hashDatasetOffer(d));
        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _sig(OPERATOR_PK, sr.hashPoolOffer(p));

        vm.expectRevert(abi.encodeWithSelector(Strongroom.EmptyJob.selector));
        vm.prank(analyst);
        sr.rent{value: 2 ether}(d, dSig, p, pSig, RESULT_KEY, "");
    }

    function test_RevertWhen_RentInsufficientPayment() public {
        DatasetOffer memory d = _datasetOffer();
        bytes memory dSig = _sig(OWNER_PK, sr.hashDatasetOffer(d));
        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _sig(OPERATOR_PK, sr.hashPoolOffer(p));
        uint256 required = DATASET_PRICE + POOL_PRICE;

        vm.expectRevert(abi.encodeWithSelector(Strongroom.InsufficientPayment.selector, required, required - 1));
        vm.prank(analyst);
        sr.rent{value: required - 1}(d, dSig, p, pSig, RESULT_KEY, SQL);
    }

    function test_RevertWhen_RentPriceExceedsUint128() public {
        DatasetOffer memory d = _datasetOffer();
        d.price = uint256(type(uint128).max) + 1;
        bytes memory dSig = _sig(OWNER_PK, sr.hashDatasetOffer(d));
        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _sig(OPERATOR_PK, sr.hashPoolOffer(p));

        vm.expectRevert(abi.encodeWithSelector(SafeCast.SafeCastOverflowedUintDowncast.selector, 128, d.price));
        vm.prank(analyst);
        sr.rent{value: 2 ether}(d, dSig, p, pSig, RESULT_KEY, SQL);
    }

    // ------------------------------------------------------------------
    // submitResult
    // ------------------------------------------------------------------

    function test_SubmitResult_Success() public {
        uint256 taskId = _rent();
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, false);

        vm.expectEmit(true, true, false, true, address(sr));
        emit Strongroom.ResultSubmitted(taskId, enclave, DIGEST, LOCATION, false);
        vm.prank(stranger); // the worker host relays; authority is in the signatures
        sr.submitResult(taskId, DIGEST, LOCATION, auth, res, false);

        Task memory t = sr.getTask(taskId);
        assertEq(uint256(t.status), uint256(TaskStatus.Completed));
        assertEq(t.resultDigest, DIGEST);
        assertEq(sr.balances(datasetOwner), DATASET_PRICE);
        assertEq(sr.balances(operator), POOL_PRICE);
        assertEq(sr.balances(analyst), 0);
        assertEq(address(sr).balance, DATASET_PRICE + POOL_PRICE);
    }

    function test_SubmitResult_AtDeadline() public {
        uint256 taskId = _rent();
        vm.warp(sr.getTask(taskId).deadline);
        _submit(taskId, false);
        assertEq(uint256(sr.getTask(taskId).status), uint256(TaskStatus.Completed));
    }

    function test_SubmitResult_AttestedFailure() public {
        uint256 taskId = _rent();
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, true);

        vm.expectEmit(true, true, false, true, address(sr));
        emit Strongroom.ResultSubmitted(taskId, enclave, DIGEST, LOCATION, true);
        sr.submitResult(taskId, DIGEST, LOCATION, auth, res, true);

        Task memory t = sr.getTask(taskId);
        assertEq(uint256(t.status), uint256(TaskStatus.Failed));
        assertEq(t.resultDigest, DIGEST);
        assertEq(sr.balances(operator), POOL_PRICE);
        assertEq(sr.balances(analyst), DATASET_PRICE);
        assertEq(sr.balances(datasetOwner), 0);
    }

    function test_RevertWhen_SubmitUnknownTask() public {
        bytes memory auth = _authSig(1, enclave);
        bytes memory res = _resultSig(1, DIGEST, false);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.UnknownTask.selector, 1));
        sr.submitResult(1, DIGEST, LOCATION, auth, res, false);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.UnknownTask.selector, 0));
        sr.submitResult(0, DIGEST, LOCATION, auth, res, false);
    }

    function test_RevertWhen_SubmitTwice() public {
        uint256 taskId = _rent();
        _submit(taskId, false);
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, false);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.TaskNotActive.selector, taskId, TaskStatus.Completed));
        sr.submitResult(taskId, DIGEST, LOCATION, auth, res, false);
    }

    function test_RevertWhen_SubmitDeadlinePassed() public {
        uint256 taskId = _rent();
        uint64 deadline = sr.getTask(taskId).deadline;
        vm.warp(uint256(deadline) + 1);
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, false);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.DeadlinePassed.selector, taskId, deadline));
        sr.submitResult(taskId, DIGEST, LOCATION, auth, res, false);
    }

    function test_RevertWhen_SubmitMalformedEnclaveSignature() public {
        uint256 taskId = _rent();
        bytes memory auth = _authSig(taskId, enclave);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.InvalidEnclaveSignature.selector));
        sr.submitResult(taskId, DIGEST, LOCATION, auth, hex"00", false);
    }

    function test_RevertWhen_SubmitUnregisteredEnclave() public {
        uint256 taskId = _rent();
        bytes memory auth = _authSig(taskId, stranger);
        bytes memory res = _sig(STRANGER_PK, sr.hashResult(taskId, DIGEST, false));

        vm.expectRevert(abi.encodeWithSelector(Strongroom.EnclaveNotActive.selector, stranger));
        sr.submitResult(taskId, DIGEST, LOCATION, auth, res, false);
    }

    function test_RevertWhen_SubmitExpiredEnclave() public {
        // A pool offer long enough to outlive the enclave's registration.
        PoolOffer memory p = _poolOffer();
        p.maxDuration = 60 days;
        uint256 taskId = _rentWith(_datasetOffer(), p, DATASET_PRICE + POOL_PRICE);
        vm.warp(block.timestamp + 31 days);
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, false);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.EnclaveNotActive.selector, enclave));
        sr.submitResult(taskId, DIGEST, LOCATION, auth, res, false);
    }

    function test_RevertWhen_SubmitRevokedMeasurement() public {
        uint256 taskId = _rent();
        sr.setMeasurement(MEASUREMENT, false);
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, false);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.EnclaveNotActive.selector, enclave));
        sr.submitResult(taskId, DIGEST, LOCATION, auth, res, false);
    }

    function test_RevertWhen_SubmitFailureFlagFlipped() public {
        // The enclave signed a success; relaying it as a failure changes the
        // digest, so the signature no longer recovers the enclave.
        uint256 taskId = _rent();
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, false);
        address recovered = _recoverAddr(sr.hashResult(taskId, DIGEST, true), res);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.EnclaveNotActive.selector, recovered));
        sr.submitResult(taskId, DIGEST, LOCATION, auth, res, true);
    }

    function test_RevertWhen_SubmitAuthorizedByWrongOperator() public {
        uint256 taskId = _rent();
        bytes memory auth = _sig(OWNER_PK, sr.hashAuthorization(taskId, enclave));
        bytes memory res = _resultSig(taskId, DIGEST, false);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.NotAuthorized.selector, taskId, enclave));
        sr.submitResult(taskId, DIGEST, LOCATION, auth, res, false);
    }

    function test_RevertWhen_SubmitAuthorizationForOtherEnclave() public {
        // A second, equally valid enclave that the operator did not assign.
        uint256 otherPk = 0x0E2;
        address other = vm.addr(otherPk);
        Quote memory q = _quote(other);
        sr.registerEnclave(q, _signQuote(q, PLATFORM_PK));

        uint256 taskId = _rent();
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _sig(otherPk, sr.hashResult(taskId, DIGEST, false));

        vm.expectRevert(abi.encodeWithSelector(Strongroom.NotAuthorized.selector, taskId, other));
        sr.submitResult(taskId, DIGEST, LOCATION, auth, res, false);
    }

    function test_RevertWhen_SubmitAuthorizationForOtherTask() public {
        uint256 first = _rent();
        uint256 second = _rent();
        bytes memory auth = _authSig(first, enclave);
        bytes memory res = _resultSig(second, DIGEST, false);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.NotAuthorized.selector, second, enclave));
        sr.submitResult(second, DIGEST, LOCATION, auth, res, false);
    }

    function test_RevertWhen_SubmitMalformedAuthorization() public {
        uint256 taskId = _rent();
        bytes memory res = _resultSig(taskId, DIGEST, false);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.NotAuthorized.selector, taskId, enclave));
        sr.submitResult(taskId, DIGEST, LOCATION, "", res, false);
    }

    function _recoverAddr(bytes32 digest, bytes memory sig) internal pure returns (address) {
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly {
            r := mload(add(sig, 0x20))
            s := mload(add(sig, 0x40))
            v := byte(0, mload(add(sig, 0x60)))
        }
        return ecrecover(digest, v, r, s);
    }

    // ------------------------------------------------------------------
    // refund
    // ------------------------------------------------------------------

    function test_RevertWhen_RefundBeforeDeadline() public {
        uint256 taskId = _rent();
        uint64 deadline = sr.getTask(taskId).deadline;

        vm.expectRevert(abi.encodeWithSelector(Strongroom.DeadlineNotReached.selector, taskId, deadline));
        sr.refund(taskId);

        vm.warp(deadline); // the deadline itself still belongs to the enclave
        vm.expectRevert(abi.encodeWithSelector(Strongroom.DeadlineNotReached.selector, taskId, deadline));
        sr.refund(taskId);
    }

    function test_Refund() public {
        uint256 taskId = _rent();
        vm.warp(uint256(sr.getTask(taskId).deadline) + 1);

        vm.expectEmit(true, true, false, true, address(sr));
        emit Strongroom.TaskRefunded(taskId, analyst, DATASET_PRICE + POOL_PRICE);
        vm.prank(stranger); // anyone may trigger it; the money goes to the analyst
        sr.refund(taskId);

        assertEq(uint256(sr.getTask(taskId).status), uint256(TaskStatus.Refunded));
        assertEq(sr.balances(analyst), DATASET_PRICE + POOL_PRICE);
        assertEq(sr.balances(stranger), 0);
    }

    function test_RevertWhen_RefundUnknownTask() public {
        vm.expectRevert(abi.encodeWithSelector(Strongroom.UnknownTask.selector, 42));
        sr.refund(42);
    }

    function test_RevertWhen_RefundTwice() public {
        uint256 taskId = _rent();
        vm.warp(uint256(sr.getTask(taskId).deadline) + 1);
        sr.refund(taskId);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.TaskNotActive.selector, taskId, TaskStatus.Refunded));
        sr.refund(taskId);
    }

    function test_RevertWhen_RefundSettledTask() public {
        uint256 taskId = _rent();
        _submit(taskId, true);
        vm.warp(uint256(sr.getTask(taskId).deadline) + 1);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.TaskNotActive.selector, taskId, TaskStatus.Failed));
        sr.refund(taskId);
    }

    function test_RevertWhen_SubmitAfterRefund() public {
        uint256 taskId = _rent();
        vm.warp(uint256(sr.getTask(taskId).deadline) + 1);
        sr.refund(taskId);
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, false);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.TaskNotActive.selector, taskId, TaskStatus.Refunded));
        sr.submitResult(taskId, DIGEST, LOCATION, auth, res, false);
    }

    // ------------------------------------------------------------------
    // withdraw
    // ------------------------------------------------------------------

    function test_Withdraw() public {
        _submit(_rent(), false);
        uint256 before = datasetOwner.balance;

        vm.expectEmit(true, false, false, true, address(sr));
        emit Strongroom.Withdrawn(datasetOwner, DATASET_PRICE);
        vm.prank(datasetOwner);
        sr.withdraw();

        assertEq(datasetOwner.balance, before + DATASET_PRICE);
        assertEq(sr.balances(datasetOwner), 0);
        assertEq(address(sr).balance, POOL_PRICE);

        vm.prank(operator);
        sr.withdraw();
        assertEq(operator.balance, POOL_PRICE);
        assertEq(address(sr).balance, 0);
    }

    function test_RevertWhen_WithdrawNothing() public {
        vm.expectRevert(abi.encodeWithSelector(Strongroom.NothingToWithdraw.selector));
        vm.prank(stranger);
        sr.withdraw();
    }

    function test_RevertWhen_WithdrawTwice() public {
        _submit(_rent(), false);
        vm.prank(operator);
        sr.withdraw();

        vm.expectRevert(abi.encodeWithSelector(Strongroom.NothingToWithdraw.selector));
        vm.prank(operator);
        sr.withdraw();
    }

    function test_RevertWhen_WithdrawReceiverReverts() public {
        RevertingReceiver receiver = new RevertingReceiver();
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        bytes memory dSig = _sig(OWNER_PK, sr.hashDatasetOffer(d));
        bytes memory pSig = _sig(OPERATOR_PK, sr.hashPoolOffer(p));
        receiver.rent{value: DATASET_PRICE + POOL_PRICE + 1 ether}(sr, d, dSig, p, pSig, SQL);
        assertEq(sr.balances(address(receiver)), 1 ether);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.WithdrawFailed.selector));
        receiver.withdraw(sr);
        // The failed payout rolled back: the balance is still there.
        assertEq(sr.balances(address(receiver)), 1 ether);
    }

    function test_Withdraw_ReentryGetsNothing() public {
        ReentrantReceiver receiver = new ReentrantReceiver();
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        bytes memory dSig = _sig(OWNER_PK, sr.hashDatasetOffer(d));
        bytes memory pSig = _sig(OPERATOR_PK, sr.hashPoolOffer(p));
        receiver.rent{value: DATASET_PRICE + POOL_PRICE + 1 ether}(sr, d, dSig, p, pSig, SQL);

        receiver.withdraw();
        assertTrue(receiver.reentryFailed());
        assertEq(address(receiver).balance, 1 ether);
        assertEq(sr.balances(address(receiver)), 0);
        assertEq(address(sr).balance, DATASET_PRICE + POOL_PRICE);
    }

    // ------------------------------------------------------------------
    // Fuzz: ether is conserved
    // ------------------------------------------------------------------

    /// After any mix of rentals, settlements, refunds and withdrawals, the
    /// contract holds exactly the active escrows plus the withdrawable balances.
    function testFuzz_EtherConserved(uint256 seed) public {
        uint256 rounds = bound(seed % 8, 1, 6);
        for (uint256 i = 0; i < rounds; i++) {
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            DatasetOffer memory d = _datasetOffer();
            PoolOffer memory p = _poolOffer();
            d.price = r % 5 ether;
            p.price = (r >> 96) % 2 ether;
            uint256 excess = (r >> 192) % 3 == 0 ? (r >> 200) % 1 ether : 0;
            uint256 taskId = _rentWith(d, p, d.price + p.price + excess);

            uint256 outcome = (r >> 224) % 4;
            if (outcome == 0) {
                _submit(taskId, false);
            } else if (outcome == 1) {
                _submit(taskId, true);
            } else if (outcome == 2) {
                vm.warp(uint256(sr.getTask(taskId).deadline) + 1);
                sr.refund(taskId);
            } // outcome 3: left active

            if ((r >> 240) % 2 == 0) _withdrawIfAny(analyst);
            if ((r >> 241) % 2 == 0) _withdrawIfAny(datasetOwner);
            if ((r >> 242) % 2 == 0) _withdrawIfAny(operator);
            _assertConserved();
        }
    }

    function _withdrawIfAny(address account) internal {
        if (sr.balances(account) == 0) return;
        vm.prank(account);
        sr.withdraw();
    }

    function _assertConserved() internal {
        uint256 escrowed;
        for (uint256 id = 1; id <= sr.taskCount(); id++) {
            Task memory t = sr.getTask(id);
            if (t.status == TaskStatus.Active) escrowed += uint256(t.datasetPrice) + t.poolPrice;
        }
        uint256 owed = sr.balances(analyst) + sr.balances(datasetOwner) + sr.balances(operator);
        assertEq(address(sr).balance, escrowed + owed);
    }
}
