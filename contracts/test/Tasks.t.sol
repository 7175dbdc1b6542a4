// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Fixture, TestWallet} from "./utils/Fixture.sol";
import {AppRegistry} from "../src/AppRegistry.sol";
import {DatasetRegistry} from "../src/DatasetRegistry.sol";
import {Offers} from "../src/Offers.sol";
import {PoolRegistry} from "../src/PoolRegistry.sol";
import {
    Strongroom,
    Pool,
    DatasetOffer,
    PoolOffer,
    AppOffer,
    Outcome,
    Rental,
    TaskParams,
    TaskStatus,
    JobKind,
    PlatformKind
} from "../src/Strongroom.sol";
import {TaskDigests} from "./utils/TaskDigests.sol";

using TaskDigests for Strongroom;

/// Analyst that cannot receive ether, to exercise `WithdrawFailed`.
contract RevertingReceiver {
    function rent(
        Strongroom sr,
        DatasetOffer calldata d,
        bytes calldata dSig,
        PoolOffer calldata p,
        bytes calldata pSig,
        Rental calldata r
    ) external payable returns (uint256) {
        return sr.rent{value: msg.value}(d, dSig, p, pSig, r);
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
        Rental calldata r
    ) external payable returns (uint256) {
        sr = sr_;
        return sr_.rent{value: msg.value}(d, dSig, p, pSig, r);
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

/// rent, rentApp, submitResult, refund, withdraw.
contract TasksTest is Fixture {
    uint256 internal constant SQL_TOTAL = DATASET_PRICE + POOL_PRICE;
    uint256 internal constant APP_TOTAL = DATASET_PRICE + POOL_PRICE + APP_PRICE;

    /// Signs the offers first (external calls), then expects `err` from `rent`.
    function _expectRentRevert(DatasetOffer memory d, PoolOffer memory p, Rental memory r, uint256 value, bytes memory err)
        internal
    {
        bytes memory dSig = _dSig(d);
        bytes memory pSig = _pSig(p);
        vm.expectRevert(err);
        vm.prank(analyst);
        sr.rent{value: value}(d, dSig, p, pSig, r);
    }

    function _expectRentAppRevert(
        DatasetOffer memory d,
        PoolOffer memory p,
        AppOffer memory a,
        Rental memory r,
        uint256 value,
        bytes memory err
    ) internal {
        bytes memory dSig = _dSig(d);
        bytes memory pSig = _pSig(p);
        bytes memory aSig = _aSig(a);
        vm.expectRevert(err);
        vm.prank(analyst);
        sr.rentApp{value: value}(d, dSig, p, pSig, a, aSig, r);
    }

    function _expectSubmitRevert(TaskParams memory t, uint256 taskId, Outcome outcome, bytes memory err) internal {
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, outcome, LOCATION);
        vm.expectRevert(err);
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, res, outcome);
    }

    /// What `rent` must commit to for the default offers and rental at the current time.
    function _expectedSql(uint256 taskId) internal view returns (TaskParams memory t) {
        taskId; // ids do not enter the parameters
        t.dataset = datasetId;
        t.registryVersion = 1;
        t.pool = poolId;
        t.kind = JobKind.Sql;
        t.analyst = analyst;
        t.datasetOwner = datasetOwner;
        t.poolOperator = operator;
        t.deadline = uint64(block.timestamp + MAX_DURATION);
        t.epsilon = EPSILON;
        t.datasetPrice = DATASET_PRICE;
        t.poolPrice = POOL_PRICE;
        t.stake = POOL_PRICE;
        t.jobHash = keccak256(SQL);
        t.resultKey = RESULT_KEY;
        t.policyHash = POLICY;
        t.manifestDigest = MANIFEST_DIGEST;
        t.kmsKey = KMS_KEY;
    }

    function _locked() internal view returns (uint256) {
        return sr.getPool(poolId).locked;
    }

    // ------------------------------------------------------------------
    // rent
    // ------------------------------------------------------------------

    function test_Rent() public {
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        Rental memory r = _rental();
        bytes memory dSig = _dSig(d);
        bytes memory pSig = _pSig(p);
        TaskParams memory expected = _expectedSql(1);

        vm.expectEmit(true, true, true, true, address(sr));
        emit DatasetRegistry.PrivacyReserved(datasetId, analyst, 1, EPSILON);
        vm.expectEmit(true, true, true, true, address(sr));
        emit Strongroom.TaskCreated(1, datasetId, poolId, expected, SQL);
        vm.prank(analyst);
        uint256 taskId = sr.rent{value: SQL_TOTAL}(d, dSig, p, pSig, r);

        assertEq(taskId, 1);
        assertEq(sr.taskCount(), 1);
        assertEq(_status(taskId), uint256(TaskStatus.Active));
        bytes32 h = keccak256(abi.encode(expected));
        assertEq(sr.taskCommitment(taskId), (h & ~bytes32(uint256(0xff))) | bytes32(uint256(1)));
        assertEq(address(sr).balance, STAKE + SQL_TOTAL);
        assertEq(sr.balances(analyst), 0);
        assertEq(_locked(), POOL_PRICE);
        (uint64 spent, uint64 reserved) = sr.privacySpend(datasetId, analyst);
        assertEq(uint256(spent), 0);
        assertEq(uint256(reserved), EPSILON);
        assertEq(uint256(sr.offerUsed(sr.hashDatasetOffer(d))), 1);
        assertEq(uint256(sr.offerUsed(sr.hashPoolOffer(p))), 1);

        // Offers are reusable up to their volume: the next rental gets the next id.
        (uint256 second,) = _rent();
        assertEq(second, 2);
        assertEq(uint256(sr.offerUsed(sr.hashDatasetOffer(d))), 2);
    }

    function test_Rent_EventCarriesEverything() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        TaskParams memory expected = _expectedSql(taskId);
        assertEq(keccak256(abi.encode(t)), keccak256(abi.encode(expected)));
        assertEq(sr.taskCommitment(taskId) >> 8, keccak256(abi.encode(t)) >> 8);
    }

    function test_Rent_ExcessIsCredited() public {
        _rentWith(_datasetOffer(), _poolOffer(), _rental(), SQL_TOTAL + 0.5 ether);
        assertEq(sr.balances(analyst), 0.5 ether);
        assertEq(address(sr).balance, STAKE + SQL_TOTAL + 0.5 ether);
    }

    function test_Rent_FreeOffersLockNoStake() public {
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        d.price = 0;
        p.price = 0;
        (uint256 taskId, TaskParams memory t) = _rentWith(d, p, _rental(), 0);
        assertEq(uint256(t.stake), 0);
        assertEq(_locked(), 0);
        _submit(t, taskId, Outcome.Completed);
        assertEq(sr.balances(datasetOwner), 0);
        assertEq(sr.balances(operator), 0);
        assertEq(_status(taskId), uint256(TaskStatus.Completed));
    }

    function test_Rent_ZeroEpsilonTouchesNoBudget() public {
        Rental memory r = _rental();
        r.epsilon = 0;
        vmx.recordLogs();
        bytes memory dSig = _dSig(_datasetOffer());
        bytes memory pSig = _pSig(_poolOffer());
        vmx.recordLogs();
        vm.prank(analyst);
        sr.rent{value: SQL_TOTAL}(_datasetOffer(), dSig, _poolOffer(), pSig, r);
        assertEq(vmx.getRecordedLogs().length, 1); // TaskCreated only, no PrivacyReserved
        (uint64 spent, uint64 reserved) = sr.privacySpend(datasetId, analyst);
        assertEq(uint256(spent) + reserved, 0);
    }

    function test_Rent_ZeroEpsilonOnZeroBudget() public {
        vm.prank(datasetOwner);
        bytes32 id = sr.registerDataset(keccak256("nobudget"), "u", MANIFEST_DIGEST, "k", KMS_KEY, POLICY, 0);
        DatasetOffer memory d = _datasetOffer();
        d.dataset = id;
        Rental memory r = _rental();
        r.epsilon = 0;
        (uint256 taskId,) = _rentWith(d, _poolOffer(), r, SQL_TOTAL);
        assertEq(taskId, 1);
        r.epsilon = 1;
        _expectRentRevert(
            d, _poolOffer(), r, SQL_TOTAL,
            abi.encodeWithSelector(DatasetRegistry.PrivacyBudgetExhausted.selector, id, analyst, uint64(0), uint64(1))
        );
    }

    function test_Rent_HugeMaxDurationSaturates() public {
        PoolOffer memory p = _poolOffer();
        p.maxDuration = type(uint64).max;
        (, TaskParams memory t) = _rentWith(_datasetOffer(), p, _rental(), SQL_TOTAL);
        assertEq(uint256(t.deadline), uint256(type(uint64).max));
    }

    function test_Rent_ValidityWindowInclusive() public {
        DatasetOffer memory d = _datasetOffer();
        d.validFrom = uint64(block.timestamp);
        d.validUntil = uint64(block.timestamp);
        (uint256 taskId,) = _rentWith(d, _poolOffer(), _rental(), SQL_TOTAL);
        assertEq(taskId, 1);
    }

    function test_Rent_StakeFollowsRatio() public {
        sr.setStakeRatio(25_000); // 2.5x the pool price
        (, TaskParams memory t) = _rent();
        assertEq(uint256(t.stake), POOL_PRICE * 25 / 10);
        assertEq(_locked(), POOL_PRICE * 25 / 10);
    }

    function test_Rent_MeasurementPinCommitted() public {
        DatasetOffer memory d = _datasetOffer();
        d.measurement = MEASUREMENT;
        (, TaskParams memory t) = _rentWith(d, _poolOffer(), _rental(), SQL_TOTAL);
        assertEq(t.measurement, MEASUREMENT);
    }

    function test_Rent_CompactSignatures() public {
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        bytes memory dSig = _sig64(OWNER_PK, sr.hashDatasetOffer(d));
        bytes memory pSig = _sig64(OPERATOR_PK, sr.hashPoolOffer(p));
        vm.prank(analyst);
        assertEq(sr.rent{value: SQL_TOTAL}(d, dSig, p, pSig, _rental()), 1);
    }

    function test_Rent_AfterUpdateRecordsNewVersion() public {
        vm.prank(datasetOwner);
        sr.updateDataset(datasetId, "s3://v2", keccak256("c2"), "http://kms", KMS_KEY, POLICY);
        (, TaskParams memory t) = _rent();
        assertEq(uint256(t.registryVersion), 2);
        assertEq(t.manifestDigest, keccak256("c2"));
    }

    function test_RevertWhen_RentUnknownDataset() public {
        DatasetOffer memory d = _datasetOffer();
        d.dataset = keccak256("nope");
        _expectRentRevert(d, _poolOffer(), _rental(), SQL_TOTAL, abi.encodeWithSelector(DatasetRegistry.UnknownDataset.selector, d.dataset));
    }

    function test_RevertWhen_RentInactiveDataset() public {
        vm.prank(datasetOwner);
        sr.setDatasetActive(datasetId, false);
        _expectRentRevert(_datasetOffer(), _poolOffer(), _rental(), SQL_TOTAL, abi.encodeWithSelector(DatasetRegistry.DatasetInactive.selector, datasetId));
    }

    function test_RevertWhen_RentDatasetOfferNotSignedByOwner() public {
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        bytes memory dSig = _sig(STRANGER_PK, sr.hashDatasetOffer(d));
        bytes memory pSig = _pSig(p);
        Rental memory r = _rental();
        vm.expectRevert(abi.encodeWithSelector(Offers.InvalidSignature.selector, sr.hashDatasetOffer(d), datasetOwner));
        vm.prank(analyst);
        sr.rent{value: SQL_TOTAL}(d, dSig, p, pSig, r);
    }

    function test_RevertWhen_RentTamperedDatasetOffer() public {
        DatasetOffer memory d = _datasetOffer();
        bytes memory dSig = _dSig(d);
        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _pSig(p);
        Rental memory r = _rental();
        d.price = 1; // the analyst tries to pay less than signed
        bytes32 h = sr.hashDatasetOffer(d);
        vm.expectRevert(abi.encodeWithSelector(Offers.InvalidSignature.selector, h, datasetOwner));
        vm.prank(analyst);
        sr.rent{value: SQL_TOTAL}(d, dSig, p, pSig, r);
    }

    function test_RevertWhen_RentMalleableSignature() public {
        DatasetOffer memory d = _datasetOffer();
        bytes32 h = sr.hashDatasetOffer(d);
        (uint8 v, bytes32 rr, bytes32 s) = vm.sign(OWNER_PK, h);
        // (r, n - s, v ^ 1) is the same signature in its high-s form: refused.
        uint256 n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
        bytes memory high = abi.encodePacked(rr, bytes32(n - uint256(s)), v == 27 ? uint8(28) : uint8(27));
        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _pSig(p);
        Rental memory r = _rental();
        vm.expectRevert(abi.encodeWithSelector(Offers.InvalidSignature.selector, h, datasetOwner));
        vm.prank(analyst);
        sr.rent{value: SQL_TOTAL}(d, high, p, pSig, r);
    }

    function test_RevertWhen_RentOfferNotYetValid() public {
        DatasetOffer memory d = _datasetOffer();
        d.validFrom = uint64(block.timestamp + 1);
        _expectRentRevert(d, _poolOffer(), _rental(), SQL_TOTAL, abi.encodeWithSelector(Offers.OfferNotYetValid.selector, d.validFrom));
    }

    function test_RevertWhen_RentOfferExpired() public {
        DatasetOffer memory d = _datasetOffer();
        d.validUntil = uint64(block.timestamp - 1);
        _expectRentRevert(d, _poolOffer(), _rental(), SQL_TOTAL, abi.encodeWithSelector(Offers.OfferExpired.selector, d.validUntil));
    }

    function test_RevertWhen_RentDatasetOfferVolumeExhausted() public {
        DatasetOffer memory d = _datasetOffer();
        d.volume = 1;
        _rentWith(d, _poolOffer(), _rental(), SQL_TOTAL);
        _expectRentRevert(
            d, _poolOffer(), _rental(), SQL_TOTAL,
            abi.encodeWithSelector(Offers.OfferVolumeExhausted.selector, sr.hashDatasetOffer(d), uint64(1))
        );
    }

    function test_RevertWhen_RentPoolOfferVolumeExhausted() public {
        PoolOffer memory p = _poolOffer();
        p.volume = 0;
        _expectRentRevert(
            _datasetOffer(), p, _rental(), SQL_TOTAL,
            abi.encodeWithSelector(Offers.OfferVolumeExhausted.selector, sr.hashPoolOffer(p), uint64(0))
        );
    }

    function test_RevertWhen_RentRequesterNotAllowed() public {
        DatasetOffer memory d = _datasetOffer();
        d.requester = stranger;
        _expectRentRevert(d, _poolOffer(), _rental(), SQL_TOTAL, abi.encodeWithSelector(Strongroom.RequesterNotAllowed.selector, analyst));
        d.requester = analyst;
        (uint256 taskId,) = _rentWith(d, _poolOffer(), _rental(), SQL_TOTAL);
        assertEq(taskId, 1);
    }

    function test_Rent_MerkleAllowList() public {
        address[] memory list = new address[](3);
        list[0] = stranger;
        list[1] = analyst;
        list[2] = operator;
        (bytes32 root, bytes32[] memory proof) = _merkle(list, 1);
        DatasetOffer memory d = _datasetOffer();
        d.requesterRoot = root;
        Rental memory r = _rental();

        // Without (or with a wrong) proof: refused.
        _expectRentRevert(d, _poolOffer(), r, SQL_TOTAL, abi.encodeWithSelector(Strongroom.RequesterNotAllowed.selector, analyst));
        (, bytes32[] memory otherProof) = _merkle(list, 0);
        r.requesterProof = otherProof;
        _expectRentRevert(d, _poolOffer(), r, SQL_TOTAL, abi.encodeWithSelector(Strongroom.RequesterNotAllowed.selector, analyst));

        r.requesterProof = proof;
        (uint256 taskId,) = _rentWith(d, _poolOffer(), r, SQL_TOTAL);
        assertEq(taskId, 1);
    }

    function test_Rent_BothRequesterRestrictions() public {
        address[] memory list = new address[](2);
        list[0] = analyst;
        list[1] = stranger;
        (bytes32 root, bytes32[] memory proof) = _merkle(list, 0);
        DatasetOffer memory d = _datasetOffer();
        d.requesterRoot = root;
        d.requester = stranger; // on the list, but not the single allowed address
        Rental memory r = _rental();
        r.requesterProof = proof;
        _expectRentRevert(d, _poolOffer(), r, SQL_TOTAL, abi.encodeWithSelector(Strongroom.RequesterNotAllowed.selector, analyst));
        d.requester = analyst;
        (uint256 taskId,) = _rentWith(d, _poolOffer(), r, SQL_TOTAL);
        assertEq(taskId, 1);
    }

    function test_RevertWhen_RentSqlNotAllowed() public {
        DatasetOffer memory d = _datasetOffer();
        d.allowSql = false;
        _expectRentRevert(d, _poolOffer(), _rental(), SQL_TOTAL, abi.encodeWithSelector(Strongroom.SqlNotAllowed.selector));
    }

    function test_RevertWhen_RentPoolNotAllowed() public {
        DatasetOffer memory d = _datasetOffer();
        d.pool = keccak256("another pool");
        _expectRentRevert(d, _poolOffer(), _rental(), SQL_TOTAL, abi.encodeWithSelector(Strongroom.PoolNotAllowed.selector, poolId));
        d.pool = poolId;
        (uint256 taskId,) = _rentWith(d, _poolOffer(), _rental(), SQL_TOTAL);
        assertEq(taskId, 1);
    }

    function test_RevertWhen_RentPolicyMismatch() public {
        vm.prank(datasetOwner);
        sr.updateDataset(datasetId, "s3://v2", MANIFEST_DIGEST, "http://kms", KMS_KEY, keccak256("stricter"));
        _expectRentRevert(
            _datasetOffer(), _poolOffer(), _rental(), SQL_TOTAL,
            abi.encodeWithSelector(Strongroom.PolicyMismatch.selector, POLICY, keccak256("stricter"))
        );
    }

    function test_RevertWhen_RentEpsilonAboveOfferMax() public {
        Rental memory r = _rental();
        r.epsilon = MAX_EPSILON + 1;
        _expectRentRevert(
            _datasetOffer(), _poolOffer(), r, SQL_TOTAL,
            abi.encodeWithSelector(Strongroom.EpsilonAboveOfferMax.selector, MAX_EPSILON + 1, MAX_EPSILON)
        );
    }

    function test_RevertWhen_RentPrivacyBudgetExhausted() public {
        Rental memory r = _rental();
        r.epsilon = MAX_EPSILON;
        // 10 tasks of 1.0 reserve the whole budget of 10.0 (reserved counts like spent).
        for (uint256 i = 0; i < 10; i++) {
            _rentWith(_datasetOffer(), _poolOffer(), r, SQL_TOTAL);
        }
        r.epsilon = 1;
        _expectRentRevert(
            _datasetOffer(), _poolOffer(), r, SQL_TOTAL,
            abi.encodeWithSelector(DatasetRegistry.PrivacyBudgetExhausted.selector, datasetId, analyst, uint64(0), uint64(1))
        );
        // Another analyst has a budget of its own.
        vm.deal(stranger, 10 ether);
        bytes memory dSig = _dSig(_datasetOffer());
        bytes memory pSig = _pSig(_poolOffer());
        vm.prank(stranger);
        sr.rent{value: SQL_TOTAL}(_datasetOffer(), dSig, _poolOffer(), pSig, r);
    }

    function test_RevertWhen_RentPrivacyBudgetPartlyLeft() public {
        Rental memory r = _rental();
        r.epsilon = 700_000;
        vm.prank(datasetOwner);
        sr.setPrivacyBudget(datasetId, BUDGET); // unchanged: 10.0
        for (uint256 i = 0; i < 14; i++) {
            _rentWith(_datasetOffer(), _poolOffer(), r, SQL_TOTAL); // 9.8 reserved
        }
        _expectRentRevert(
            _datasetOffer(), _poolOffer(), r, SQL_TOTAL,
            abi.encodeWithSelector(DatasetRegistry.PrivacyBudgetExhausted.selector, datasetId, analyst, uint64(200_000), uint64(700_000))
        );
        // Raising the budget lets the analyst continue.
        vm.prank(datasetOwner);
        sr.setPrivacyBudget(datasetId, BUDGET + 500_000);
        _rentWith(_datasetOffer(), _poolOffer(), r, SQL_TOTAL);
    }

    function test_RevertWhen_RentUnknownPool() public {
        PoolOffer memory p = _poolOffer();
        p.pool = keccak256("nope");
        _expectRentRevert(_datasetOffer(), p, _rental(), SQL_TOTAL, abi.encodeWithSelector(PoolRegistry.UnknownPool.selector, p.pool));
    }

    function test_RevertWhen_RentPoolOfferNotSignedByOperator() public {
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        bytes memory dSig = _dSig(d);
        bytes memory pSig = _sig(OWNER_PK, sr.hashPoolOffer(p));
        Rental memory r = _rental();
        vm.expectRevert(abi.encodeWithSelector(Offers.InvalidSignature.selector, sr.hashPoolOffer(p), operator));
        vm.prank(analyst);
        sr.rent{value: SQL_TOTAL}(d, dSig, p, pSig, r);
    }

    function test_RevertWhen_RentInsufficientStake() public {
        vm.prank(operator);
        sr.requestUnstake(poolId, STAKE - 0.1 ether);
        _expectRentRevert(
            _datasetOffer(), _poolOffer(), _rental(), SQL_TOTAL,
            abi.encodeWithSelector(PoolRegistry.InsufficientStake.selector, poolId, POOL_PRICE, 0.1 ether)
        );
    }

    function test_RevertWhen_RentPoolOfferExpired() public {
        PoolOffer memory p = _poolOffer();
        p.validUntil = uint64(block.timestamp - 1);
        _expectRentRevert(_datasetOffer(), p, _rental(), SQL_TOTAL, abi.encodeWithSelector(Offers.OfferExpired.selector, p.validUntil));
        p.validUntil = uint64(block.timestamp); // inclusive
        (uint256 taskId,) = _rentWith(_datasetOffer(), p, _rental(), SQL_TOTAL);
        assertEq(taskId, 1);
    }

    /// A pool offer that names a key service serves only datasets sealed to it.
    function test_RevertWhen_RentPoolOfferPinsAnotherKeyService() public {
        PoolOffer memory p = _poolOffer();
        p.keyService = keccak256("another kms");
        _expectRentRevert(
            _datasetOffer(), p, _rental(), SQL_TOTAL,
            abi.encodeWithSelector(Strongroom.KeyServiceNotAllowed.selector, KMS_KEY, p.keyService)
        );
    }

    /// An offer open to any key service stakes nothing: no key service's word can slash it.
    function test_Rent_PoolOfferOpenToAnyKeyServiceLocksNoStake() public {
        PoolOffer memory p = _poolOffer();
        p.keyService = bytes32(0);
        (uint256 taskId, TaskParams memory t) = _rentWith(_datasetOffer(), p, _rental(), SQL_TOTAL);
        assertEq(uint256(t.stake), 0);
        assertEq(_locked(), 0);
        vm.warp(uint256(t.deadline) + 1);
        sr.refundReleased(t, taskId, enclave, _authSig(taskId, enclave), _releasedSig(taskId, enclave));
        assertEq(sr.balances(analyst), POOL_PRICE);
        assertEq(uint256(sr.getPool(poolId).stake), STAKE);
    }

    function test_RevertWhen_RentPriceAboveMaximum() public {
        Rental memory r = _rental();
        r.maxPrice = SQL_TOTAL - 1;
        _expectRentRevert(
            _datasetOffer(), _poolOffer(), r, SQL_TOTAL,
            abi.encodeWithSelector(Strongroom.PriceAboveMaximum.selector, SQL_TOTAL, SQL_TOTAL - 1)
        );
    }

    function test_RevertWhen_RentInsufficientPayment() public {
        _expectRentRevert(
            _datasetOffer(), _poolOffer(), _rental(), SQL_TOTAL - 1,
            abi.encodeWithSelector(Strongroom.InsufficientPayment.selector, SQL_TOTAL, SQL_TOTAL - 1)
        );
    }

    function test_RevertWhen_RentPriceTooLarge() public {
        DatasetOffer memory d = _datasetOffer();
        d.price = uint256(type(uint128).max) + 1;
        _expectRentRevert(d, _poolOffer(), _rental(), SQL_TOTAL, abi.encodeWithSelector(Strongroom.PriceTooLarge.selector, d.price));
        PoolOffer memory p = _poolOffer();
        p.price = type(uint256).max;
        _expectRentRevert(_datasetOffer(), p, _rental(), SQL_TOTAL, abi.encodeWithSelector(Strongroom.PriceTooLarge.selector, p.price));
        AppOffer memory a = _appOffer();
        a.price = uint256(type(uint128).max) + 1;
        _expectRentAppRevert(
            _datasetOffer(), _poolOffer(), a, _rental(), APP_TOTAL,
            abi.encodeWithSelector(Strongroom.PriceTooLarge.selector, a.price)
        );
    }

    // ------------------------------------------------------------------
    // rentApp
    // ------------------------------------------------------------------

    function test_RentApp() public {
        Rental memory r = _rental();
        r.spec = hex"7b22626173656c696e65223a747275657d";
        (uint256 taskId, TaskParams memory t) = _rentAppWith(_datasetOffer(), _poolOffer(), _appOffer(), r, APP_TOTAL);
        assertEq(taskId, 1);
        assertEq(uint256(t.kind), uint256(JobKind.App));
        assertEq(t.app, appId);
        assertEq(t.appOwner, appOwner);
        assertEq(uint256(t.appPrice), APP_PRICE);
        assertEq(t.jobHash, keccak256(r.spec));
        assertEq(address(sr).balance, STAKE + APP_TOTAL);

        _submit(t, taskId, Outcome.Completed);
        assertEq(sr.balances(appOwner), APP_PRICE);
        assertEq(sr.balances(datasetOwner), DATASET_PRICE);
        assertEq(sr.balances(operator), POOL_PRICE);
    }

    function test_RentApp_AttestedFailureReturnsAppPrice() public {
        (uint256 taskId, TaskParams memory t) = _rentApp();
        _submit(t, taskId, Outcome.Refused);
        assertEq(sr.balances(appOwner), 0);
        assertEq(sr.balances(analyst), DATASET_PRICE + APP_PRICE);
        assertEq(sr.balances(operator), POOL_PRICE);
    }

    function test_RentApp_PinnedAppAllowed() public {
        DatasetOffer memory d = _datasetOffer();
        d.app = appId;
        d.allowSql = false;
        (uint256 taskId,) = _rentAppWith(d, _poolOffer(), _appOffer(), _rental(), APP_TOTAL);
        assertEq(taskId, 1);
    }

    function test_RevertWhen_RentAppNotAllowed() public {
        DatasetOffer memory d = _datasetOffer();
        d.allowApps = false;
        _expectRentAppRevert(d, _poolOffer(), _appOffer(), _rental(), APP_TOTAL, abi.encodeWithSelector(Strongroom.AppNotAllowed.selector, appId));
        d.allowApps = true;
        d.app = keccak256("another app");
        _expectRentAppRevert(d, _poolOffer(), _appOffer(), _rental(), APP_TOTAL, abi.encodeWithSelector(Strongroom.AppNotAllowed.selector, appId));
    }

    function test_RevertWhen_RentAppUnknownApp() public {
        AppOffer memory a = _appOffer();
        a.app = keccak256("nope");
        _expectRentAppRevert(_datasetOffer(), _poolOffer(), a, _rental(), APP_TOTAL, abi.encodeWithSelector(AppRegistry.UnknownApp.selector, a.app));
    }

    function test_RevertWhen_RentAppOfferNotSignedByOwner() public {
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        AppOffer memory a = _appOffer();
        bytes memory dSig = _dSig(d);
        bytes memory pSig = _pSig(p);
        bytes memory aSig = _sig(STRANGER_PK, sr.hashAppOffer(a));
        Rental memory r = _rental();
        vm.expectRevert(abi.encodeWithSelector(Offers.InvalidSignature.selector, sr.hashAppOffer(a), appOwner));
        vm.prank(analyst);
        sr.rentApp{value: APP_TOTAL}(d, dSig, p, pSig, a, aSig, r);
    }

    function test_RevertWhen_RentAppOfferVolumeExhausted() public {
        AppOffer memory a = _appOffer();
        a.volume = 0;
        _expectRentAppRevert(
            _datasetOffer(), _poolOffer(), a, _rental(), APP_TOTAL,
            abi.encodeWithSelector(Offers.OfferVolumeExhausted.selector, sr.hashAppOffer(a), uint64(0))
        );
    }

    function test_RevertWhen_RentAppDatasetNotAllowed() public {
        AppOffer memory a = _appOffer();
        a.dataset = keccak256("another dataset");
        _expectRentAppRevert(_datasetOffer(), _poolOffer(), a, _rental(), APP_TOTAL, abi.encodeWithSelector(Strongroom.DatasetNotAllowed.selector, datasetId));
    }

    function test_RevertWhen_RentAppPoolNotAllowed() public {
        AppOffer memory a = _appOffer();
        a.pool = keccak256("another pool");
        _expectRentAppRevert(_datasetOffer(), _poolOffer(), a, _rental(), APP_TOTAL, abi.encodeWithSelector(Strongroom.PoolNotAllowed.selector, poolId));
    }

    function test_RevertWhen_RentAppRequesterNotAllowed() public {
        AppOffer memory a = _appOffer();
        a.requester = stranger;
        _expectRentAppRevert(_datasetOffer(), _poolOffer(), a, _rental(), APP_TOTAL, abi.encodeWithSelector(Strongroom.RequesterNotAllowed.selector, analyst));
    }

    // ------------------------------------------------------------------
    // submitResult
    // ------------------------------------------------------------------

    function test_SubmitResult() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, Outcome.Completed, LOCATION);

        vm.expectEmit(true, true, true, true, address(sr));
        emit DatasetRegistry.PrivacySpent(datasetId, analyst, taskId, EPSILON);
        vm.expectEmit(true, true, false, true, address(sr));
        emit Strongroom.ResultSubmitted(taskId, enclave, DIGEST, LOCATION, Outcome.Completed);
        vm.prank(stranger); // the worker host relays; authority is in the signatures
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, res, Outcome.Completed);

        assertEq(_status(taskId), uint256(TaskStatus.Completed));
        assertEq(sr.taskCommitment(taskId) >> 8, keccak256(abi.encode(t)) >> 8);
        assertEq(sr.balances(datasetOwner), DATASET_PRICE);
        assertEq(sr.balances(operator), POOL_PRICE);
        assertEq(sr.balances(analyst), 0);
        assertEq(_locked(), 0);
        (uint64 spent, uint64 reserved) = sr.privacySpend(datasetId, analyst);
        assertEq(uint256(spent), EPSILON);
        assertEq(uint256(reserved), 0);
        assertEq(address(sr).balance, STAKE + SQL_TOTAL);
    }

    function test_SubmitResult_AtDeadline() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        vm.warp(t.deadline);
        _submit(t, taskId, Outcome.Completed);
        assertEq(_status(taskId), uint256(TaskStatus.Completed));
    }

    function test_SubmitResult_AttestedFailure() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, Outcome.Refused, LOCATION);

        vm.expectEmit(true, true, true, true, address(sr));
        emit DatasetRegistry.PrivacyReleased(datasetId, analyst, taskId, EPSILON);
        vm.expectEmit(true, true, false, true, address(sr));
        emit Strongroom.ResultSubmitted(taskId, enclave, DIGEST, LOCATION, Outcome.Refused);
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, res, Outcome.Refused);

        assertEq(_status(taskId), uint256(TaskStatus.Refused));
        assertEq(sr.balances(operator), POOL_PRICE);
        assertEq(sr.balances(analyst), DATASET_PRICE);
        assertEq(sr.balances(datasetOwner), 0);
        assertEq(_locked(), 0);
        (uint64 spent, uint64 reserved) = sr.privacySpend(datasetId, analyst);
        assertEq(uint256(spent) + reserved, 0);
    }

    function test_SubmitResult_FailedWhileRunningIsPaidAndSpendsTheEpsilon() public {
        // A job that failed on the data may have told something of it by failing: it is settled
        // as a result is, or failing queries would be cheap probes (free ones under DP).
        (uint256 taskId, TaskParams memory t) = _rent();
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, Outcome.Failed, LOCATION);

        vm.expectEmit(true, true, true, true, address(sr));
        emit DatasetRegistry.PrivacySpent(datasetId, analyst, taskId, EPSILON);
        vm.expectEmit(true, true, false, true, address(sr));
        emit Strongroom.ResultSubmitted(taskId, enclave, DIGEST, LOCATION, Outcome.Failed);
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, res, Outcome.Failed);

        assertEq(_status(taskId), uint256(TaskStatus.Failed));
        assertEq(sr.balances(operator), POOL_PRICE);
        assertEq(sr.balances(analyst), 0);
        assertEq(sr.balances(datasetOwner), DATASET_PRICE);
        assertEq(_locked(), 0);
        (uint64 spent, uint64 reserved) = sr.privacySpend(datasetId, analyst);
        assertEq(spent, EPSILON);
        assertEq(reserved, 0);
    }

    function test_SubmitResult_HostFaultPaysNobodyAndGivesEverythingBack() public {
        // The worker relayed a manifest, object, job or policy other than the one rented: the
        // enclave read no data. Neither the pool that relayed it nor an owner whose storage served
        // it earns from the failure, and nobody is slashed: the enclave cannot tell which it was.
        (uint256 taskId, TaskParams memory t) = _rent();
        assertGt(_locked(), 0);
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, Outcome.HostFault, LOCATION);

        vm.expectEmit(true, true, true, true, address(sr));
        emit DatasetRegistry.PrivacyReleased(datasetId, analyst, taskId, EPSILON);
        vm.expectEmit(true, true, false, true, address(sr));
        emit Strongroom.ResultSubmitted(taskId, enclave, DIGEST, LOCATION, Outcome.HostFault);
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, res, Outcome.HostFault);

        assertEq(_status(taskId), uint256(TaskStatus.HostFault));
        assertEq(sr.balances(operator), 0);
        assertEq(sr.balances(datasetOwner), 0);
        assertEq(sr.balances(analyst), DATASET_PRICE + POOL_PRICE);
        assertEq(_locked(), 0);
        (uint64 spent, uint64 reserved) = sr.privacySpend(datasetId, analyst);
        assertEq(uint256(spent) + reserved, 0);
        // Settled once: no refund, and no receipt slashes the pool afterwards.
        vm.warp(t.deadline + sr.RELEASE_CLAIM_WINDOW() + 1);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.TaskNotActive.selector, taskId, TaskStatus.HostFault));
        sr.refund(t, taskId);
    }

    function test_RevertWhen_SubmitOutcomeOutOfRange() public {
        // Outcome has four values; the ABI decoder refuses a fifth before anything is checked.
        (uint256 taskId, TaskParams memory t) = _rent();
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, Outcome.Completed, LOCATION);
        bytes memory data = abi.encodeCall(sr.submitResult, (t, taskId, DIGEST, LOCATION, auth, res, Outcome.Completed));
        // The outcome is the last head word: after the 20 words of the task and 5 others.
        uint256 at = 4 + 32 * (20 + 5);
        assembly ("memory-safe") {
            mstore(add(add(data, 32), at), 4)
        }
        (bool ok, bytes memory ret) = address(sr).call(data);
        assertFalse(ok);
        assertEq(ret.length, 0);
        assertEq(_status(taskId), uint256(TaskStatus.Active));
    }

    function test_SubmitResult_CompactSignatures() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        bytes memory auth = _sig64(OPERATOR_PK, sr.hashAuthorization(taskId, enclave));
        bytes memory res = _sig64(ENCLAVE_PK, sr.hashResult(taskId, DIGEST, Outcome.Completed, KMS_KEY, LOCATION));
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, res, Outcome.Completed);
        assertEq(_status(taskId), uint256(TaskStatus.Completed));
    }

    function test_SubmitResult_PinnedMeasurement() public {
        DatasetOffer memory d = _datasetOffer();
        d.measurement = MEASUREMENT;
        (uint256 taskId, TaskParams memory t) = _rentWith(d, _poolOffer(), _rental(), SQL_TOTAL);
        _submit(t, taskId, Outcome.Completed);
        assertEq(_status(taskId), uint256(TaskStatus.Completed));
    }

    /// A pool run by a contract wallet, its offer signed by the wallet's owner (ERC-1271), rented.
    function _rentFromWalletPool() internal returns (TestWallet wallet, uint256 taskId, TaskParams memory t) {
        wallet = new TestWallet(operator);
        vm.prank(operator);
        bytes32 pool = abi.decode(wallet.exec(address(sr), abi.encodeCall(sr.registerPool, (bytes32(0)))), (bytes32));
        vm.deal(address(this), 10 ether);
        sr.depositStake{value: 10 ether}(pool);
        PoolOffer memory p = _poolOffer();
        p.pool = pool;
        (taskId, t) = _rentWith(_datasetOffer(), p, _rental(), SQL_TOTAL);
        assertEq(t.poolOperator, address(wallet));
    }

    function _presignAuthorization(TestWallet wallet, TaskParams memory t, uint256 taskId, address enclave_) internal {
        vm.prank(operator);
        wallet.exec(address(sr), abi.encodeCall(sr.presignAuthorization, (t, taskId, enclave_)));
    }

    /// A contract-wallet pool assigns the enclave on chain; the result then settles with no
    /// authorization signature.
    function test_SubmitResult_WalletOperatorPresignsTheAuthorization() public {
        (TestWallet wallet, uint256 taskId, TaskParams memory t) = _rentFromWalletPool();
        vm.expectEmit(true, true, false, true, address(sr));
        emit Offers.Presigned(sr.hashAuthorization(taskId, enclave), address(wallet));
        _presignAuthorization(wallet, t, taskId, enclave);
        assertEq(sr.presigner(sr.hashAuthorization(taskId, enclave)), address(wallet));
        bytes memory res = _resultSig(taskId, DIGEST, Outcome.Completed, LOCATION);
        sr.submitResult(t, taskId, DIGEST, LOCATION, "", res, Outcome.Completed);
        assertEq(sr.balances(address(wallet)), POOL_PRICE);
    }

    /// An authorization by ERC-1271 is refused even while the wallet vouches for it: the wallet
    /// could stop vouching once the keys are out, and then no receipt would slash its stake.
    function test_RevertWhen_SubmitResultWalletAuthorizationByErc1271() public {
        (TestWallet wallet, uint256 taskId, TaskParams memory t) = _rentFromWalletPool();
        bytes32 digest = sr.hashAuthorization(taskId, enclave);
        bytes memory auth = _sig(OPERATOR_PK, digest);
        assertEq(wallet.isValidSignature(digest, auth), bytes4(0x1626ba7e)); // the wallet says yes
        bytes memory res = _resultSig(taskId, DIGEST, Outcome.Completed, LOCATION);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.NotAuthorized.selector, taskId, enclave));
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, res, Outcome.Completed);
        // Nor does an empty signature stand in for a presignature nobody made.
        vm.expectRevert(abi.encodeWithSelector(Strongroom.NotAuthorized.selector, taskId, enclave));
        sr.submitResult(t, taskId, DIGEST, LOCATION, "", res, Outcome.Completed);
    }

    /// The presigned authorization is for good: the wallet's pool that got the keys and kept the
    /// result is slashed by the receipt, with nothing the wallet can take back.
    function test_RefundReleased_WalletPoolsPresignedAuthorizationSlashesItsStake() public {
        (TestWallet wallet, uint256 taskId, TaskParams memory t) = _rentFromWalletPool();
        _presignAuthorization(wallet, t, taskId, enclave);
        vm.warp(uint256(t.deadline) + 1);
        sr.refundReleased(t, taskId, enclave, "", _releasedSig(taskId, enclave));
        assertEq(_status(taskId), uint256(TaskStatus.Abandoned));
        assertEq(sr.balances(analyst), POOL_PRICE + t.stake);
        assertEq(sr.balances(datasetOwner), DATASET_PRICE);
        assertEq(sr.balances(address(wallet)), 0);
    }

    /// A receipt with no signature slashes only a pool that presigned, and only for the enclave it
    /// presigned: a key service cannot slash a pool that never asked, or for another enclave.
    function test_RevertWhen_RefundReleasedEmptyAuthorizationNotPresignedForThatEnclave() public {
        (TestWallet wallet, uint256 taskId, TaskParams memory t) = _rentFromWalletPool();
        assertTrue(t.stake > 0);
        vm.warp(uint256(t.deadline) + 1);
        bytes memory receipt = _releasedSig(taskId, enclave);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.NotAuthorized.selector, taskId, enclave));
        sr.refundReleased(t, taskId, enclave, "", receipt);
        // Presigned for one enclave, released to another.
        _presignAuthorization(wallet, t, taskId, stranger);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.NotAuthorized.selector, taskId, enclave));
        sr.refundReleased(t, taskId, enclave, "", receipt);
        // Malformed signatures recover nobody.
        vm.expectRevert(abi.encodeWithSelector(Strongroom.NotAuthorized.selector, taskId, enclave));
        sr.refundReleased(t, taskId, enclave, hex"00", receipt);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.NotAuthorized.selector, taskId, enclave));
        sr.refundReleased(t, taskId, enclave, new bytes(65), receipt);
    }

    /// Only the task's own pool operator presigns its authorization, and only while it is active:
    /// nobody else can assign the task, or overwrite the operator's presignature with their own.
    function test_RevertWhen_PresignAuthorizationNotTheTasksOperator() public {
        (TestWallet wallet, uint256 taskId, TaskParams memory t) = _rentFromWalletPool();
        vm.expectRevert(abi.encodeWithSelector(PoolRegistry.NotPoolOperator.selector, t.pool, stranger));
        vm.prank(stranger);
        sr.presignAuthorization(t, taskId, enclave);
        // The stranger's own pool does not help.
        vm.prank(stranger);
        sr.registerPool(bytes32(uint256(5)));
        vm.expectRevert(abi.encodeWithSelector(PoolRegistry.NotPoolOperator.selector, t.pool, stranger));
        vm.prank(stranger);
        sr.presignAuthorization(t, taskId, stranger);
        // Parameters that are not the task's are refused before anything else.
        TaskParams memory forged = abi.decode(abi.encode(t), (TaskParams)); // a copy
        forged.poolOperator = stranger;
        vm.expectRevert(abi.encodeWithSelector(Strongroom.TaskMismatch.selector, taskId));
        vm.prank(stranger);
        sr.presignAuthorization(forged, taskId, stranger);
        // Once presigned, a stranger's attempt leaves the operator's presignature as it was.
        _presignAuthorization(wallet, t, taskId, enclave);
        vm.expectRevert(abi.encodeWithSelector(PoolRegistry.NotPoolOperator.selector, t.pool, stranger));
        vm.prank(stranger);
        sr.presignAuthorization(t, taskId, enclave);
        assertEq(sr.presigner(sr.hashAuthorization(taskId, enclave)), address(wallet));
        // A settled task takes no more.
        sr.submitResult(t, taskId, DIGEST, LOCATION, "", _resultSig(taskId, DIGEST, Outcome.Completed, LOCATION), Outcome.Completed);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.TaskNotActive.selector, taskId, TaskStatus.Completed));
        vm.prank(operator);
        wallet.exec(address(sr), abi.encodeCall(sr.presignAuthorization, (t, taskId, stranger)));
    }

    function test_RevertWhen_SubmitUnknownTask() public {
        (, TaskParams memory t) = _rent();
        _expectSubmitRevert(t, 2, Outcome.Completed, abi.encodeWithSelector(Strongroom.UnknownTask.selector, 2));
        _expectSubmitRevert(t, 0, Outcome.Completed, abi.encodeWithSelector(Strongroom.UnknownTask.selector, 0));
    }

    function test_RevertWhen_SubmitTaskMismatch() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        t.datasetOwner = stranger; // redirect the payment
        _expectSubmitRevert(t, taskId, Outcome.Completed, abi.encodeWithSelector(Strongroom.TaskMismatch.selector, taskId));
        Rental memory r = _rental();
        r.spec = "SELECT 2";
        (uint256 second, TaskParams memory t2) = _rentWith(_datasetOffer(), _poolOffer(), r, SQL_TOTAL);
        // Another task's (valid) parameters do not fit this id either.
        _expectSubmitRevert(t2, taskId, Outcome.Completed, abi.encodeWithSelector(Strongroom.TaskMismatch.selector, taskId));
        assertTrue(second != taskId);
    }

    function test_RevertWhen_SubmitTwice() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        _submit(t, taskId, Outcome.Completed);
        _expectSubmitRevert(t, taskId, Outcome.Completed, abi.encodeWithSelector(Strongroom.TaskNotActive.selector, taskId, TaskStatus.Completed));
        _expectSubmitRevert(t, taskId, Outcome.Refused, abi.encodeWithSelector(Strongroom.TaskNotActive.selector, taskId, TaskStatus.Completed));
    }

    function test_RevertWhen_SubmitDeadlinePassed() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        vm.warp(uint256(t.deadline) + 1);
        _expectSubmitRevert(t, taskId, Outcome.Completed, abi.encodeWithSelector(Strongroom.DeadlinePassed.selector, taskId, t.deadline));
    }

    function test_RevertWhen_SubmitMalformedEnclaveSignature() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        bytes memory auth = _authSig(taskId, enclave);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.InvalidEnclaveSignature.selector));
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, hex"00", Outcome.Completed);
    }

    function test_RevertWhen_SubmitUnregisteredEnclave() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        bytes memory auth = _authSig(taskId, stranger);
        bytes memory res = _sig(STRANGER_PK, sr.hashResult(taskId, DIGEST, Outcome.Completed, KMS_KEY, LOCATION));
        vm.expectRevert(abi.encodeWithSelector(Strongroom.EnclaveNotActive.selector, stranger));
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, res, Outcome.Completed);
    }

    function test_RevertWhen_SubmitExpiredEnclave() public {
        PoolOffer memory p = _poolOffer();
        p.maxDuration = 60 days;
        (uint256 taskId, TaskParams memory t) = _rentWith(_datasetOffer(), p, _rental(), SQL_TOTAL);
        vm.warp(block.timestamp + 31 days);
        _expectSubmitRevert(t, taskId, Outcome.Completed, abi.encodeWithSelector(Strongroom.EnclaveNotActive.selector, enclave));
    }

    function test_RevertWhen_SubmitRevokedMeasurementOrPlatform() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        sr.setMeasurement(MEASUREMENT, false);
        _expectSubmitRevert(t, taskId, Outcome.Completed, abi.encodeWithSelector(Strongroom.EnclaveNotActive.selector, enclave));
        sr.setMeasurement(MEASUREMENT, true);
        sr.setPlatformKey(platform, PlatformKind.Untrusted);
        _expectSubmitRevert(t, taskId, Outcome.Completed, abi.encodeWithSelector(Strongroom.EnclaveNotActive.selector, enclave));
        sr.setPlatformKey(platform, PlatformKind.Simulated);
        _submit(t, taskId, Outcome.Completed);
    }

    function test_RevertWhen_SubmitMeasurementNotAllowed() public {
        DatasetOffer memory d = _datasetOffer();
        d.measurement = keccak256("audited build");
        (uint256 taskId, TaskParams memory t) = _rentWith(d, _poolOffer(), _rental(), SQL_TOTAL);
        _expectSubmitRevert(t, taskId, Outcome.Completed, abi.encodeWithSelector(Strongroom.MeasurementNotAllowed.selector, enclave, MEASUREMENT));
    }

    function test_RevertWhen_SubmitReleasedByAnotherKeyService() public {
        // The enclave opened a release sealed by another key than the task's key service (one the
        // host made up, to have a task refused): its signature names that key, the contract hashes
        // the task's, so the signature recovers some unregistered address instead.
        (uint256 taskId, TaskParams memory t) = _rent();
        bytes memory auth = _authSig(taskId, enclave);
        bytes32 signed = sr.hashResult(taskId, DIGEST, Outcome.Refused, keccak256("the host's own key"), LOCATION);
        bytes memory res = _sig(ENCLAVE_PK, signed);
        bytes32 settled = sr.hashResult(taskId, DIGEST, Outcome.Refused, KMS_KEY, LOCATION);
        address recovered = ecrecover(settled, uint8(res[64]), _word(res, 0), _word(res, 32));
        vm.expectRevert(abi.encodeWithSelector(Strongroom.EnclaveNotActive.selector, recovered));
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, res, Outcome.Refused);
    }

    function test_RevertWhen_SubmitOutcomeChanged() public {
        // The enclave signed a success; relaying it as a refusal changes the digest, so the
        // signature recovers some unregistered address instead.
        (uint256 taskId, TaskParams memory t) = _rent();
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, Outcome.Completed, LOCATION);
        bytes32 flipped = sr.hashResult(taskId, DIGEST, Outcome.Refused, KMS_KEY, LOCATION);
        address recovered = ecrecover(flipped, uint8(res[64]), _word(res, 0), _word(res, 32));
        vm.expectRevert(abi.encodeWithSelector(Strongroom.EnclaveNotActive.selector, recovered));
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, res, Outcome.Refused);
    }

    function test_RevertWhen_SubmitLocationNotSigned() public {
        // Front-running: copy a pending submission's signatures and relay them with another
        // location. The location is part of the signed Result, so the digest changes and the
        // enclave signature recovers a different, unregistered address: the call reverts with
        // EnclaveNotActive(recovered), not InvalidEnclaveSignature() (that one is only for a
        // signature that recovers nobody).
        (uint256 taskId, TaskParams memory t) = _rent();
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, Outcome.Completed, LOCATION);
        string memory bogus = "s3://attacker/1";
        bytes32 forged = sr.hashResult(taskId, DIGEST, Outcome.Completed, KMS_KEY, bogus);
        address recovered = ecrecover(forged, uint8(res[64]), _word(res, 0), _word(res, 32));
        assertTrue(recovered != enclave && recovered != address(0));
        vm.expectRevert(abi.encodeWithSelector(Strongroom.EnclaveNotActive.selector, recovered));
        vm.prank(stranger);
        sr.submitResult(t, taskId, DIGEST, bogus, auth, res, Outcome.Completed);

        // The genuine submission, with the signed location, still settles the task.
        vm.expectEmit(true, true, false, true, address(sr));
        emit Strongroom.ResultSubmitted(taskId, enclave, DIGEST, LOCATION, Outcome.Completed);
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, res, Outcome.Completed);
        assertEq(_status(taskId), uint256(TaskStatus.Completed));
    }

    function test_RevertWhen_SubmitNotAuthorized() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        bytes memory res = _resultSig(taskId, DIGEST, Outcome.Completed, LOCATION);
        bytes memory err = abi.encodeWithSelector(Strongroom.NotAuthorized.selector, taskId, enclave);

        // Signed by someone else than the operator.
        bytes memory auth = _sig(OWNER_PK, sr.hashAuthorization(taskId, enclave));
        vm.expectRevert(err);
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, res, Outcome.Completed);
        // For another task.
        auth = _authSig(taskId + 1, enclave);
        vm.expectRevert(err);
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, res, Outcome.Completed);
        // Malformed.
        vm.expectRevert(err);
        sr.submitResult(t, taskId, DIGEST, LOCATION, "", res, Outcome.Completed);
    }

    function test_RevertWhen_SubmitAuthorizationForOtherEnclave() public {
        uint256 otherPk = 0x0E2;
        address other = vm.addr(otherPk);
        _registerEnclave(other);
        (uint256 taskId, TaskParams memory t) = _rent();
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _sig(otherPk, sr.hashResult(taskId, DIGEST, Outcome.Completed, KMS_KEY, LOCATION));
        vm.expectRevert(abi.encodeWithSelector(Strongroom.NotAuthorized.selector, taskId, other));
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, res, Outcome.Completed);
    }

    // ------------------------------------------------------------------
    // refund
    // ------------------------------------------------------------------

    function test_RevertWhen_RefundBeforeDeadline() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        vm.expectRevert(abi.encodeWithSelector(Strongroom.DeadlineNotReached.selector, taskId, t.deadline));
        sr.refund(t, taskId);
        vm.warp(t.deadline); // the deadline itself still belongs to the enclave
        vm.expectRevert(abi.encodeWithSelector(Strongroom.DeadlineNotReached.selector, taskId, t.deadline));
        sr.refund(t, taskId);
    }

    /// Until the claim window is over, only a receipt of the release can settle the task.
    function test_RevertWhen_RefundInClaimWindow() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        uint64 until = t.deadline + sr.RELEASE_CLAIM_WINDOW();
        vm.warp(uint256(t.deadline) + 1);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.ClaimWindowOpen.selector, taskId, until));
        sr.refund(t, taskId);
        vm.warp(until);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.ClaimWindowOpen.selector, taskId, until));
        sr.refund(t, taskId);
    }

    function _afterClaimWindow(TaskParams memory t) internal {
        vm.warp(uint256(t.deadline) + sr.RELEASE_CLAIM_WINDOW() + 1);
    }

    /// Keys never shown released: everything back to the analyst, the stake unlocked, not slashed.
    function test_Refund() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        _afterClaimWindow(t);

        vm.expectEmit(true, true, true, true, address(sr));
        emit DatasetRegistry.PrivacyReleased(datasetId, analyst, taskId, EPSILON);
        vm.expectEmit(true, true, false, true, address(sr));
        emit Strongroom.TaskRefunded(taskId, analyst, SQL_TOTAL);
        vm.prank(stranger); // anyone may trigger it; the money goes to the analyst
        sr.refund(t, taskId);

        assertEq(_status(taskId), uint256(TaskStatus.Refunded));
        assertEq(sr.balances(analyst), SQL_TOTAL);
        assertEq(sr.balances(stranger), 0);
        assertEq(sr.balances(operator), 0);
        assertEq(sr.balances(datasetOwner), 0);
        Pool memory p = sr.getPool(poolId);
        assertEq(uint256(p.stake), STAKE);
        assertEq(uint256(p.locked), 0);
        (uint64 spent, uint64 reserved) = sr.privacySpend(datasetId, analyst);
        assertEq(uint256(spent) + reserved, 0);
        assertEq(address(sr).balance, STAKE + SQL_TOTAL);
    }

    function test_Refund_AppTask() public {
        (uint256 taskId, TaskParams memory t) = _rentApp();
        _afterClaimWindow(t);
        sr.refund(t, taskId);
        assertEq(sr.balances(analyst), APP_TOTAL);
        assertEq(sr.balances(appOwner), 0);
    }

    function test_RevertWhen_RefundUnknownTask() public {
        (, TaskParams memory t) = _rent();
        vm.expectRevert(abi.encodeWithSelector(Strongroom.UnknownTask.selector, 42));
        sr.refund(t, 42);
    }

    function test_RevertWhen_RefundTaskMismatch() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        _afterClaimWindow(t);
        t.analyst = stranger;
        vm.expectRevert(abi.encodeWithSelector(Strongroom.TaskMismatch.selector, taskId));
        sr.refund(t, taskId);
        bytes memory receipt = _releasedSig(taskId, enclave);
        bytes memory auth = _authSig(taskId, enclave);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.TaskMismatch.selector, taskId));
        sr.refundReleased(t, taskId, enclave, auth, receipt);
    }

    function test_RevertWhen_RefundTwiceOrSettled() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        _afterClaimWindow(t);
        sr.refund(t, taskId);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.TaskNotActive.selector, taskId, TaskStatus.Refunded));
        sr.refund(t, taskId);
        bytes memory receipt = _releasedSig(taskId, enclave);
        bytes memory auth = _authSig(taskId, enclave);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.TaskNotActive.selector, taskId, TaskStatus.Refunded));
        sr.refundReleased(t, taskId, enclave, auth, receipt);
        _expectSubmitRevert(t, taskId, Outcome.Completed, abi.encodeWithSelector(Strongroom.TaskNotActive.selector, taskId, TaskStatus.Refunded));

        (uint256 second, TaskParams memory t2) = _rent();
        _submit(t2, second, Outcome.Refused);
        _afterClaimWindow(t2);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.TaskNotActive.selector, second, TaskStatus.Refused));
        sr.refund(t2, second);
        receipt = _releasedSig(second, enclave);
        auth = _authSig(second, enclave);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.TaskNotActive.selector, second, TaskStatus.Refused));
        sr.refundReleased(t2, second, enclave, auth, receipt);
    }

    // ------------------------------------------------------------------
    // refundReleased
    // ------------------------------------------------------------------

    /// The pool's enclave had the keys and no result came: the owner is paid, the epsilon spent,
    /// and the analyst takes the pool price back plus the slashed stake.
    function test_RefundReleased() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        bytes memory receipt = _releasedSig(taskId, enclave);
        vm.warp(uint256(t.deadline) + 1); // no need to wait for the claim window

        vm.expectEmit(true, true, true, true, address(sr));
        emit DatasetRegistry.PrivacySpent(datasetId, analyst, taskId, EPSILON);
        vm.expectEmit(true, true, false, true, address(sr));
        emit Strongroom.TaskAbandoned(taskId, enclave, POOL_PRICE + t.stake, t.stake);
        vm.prank(stranger); // anyone may post the receipt
        sr.refundReleased(t, taskId, enclave, _authSig(taskId, enclave), receipt);

        assertEq(t.stake, POOL_PRICE); // the default ratio stakes the whole pool price
        assertEq(_status(taskId), uint256(TaskStatus.Abandoned));
        assertEq(sr.balances(datasetOwner), DATASET_PRICE);
        assertEq(sr.balances(analyst), POOL_PRICE + t.stake);
        assertEq(sr.balances(operator), 0);
        assertEq(sr.balances(stranger), 0);
        Pool memory p = sr.getPool(poolId);
        assertEq(uint256(p.stake), STAKE - t.stake);
        assertEq(uint256(p.locked), 0);
        (uint64 spent, uint64 reserved) = sr.privacySpend(datasetId, analyst);
        assertEq(uint256(spent), EPSILON);
        assertEq(uint256(reserved), 0);
        assertEq(address(sr).balance, STAKE + SQL_TOTAL);
    }

    function test_RefundReleased_AppTaskPaysTheAppOwner() public {
        (uint256 taskId, TaskParams memory t) = _rentApp();
        vm.warp(uint256(t.deadline) + sr.RELEASE_CLAIM_WINDOW() + 1); // still good after the window
        sr.refundReleased(t, taskId, enclave, _authSig(taskId, enclave), _releasedSig(taskId, enclave));
        assertEq(sr.balances(appOwner), APP_PRICE);
        assertEq(sr.balances(datasetOwner), DATASET_PRICE);
        assertEq(sr.balances(analyst), POOL_PRICE + t.stake);
    }

    function test_RevertWhen_RefundReleasedBeforeDeadline() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        bytes memory receipt = _releasedSig(taskId, enclave);
        vm.warp(t.deadline);
        bytes memory auth = _authSig(taskId, enclave);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.DeadlineNotReached.selector, taskId, t.deadline));
        sr.refundReleased(t, taskId, enclave, auth, receipt);
    }

    /// Only the key service registered for the task's `kmsKey` can say it released the keys,
    /// for that task and that enclave.
    function test_RevertWhen_RefundReleasedReceiptNotTheKeyServices() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        (uint256 other,) = _rent();
        vm.warp(uint256(t.deadline) + 1);
        bytes[4] memory receipts = [
            _sig(OWNER_PK, sr.hashReleased(taskId, enclave)), // the owner is not its key service
            _sig(ENCLAVE_PK, sr.hashReleased(taskId, enclave)),
            _releasedSig(other, enclave), // another task's receipt
            _releasedSig(taskId, stranger) // names another enclave
        ];
        bytes memory auth = _authSig(taskId, enclave);
        for (uint256 i = 0; i < receipts.length; i++) {
            vm.expectRevert(abi.encodeWithSelector(Strongroom.InvalidReleaseReceipt.selector, taskId, enclave));
            sr.refundReleased(t, taskId, enclave, auth, receipts[i]);
        }
        vm.expectRevert(abi.encodeWithSelector(Strongroom.InvalidReleaseReceipt.selector, taskId, enclave));
        sr.refundReleased(t, taskId, enclave, auth, "");
        assertEq(_status(taskId), uint256(TaskStatus.Active));
    }

    /// A key service's word alone slashes nobody: the pool must have asked for that enclave.
    function test_RevertWhen_RefundReleasedWithoutThePoolsAuthorization() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        vm.warp(uint256(t.deadline) + 1);
        bytes memory receipt = _releasedSig(taskId, stranger);
        bytes memory forged = _sig(STRANGER_PK, sr.hashAuthorization(taskId, stranger));
        vm.expectRevert(abi.encodeWithSelector(Strongroom.NotAuthorized.selector, taskId, stranger));
        sr.refundReleased(t, taskId, stranger, forged, receipt);
        // The pool authorized `enclave`, not `stranger`.
        bytes memory auth = _authSig(taskId, enclave);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.NotAuthorized.selector, taskId, stranger));
        sr.refundReleased(t, taskId, stranger, auth, receipt);
        assertEq(_status(taskId), uint256(TaskStatus.Active));
        assertEq(uint256(sr.getPool(poolId).stake), STAKE);
    }

    /// A dataset whose key service never registered can have no receipt: its tasks are refunded
    /// as never released.
    function test_RevertWhen_RefundReleasedKeyServiceUnregistered() public {
        bytes32 unregistered = keccak256("unregistered kms");
        vm.prank(datasetOwner);
        bytes32 id = sr.registerDataset(bytes32(uint256(9)), "s3://d", MANIFEST_DIGEST, "http://k", unregistered, POLICY, BUDGET);
        DatasetOffer memory d = _datasetOffer();
        d.dataset = id;
        PoolOffer memory p = _poolOffer();
        p.keyService = bytes32(0);
        (uint256 taskId, TaskParams memory t) = _rentWith(d, p, _rental(), SQL_TOTAL);
        assertEq(t.kmsKey, unregistered);
        vm.warp(uint256(t.deadline) + 1);
        // Whoever signs, the chain knows no signer for this key service.
        bytes memory receipt = _sig(OWNER_PK, sr.hashReleased(taskId, enclave));
        bytes memory auth = _authSig(taskId, enclave);
        vm.expectRevert(abi.encodeWithSelector(Strongroom.InvalidReleaseReceipt.selector, taskId, enclave));
        sr.refundReleased(t, taskId, enclave, auth, receipt);
    }

    // ------------------------------------------------------------------
    // withdraw
    // ------------------------------------------------------------------

    function test_Withdraw() public {
        (uint256 taskId, TaskParams memory t) = _rent();
        _submit(t, taskId, Outcome.Completed);
        vm.expectEmit(true, false, false, true, address(sr));
        emit Strongroom.Withdrawn(datasetOwner, DATASET_PRICE);
        vm.prank(datasetOwner);
        sr.withdraw();
        assertEq(datasetOwner.balance, DATASET_PRICE);
        assertEq(sr.balances(datasetOwner), 0);

        vm.prank(operator);
        sr.withdraw();
        assertEq(operator.balance, POOL_PRICE);
        assertEq(address(sr).balance, STAKE);
    }

    function test_RevertWhen_WithdrawNothing() public {
        vm.expectRevert(abi.encodeWithSelector(Strongroom.NothingToWithdraw.selector));
        vm.prank(stranger);
        sr.withdraw();
    }

    function test_RevertWhen_WithdrawReceiverReverts() public {
        RevertingReceiver receiver = new RevertingReceiver();
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        bytes memory dSig = _dSig(d);
        bytes memory pSig = _pSig(p);
        receiver.rent{value: SQL_TOTAL + 1 ether}(sr, d, dSig, p, pSig, _rental());
        assertEq(sr.balances(address(receiver)), 1 ether);

        vm.expectRevert(abi.encodeWithSelector(Strongroom.WithdrawFailed.selector));
        receiver.withdraw(sr);
        assertEq(sr.balances(address(receiver)), 1 ether);
    }

    function test_Withdraw_ReentryGetsNothing() public {
        ReentrantReceiver receiver = new ReentrantReceiver();
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        bytes memory dSig = _dSig(d);
        bytes memory pSig = _pSig(p);
        receiver.rent{value: SQL_TOTAL + 1 ether}(sr, d, dSig, p, pSig, _rental());

        receiver.withdraw();
        assertTrue(receiver.reentryFailed());
        assertEq(address(receiver).balance, 1 ether);
        assertEq(sr.balances(address(receiver)), 0);
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    function test_UnknownTaskViews() public {
        assertEq(_status(7), uint256(TaskStatus.None));
        assertEq(sr.taskCommitment(7), bytes32(0));
    }

    function _word(bytes memory b, uint256 at) internal pure returns (bytes32 w) {
        assembly {
            w := mload(add(add(b, 0x20), at))
        }
    }
}
