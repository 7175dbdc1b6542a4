// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {PoolRegistry} from "../src/PoolRegistry.sol";
import {Offers} from "../src/Offers.sol";
import {DatasetRegistry} from "../src/DatasetRegistry.sol";
import {AppRegistry} from "../src/AppRegistry.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {Fixture, TestWallet} from "./utils/Fixture.sol";
import {EnclaveRegistry} from "../src/EnclaveRegistry.sol";
import {KeyServiceRegistry} from "../src/KeyServiceRegistry.sol";
import {
    Strongroom,
    Quote,
    Dataset,
    App,
    Pool,
    DatasetOffer,
    PoolOffer,
    AppOffer,
    Outcome,
    PlatformKind,
    Rental,
    TaskParams,
    QUOTE_TYPE_SIMULATED
} from "../src/Strongroom.sol";
import {TaskDigests} from "./utils/TaskDigests.sol";

using TaskDigests for Strongroom;

/// Governance, enclaves, the three registries and offers (digests, presign, cancel).
/// Tasks are in Tasks.t.sol.
contract StrongroomTest is Fixture {
    // ------------------------------------------------------------------
    // Deployment and governance
    // ------------------------------------------------------------------

    function test_Constructor_Defaults() public {
        Strongroom fresh = new Strongroom(false);
        assertEq(fresh.owner(), address(this));
        assertFalse(fresh.acceptSimulatedQuotes());
        assertTrue(sr.acceptSimulatedQuotes());
        assertEq(uint256(fresh.enclaveTtl()), 30 days);
        assertEq(uint256(fresh.unbondingDelay()), 7 days);
        assertEq(uint256(fresh.stakeRatio()), 10_000);
        assertEq(fresh.taskCount(), 0);
    }

    function test_SetPlatformKey() public {
        vm.expectEmit(true, false, false, true, address(sr));
        emit EnclaveRegistry.PlatformKeyTrusted(stranger, PlatformKind.Hardware);
        sr.setPlatformKey(stranger, PlatformKind.Hardware);
        assertEq(uint256(sr.platformKeys(stranger)), uint256(PlatformKind.Hardware));
        sr.setPlatformKey(stranger, PlatformKind.Untrusted);
        assertEq(uint256(sr.platformKeys(stranger)), uint256(PlatformKind.Untrusted));
    }

    function test_SetEnclaveIdentity() public {
        vm.expectEmit(false, false, false, true, address(sr));
        emit EnclaveRegistry.EnclaveIdentitySet(keccak256("other author"), 9, 4);
        sr.setEnclaveIdentity(keccak256("other author"), 9, 4);
        (bytes32 signer, uint16 productId, uint16 minSvn) = sr.enclaveIdentity();
        assertEq(signer, keccak256("other author"));
        assertEq(uint256(productId), 9);
        assertEq(uint256(minSvn), 4);
    }

    function test_SetMeasurement() public {
        bytes32 m = keccak256("other");
        vm.expectEmit(true, false, false, true, address(sr));
        emit EnclaveRegistry.MeasurementTrusted(m, true);
        sr.setMeasurement(m, true);
        assertTrue(sr.trustedMeasurements(m));
        sr.setMeasurement(m, false);
        assertFalse(sr.trustedMeasurements(m));
    }

    function test_SetEnclaveTtl() public {
        vm.expectEmit(false, false, false, true, address(sr));
        emit EnclaveRegistry.EnclaveTtlSet(1 days);
        sr.setEnclaveTtl(1 days);
        assertEq(uint256(sr.enclaveTtl()), 1 days);
        // Only new registrations get the new lifetime.
        _registerEnclave(enclave);
        (, uint64 expiresAt) = sr.enclaves(enclave);
        assertEq(uint256(expiresAt), block.timestamp + 1 days);
    }

    function test_SetUnbondingDelay() public {
        vm.expectEmit(false, false, false, true, address(sr));
        emit PoolRegistry.UnbondingDelaySet(2 days);
        sr.setUnbondingDelay(2 days);
        assertEq(uint256(sr.unbondingDelay()), 2 days);
    }

    function test_SetStakeRatio() public {
        vm.expectEmit(false, false, false, true, address(sr));
        emit PoolRegistry.StakeRatioSet(5_000);
        sr.setStakeRatio(5_000);
        assertEq(uint256(sr.stakeRatio()), 5_000);
    }

    function test_RevertWhen_GovernanceNotOwner() public {
        bytes memory err = abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger);
        vm.startPrank(stranger);
        vm.expectRevert(err);
        sr.setPlatformKey(stranger, PlatformKind.Hardware);
        vm.expectRevert(err);
        sr.setEnclaveIdentity(bytes32(0), 0, 0);
        vm.expectRevert(err);
        sr.setMeasurement(bytes32(uint256(1)), true);
        vm.expectRevert(err);
        sr.setEnclaveTtl(1);
        vm.expectRevert(err);
        sr.setUnbondingDelay(1);
        vm.expectRevert(err);
        sr.setStakeRatio(1);
        vm.stopPrank();
    }

    function test_OwnershipIsTwoStep() public {
        address next = address(0xB0B);
        sr.transferOwnership(next);
        assertEq(sr.owner(), address(this));
        assertEq(sr.pendingOwner(), next);

        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, stranger));
        vm.prank(stranger);
        sr.acceptOwnership();

        vm.prank(next);
        sr.acceptOwnership();
        assertEq(sr.owner(), next);

        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(this)));
        sr.setPlatformKey(stranger, PlatformKind.Hardware);
    }

    // ------------------------------------------------------------------
    // Enclaves
    // ------------------------------------------------------------------

    function test_RegisterEnclave() public {
        address other = vm.addr(0x5EC0);
        Quote memory q = _quote(other);
        bytes memory sig = _sig(PLATFORM_PK, keccak256(abi.encode(q)));

        vm.expectEmit(true, true, false, true, address(sr));
        emit EnclaveRegistry.EnclaveRegistered(other, MEASUREMENT, platform, uint64(block.timestamp + 30 days));
        vm.prank(stranger); // anyone may relay a quote
        assertEq(sr.registerEnclave(q, sig), other);

        (bytes32 measurement, uint64 expiresAt) = sr.enclaves(other);
        assertEq(measurement, MEASUREMENT);
        assertEq(uint256(expiresAt), block.timestamp + 30 days);
        assertTrue(sr.isEnclaveActive(other));
    }

    function test_RegisterEnclave_CompactPlatformSignature() public {
        address other = vm.addr(0x5EC0);
        Quote memory q = _quote(other);
        assertEq(sr.registerEnclave(q, _sig64(PLATFORM_PK, keccak256(abi.encode(q)))), other);
    }

    function test_RegisterEnclave_RefreshExtendsExpiry() public {
        vm.warp(block.timestamp + 29 days);
        _registerEnclave(enclave);
        (, uint64 expiresAt) = sr.enclaves(enclave);
        assertEq(uint256(expiresAt), block.timestamp + 30 days);
        vm.warp(block.timestamp + 29 days);
        assertTrue(sr.isEnclaveActive(enclave));
    }

    function _production() internal returns (Strongroom prod) {
        prod = new Strongroom(false);
        prod.setPlatformKey(platform, PlatformKind.Hardware);
        prod.setMeasurement(MEASUREMENT, true);
        prod.setEnclaveIdentity(AUTHOR, PRODUCT_ID, SVN);
    }

    function test_RegisterEnclave_ProductionAcceptsHardwareQuote() public {
        Strongroom prod = _production();
        Quote memory q = _quote(enclave);
        q.quoteType = 2;
        assertEq(prod.registerEnclave(q, _sig(PLATFORM_PK, keccak256(abi.encode(q)))), enclave);
        assertTrue(prod.isEnclaveActive(enclave));
    }

    function test_RevertWhen_ProductionTrustsASimulatorKey() public {
        Strongroom prod = new Strongroom(false);
        vm.expectRevert(abi.encodeWithSelector(EnclaveRegistry.SimulatedPlatformRefused.selector, platform));
        prod.setPlatformKey(platform, PlatformKind.Simulated);
    }

    function test_RevertWhen_ASimulatorKeySignsAHardwareQuote() public {
        // Whoever holds a simulator's key can sign any quote; calling it hardware does not help.
        Quote memory q = _quote(enclave);
        q.quoteType = 2;
        bytes memory sig = _sig(PLATFORM_PK, keccak256(abi.encode(q)));
        vm.expectRevert(
            abi.encodeWithSelector(EnclaveRegistry.PlatformKindMismatch.selector, platform, 2)
        );
        sr.registerEnclave(q, sig);
        // Nor does a hardware vendor's key vouch for a simulated quote.
        sr.setPlatformKey(platform, PlatformKind.Hardware);
        q = _quote(enclave);
        sig = _sig(PLATFORM_PK, keccak256(abi.encode(q)));
        vm.expectRevert(
            abi.encodeWithSelector(EnclaveRegistry.PlatformKindMismatch.selector, platform, QUOTE_TYPE_SIMULATED)
        );
        sr.registerEnclave(q, sig);
    }

    function test_RevertWhen_RegisterEnclaveStaleQuote() public {
        address other = vm.addr(0x5EC0);
        Quote memory q = _quote(other);
        bytes memory sig = _sig(PLATFORM_PK, keccak256(abi.encode(q)));
        uint64 quoted = uint64(block.number - 1);
        // Kept beyond the EVM's memory of block hashes, the same quote cannot register.
        vm.roll(block.number + 256); // the most blocks a quote may lie behind
        vm.expectRevert(abi.encodeWithSelector(EnclaveRegistry.StaleQuote.selector, quoted, block.number));
        sr.registerEnclave(q, sig);
        // A block hash made up, or a block yet to come, is no fresher.
        q = _quote(other);
        q.reportData[1] = keccak256("not the block's hash");
        sig = _sig(PLATFORM_PK, keccak256(abi.encode(q)));
        vm.expectRevert(abi.encodeWithSelector(EnclaveRegistry.StaleQuote.selector, uint64(block.number - 1), block.number));
        sr.registerEnclave(q, sig);
        q = _quote(other);
        q.reportData[0] = bytes32(bytes20(other)) | bytes32(block.number);
        sig = _sig(PLATFORM_PK, keccak256(abi.encode(q)));
        vm.expectRevert(abi.encodeWithSelector(EnclaveRegistry.StaleQuote.selector, uint64(block.number), block.number));
        sr.registerEnclave(q, sig);
    }

    function test_RevertWhen_RegisterEnclaveOfAnotherAuthorProductOrOlderVersion() public {
        bytes4 untrusted = EnclaveRegistry.UntrustedEnclaveIdentity.selector;
        Quote memory q = _quote(enclave);
        q.signer = keccak256("someone else");
        bytes memory sig = _sig(PLATFORM_PK, keccak256(abi.encode(q)));
        vm.expectRevert(abi.encodeWithSelector(untrusted, q.signer, PRODUCT_ID, SVN));
        sr.registerEnclave(q, sig);

        q = _quote(enclave);
        q.productId = PRODUCT_ID + 1;
        sig = _sig(PLATFORM_PK, keccak256(abi.encode(q)));
        vm.expectRevert(abi.encodeWithSelector(untrusted, AUTHOR, PRODUCT_ID + 1, SVN));
        sr.registerEnclave(q, sig);

        // After a fix ships as version SVN + 1, the builds before it no longer register.
        sr.setEnclaveIdentity(AUTHOR, PRODUCT_ID, SVN + 1);
        q = _quote(enclave);
        sig = _sig(PLATFORM_PK, keccak256(abi.encode(q)));
        vm.expectRevert(abi.encodeWithSelector(untrusted, AUTHOR, PRODUCT_ID, SVN));
        sr.registerEnclave(q, sig);
        q.svn = SVN + 1;
        assertEq(sr.registerEnclave(q, _sig(PLATFORM_PK, keccak256(abi.encode(q)))), enclave);
    }

    function test_RevertWhen_RegisterEnclaveSimulatedInProduction() public {
        Strongroom prod = _production();
        Quote memory q = _quote(enclave);
        bytes memory sig = _sig(PLATFORM_PK, keccak256(abi.encode(q)));
        vm.expectRevert(abi.encodeWithSelector(EnclaveRegistry.SimulatedQuoteRefused.selector));
        prod.registerEnclave(q, sig);
    }

    function test_RevertWhen_RegisterEnclaveMalformedSignature() public {
        Quote memory q = _quote(enclave);
        vm.expectRevert(abi.encodeWithSelector(EnclaveRegistry.InvalidPlatformSignature.selector));
        sr.registerEnclave(q, new bytes(63));
        // Well-formed length, but r = s = 0 recovers nobody.
        vm.expectRevert(abi.encodeWithSelector(EnclaveRegistry.InvalidPlatformSignature.selector));
        sr.registerEnclave(q, abi.encodePacked(bytes32(0), bytes32(0), uint8(27)));
    }

    function test_RevertWhen_RegisterEnclaveUntrustedPlatform() public {
        Quote memory q = _quote(enclave);
        bytes memory sig = _sig(STRANGER_PK, keccak256(abi.encode(q)));
        vm.expectRevert(abi.encodeWithSelector(EnclaveRegistry.UntrustedPlatform.selector, stranger));
        sr.registerEnclave(q, sig);
    }

    function test_RevertWhen_RegisterEnclaveTamperedQuote() public {
        Quote memory q = _quote(enclave);
        bytes memory sig = _sig(PLATFORM_PK, keccak256(abi.encode(q)));
        // Rebinding the quote to another address changes the recovered key.
        q.reportData[0] = bytes32(bytes20(stranger));
        address recovered = ecrecover(keccak256(abi.encode(q)), uint8(sig[64]), bytes32(_slice32(sig, 0)), bytes32(_slice32(sig, 32)));
        assertTrue(recovered != platform);
        vm.expectRevert(abi.encodeWithSelector(EnclaveRegistry.UntrustedPlatform.selector, recovered));
        sr.registerEnclave(q, sig);
    }

    function test_RevertWhen_RegisterEnclaveUntrustedMeasurement() public {
        Quote memory q = _quote(enclave);
        q.measurement = keccak256("evil build");
        bytes memory sig = _sig(PLATFORM_PK, keccak256(abi.encode(q)));
        vm.expectRevert(abi.encodeWithSelector(EnclaveRegistry.UntrustedMeasurement.selector, q.measurement));
        sr.registerEnclave(q, sig);
    }

    function test_RevertWhen_RegisterEnclaveDebug() public {
        Quote memory q = _quote(enclave);
        q.debug = true;
        bytes memory sig = _sig(PLATFORM_PK, keccak256(abi.encode(q)));
        vm.expectRevert(abi.encodeWithSelector(EnclaveRegistry.DebugEnclave.selector));
        sr.registerEnclave(q, sig);
    }

    function test_RevertWhen_RegisterEnclaveZeroAddress() public {
        Quote memory q = _quote(address(0));
        bytes memory sig = _sig(PLATFORM_PK, keccak256(abi.encode(q)));
        vm.expectRevert(abi.encodeWithSelector(EnclaveRegistry.BadReportData.selector));
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
        // Re-trusting restores it (through the slow path: the trust epoch moved on).
        sr.setMeasurement(MEASUREMENT, true);
        assertTrue(sr.isEnclaveActive(enclave));
    }

    function test_EnclaveRetiredWithPlatformKey() public {
        sr.setPlatformKey(platform, PlatformKind.Untrusted);
        assertFalse(sr.isEnclaveActive(enclave));
        sr.setPlatformKey(platform, PlatformKind.Simulated);
        assertTrue(sr.isEnclaveActive(enclave));
    }

    function test_EnclaveSurvivesUnrelatedDistrust() public {
        sr.setMeasurement(keccak256("some other build"), false);
        sr.setPlatformKey(stranger, PlatformKind.Untrusted);
        assertTrue(sr.isEnclaveActive(enclave));
        // A registration after the distrust is on the fast path again.
        _registerEnclave(enclave);
        assertTrue(sr.isEnclaveActive(enclave));
    }

    function test_UnregisteredEnclaveInactive() public {
        (bytes32 measurement, uint64 expiresAt) = sr.enclaves(stranger);
        assertEq(measurement, bytes32(0));
        assertEq(uint256(expiresAt), 0);
        assertFalse(sr.isEnclaveActive(stranger));
    }

    // ------------------------------------------------------------------
    // Datasets
    // ------------------------------------------------------------------

    function test_RegisterDataset() public {
        bytes32 salt = keccak256("second");
        bytes32 expectedId = keccak256(abi.encode(datasetOwner, salt));
        assertEq(sr.datasetId(datasetOwner, salt), expectedId);

        vm.expectEmit(true, true, false, true, address(sr));
        emit DatasetRegistry.DatasetRegistered(
            expectedId, datasetOwner, "s3://x", keccak256("sum"), "http://kms2", keccak256("k"), keccak256("pol"), 5
        );
        vm.prank(datasetOwner);
        bytes32 id = sr.registerDataset(salt, "s3://x", keccak256("sum"), "http://kms2", keccak256("k"), keccak256("pol"), 5);
        assertEq(id, expectedId);

        Dataset memory d = sr.getDataset(id);
        assertEq(d.owner, datasetOwner);
        assertTrue(d.active);
        assertEq(uint256(d.version), 1);
        assertEq(uint256(d.privacyBudget), 5);
        assertEq(d.manifestDigest, keccak256("sum"));
        assertEq(d.kmsKey, keccak256("k"));
        assertEq(d.policyHash, keccak256("pol"));
        assertEq(d.uri, "s3://x");
        assertEq(d.kmsUrl, "http://kms2");
    }

    function test_RegisterDataset_SameSaltOtherOwner() public {
        vm.prank(stranger);
        bytes32 id = sr.registerDataset(DATASET_SALT, "u", bytes32(0), "k", bytes32(0), bytes32(0), 0);
        assertTrue(id != datasetId);
        assertEq(sr.getDataset(id).owner, stranger);
    }

    function test_GetDatasetUnknownIsEmpty() public {
        Dataset memory d = sr.getDataset(keccak256("nope"));
        assertEq(d.owner, address(0));
        assertEq(uint256(d.version), 0);
    }

    function test_RevertWhen_RegisterDatasetTwice() public {
        vm.expectRevert(abi.encodeWithSelector(DatasetRegistry.DatasetExists.selector, datasetId));
        vm.prank(datasetOwner);
        sr.registerDataset(DATASET_SALT, "other", bytes32(0), "k", bytes32(0), bytes32(0), 0);
    }

    function test_UpdateDataset() public {
        vm.expectEmit(true, false, false, true, address(sr));
        emit DatasetRegistry.DatasetUpdated(datasetId, 2, "s3://v2", keccak256("c2"), "http://kms/v2", keccak256("k2"), keccak256("p2"));
        vm.prank(datasetOwner);
        sr.updateDataset(datasetId, "s3://v2", keccak256("c2"), "http://kms/v2", keccak256("k2"), keccak256("p2"));

        Dataset memory d = sr.getDataset(datasetId);
        assertEq(uint256(d.version), 2);
        assertEq(d.uri, "s3://v2");
        assertEq(d.manifestDigest, keccak256("c2"));
        assertEq(d.kmsUrl, "http://kms/v2");
        assertEq(d.kmsKey, keccak256("k2"));
        assertEq(d.policyHash, keccak256("p2"));
        // Untouched by an update.
        assertEq(d.owner, datasetOwner);
        assertTrue(d.active);
        assertEq(uint256(d.privacyBudget), BUDGET);
    }

    function test_RevertWhen_UpdateDatasetNotOwner() public {
        vm.expectRevert(abi.encodeWithSelector(DatasetRegistry.NotDatasetOwner.selector, datasetId, stranger));
        vm.prank(stranger);
        sr.updateDataset(datasetId, "x", bytes32(0), "x", bytes32(0), bytes32(0));
    }

    function test_RevertWhen_UpdateUnknownDataset() public {
        bytes32 id = keccak256("nope");
        vm.expectRevert(abi.encodeWithSelector(DatasetRegistry.UnknownDataset.selector, id));
        vm.prank(datasetOwner);
        sr.updateDataset(id, "x", bytes32(0), "x", bytes32(0), bytes32(0));
    }

    function test_TransferDataset() public {
        vm.expectEmit(true, true, true, true, address(sr));
        emit DatasetRegistry.DatasetTransferred(datasetId, datasetOwner, stranger);
        vm.prank(datasetOwner);
        sr.transferDataset(datasetId, stranger);
        assertEq(sr.getDataset(datasetId).owner, stranger);

        vm.expectRevert(abi.encodeWithSelector(DatasetRegistry.NotDatasetOwner.selector, datasetId, datasetOwner));
        vm.prank(datasetOwner);
        sr.setDatasetActive(datasetId, false);

        vm.prank(stranger);
        sr.setDatasetActive(datasetId, false);
        assertFalse(sr.getDataset(datasetId).active);
    }

    function test_TransferDatasetToZeroRenounces() public {
        vm.prank(datasetOwner);
        sr.transferDataset(datasetId, address(0));
        // The id stays taken: the old owner cannot re-register it with a fresh history.
        vm.expectRevert(abi.encodeWithSelector(DatasetRegistry.DatasetExists.selector, datasetId));
        vm.prank(datasetOwner);
        sr.registerDataset(DATASET_SALT, "u", bytes32(0), "k", bytes32(0), bytes32(0), 0);
        // And no offer can be accepted for it any more.
        DatasetOffer memory d = _datasetOffer();
        bytes memory dSig = _dSig(d);
        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _pSig(p);
        Rental memory r = _rental();
        vm.expectRevert(abi.encodeWithSelector(Offers.InvalidSignature.selector, sr.hashDatasetOffer(d), address(0)));
        vm.prank(analyst);
        sr.rent{value: 2 ether}(d, dSig, p, pSig, r);
    }

    function test_RevertWhen_TransferDatasetNotOwner() public {
        vm.expectRevert(abi.encodeWithSelector(DatasetRegistry.NotDatasetOwner.selector, datasetId, stranger));
        vm.prank(stranger);
        sr.transferDataset(datasetId, stranger);
    }

    function test_SetDatasetActive() public {
        vm.expectEmit(true, false, false, true, address(sr));
        emit DatasetRegistry.DatasetActiveSet(datasetId, false);
        vm.prank(datasetOwner);
        sr.setDatasetActive(datasetId, false);
        assertFalse(sr.getDataset(datasetId).active);
        vm.prank(datasetOwner);
        sr.setDatasetActive(datasetId, true);
        assertTrue(sr.getDataset(datasetId).active);
    }

    function test_SetPrivacyBudget() public {
        vm.expectEmit(true, false, false, true, address(sr));
        emit DatasetRegistry.PrivacyBudgetSet(datasetId, BUDGET + 1);
        vm.prank(datasetOwner);
        sr.setPrivacyBudget(datasetId, BUDGET + 1);
        assertEq(uint256(sr.getDataset(datasetId).privacyBudget), BUDGET + 1);
        // Setting the same value is not a decrease.
        vm.prank(datasetOwner);
        sr.setPrivacyBudget(datasetId, BUDGET + 1);
    }

    function test_RevertWhen_PrivacyBudgetDecreased() public {
        vm.expectRevert(abi.encodeWithSelector(DatasetRegistry.BudgetDecrease.selector, BUDGET, BUDGET - 1));
        vm.prank(datasetOwner);
        sr.setPrivacyBudget(datasetId, BUDGET - 1);
    }

    function test_RevertWhen_SetPrivacyBudgetNotOwner() public {
        vm.expectRevert(abi.encodeWithSelector(DatasetRegistry.NotDatasetOwner.selector, datasetId, stranger));
        vm.prank(stranger);
        sr.setPrivacyBudget(datasetId, BUDGET + 1);
    }

    function test_PrivacySpendUnknownIsZero() public {
        (uint64 spent, uint64 reserved) = sr.privacySpend(datasetId, analyst);
        assertEq(uint256(spent), 0);
        assertEq(uint256(reserved), 0);
    }

    // ------------------------------------------------------------------
    // Apps
    // ------------------------------------------------------------------

    function test_RegisterApp() public {
        bytes32 salt = keccak256("app2");
        bytes32 expectedId = keccak256(abi.encode(stranger, salt));
        assertEq(sr.appId(stranger, salt), expectedId);

        vm.expectEmit(true, true, false, true, address(sr));
        emit AppRegistry.AppRegistered(expectedId, stranger, keccak256("code"), "oci://x");
        vm.prank(stranger);
        assertEq(sr.registerApp(salt, keccak256("code"), "oci://x"), expectedId);

        App memory a = sr.getApp(expectedId);
        assertEq(a.owner, stranger);
        assertEq(a.codeHash, keccak256("code"));
        assertEq(a.uri, "oci://x");
        assertEq(sr.getApp(keccak256("nope")).owner, address(0));
    }

    function test_RevertWhen_RegisterAppTwice() public {
        vm.expectRevert(abi.encodeWithSelector(AppRegistry.AppExists.selector, appId));
        vm.prank(appOwner);
        sr.registerApp(APP_SALT, bytes32(0), "");
    }

    function test_TransferApp() public {
        vm.expectEmit(true, true, true, true, address(sr));
        emit AppRegistry.AppTransferred(appId, appOwner, stranger);
        vm.prank(appOwner);
        sr.transferApp(appId, stranger);
        assertEq(sr.getApp(appId).owner, stranger);

        vm.expectRevert(abi.encodeWithSelector(AppRegistry.NotAppOwner.selector, appId, appOwner));
        vm.prank(appOwner);
        sr.transferApp(appId, appOwner);

        // Renouncing keeps the id taken.
        vm.prank(stranger);
        sr.transferApp(appId, address(0));
        vm.expectRevert(abi.encodeWithSelector(AppRegistry.AppExists.selector, appId));
        vm.prank(appOwner);
        sr.registerApp(APP_SALT, bytes32(0), "");
    }

    function test_RevertWhen_TransferUnknownApp() public {
        bytes32 id = keccak256("nope");
        vm.expectRevert(abi.encodeWithSelector(AppRegistry.UnknownApp.selector, id));
        sr.transferApp(id, stranger);
    }

    // ------------------------------------------------------------------
    // Pools and stake
    // ------------------------------------------------------------------

    function test_RegisterPool() public {
        bytes32 salt = keccak256("pool2");
        bytes32 expectedId = keccak256(abi.encode(operator, salt));
        assertEq(sr.poolId(operator, salt), expectedId);

        vm.expectEmit(true, true, false, true, address(sr));
        emit PoolRegistry.PoolRegistered(expectedId, operator);
        vm.prank(operator);
        assertEq(sr.registerPool(salt), expectedId);
        assertEq(sr.poolOperator(expectedId), operator);
        assertEq(sr.poolOperator(keccak256("nope")), address(0));

        Pool memory p = sr.getPool(expectedId);
        assertEq(p.operator, operator);
        assertEq(uint256(p.stake), 0);
    }

    function test_RevertWhen_RegisterPoolTwice() public {
        vm.expectRevert(abi.encodeWithSelector(PoolRegistry.PoolExists.selector, poolId));
        vm.prank(operator);
        sr.registerPool(POOL_SALT);
    }

    function test_DepositStake_Anyone() public {
        vm.deal(stranger, 3 ether);
        vm.expectEmit(true, true, false, true, address(sr));
        emit PoolRegistry.StakeDeposited(poolId, stranger, 3 ether);
        vm.prank(stranger);
        sr.depositStake{value: 3 ether}(poolId);

        Pool memory p = sr.getPool(poolId);
        assertEq(uint256(p.stake), STAKE + 3 ether);
        assertEq(uint256(p.locked), 0);
        assertEq(address(sr).balance, STAKE + 3 ether);
    }

    function test_RevertWhen_DepositStakeUnknownPool() public {
        bytes32 id = keccak256("nope");
        vm.expectRevert(abi.encodeWithSelector(PoolRegistry.UnknownPool.selector, id));
        sr.depositStake{value: 1}(id);
    }

    function test_RequestUnstake() public {
        uint64 at = uint64(block.timestamp + 7 days);
        vm.expectEmit(true, false, false, true, address(sr));
        emit PoolRegistry.UnstakeRequested(poolId, 10 ether, at);
        vm.prank(operator);
        sr.requestUnstake(poolId, 10 ether);

        Pool memory p = sr.getPool(poolId);
        assertEq(uint256(p.stake), STAKE - 10 ether);
        assertEq(uint256(p.unbonding), 10 ether);
        assertEq(uint256(p.unbondingAt), at);

        // A second request adds to the amount and restarts the delay.
        vm.warp(block.timestamp + 3 days);
        vm.prank(operator);
        sr.requestUnstake(poolId, 5 ether);
        p = sr.getPool(poolId);
        assertEq(uint256(p.stake), STAKE - 15 ether);
        assertEq(uint256(p.unbonding), 15 ether);
        assertEq(uint256(p.unbondingAt), block.timestamp + 7 days);
    }

    function test_RevertWhen_RequestUnstakeNotOperator() public {
        vm.expectRevert(abi.encodeWithSelector(PoolRegistry.NotPoolOperator.selector, poolId, stranger));
        vm.prank(stranger);
        sr.requestUnstake(poolId, 1);
    }

    function test_RevertWhen_RequestUnstakeUnknownPool() public {
        bytes32 id = keccak256("nope");
        vm.expectRevert(abi.encodeWithSelector(PoolRegistry.UnknownPool.selector, id));
        vm.prank(operator);
        sr.requestUnstake(id, 1);
    }

    function test_RevertWhen_RequestUnstakeAboveFree() public {
        // A task locks POOL_PRICE of the stake; only the rest is free.
        _rent();
        uint128 free = STAKE - POOL_PRICE;
        vm.expectRevert(abi.encodeWithSelector(PoolRegistry.InsufficientStake.selector, poolId, free + 1, free));
        vm.prank(operator);
        sr.requestUnstake(poolId, free + 1);
        vm.prank(operator);
        sr.requestUnstake(poolId, free);
    }

    function test_WithdrawUnbonded() public {
        vm.prank(operator);
        sr.requestUnstake(poolId, 10 ether);
        (, uint64 at) = (0, sr.getPool(poolId).unbondingAt);

        vm.expectRevert(abi.encodeWithSelector(PoolRegistry.UnbondingNotOver.selector, poolId, at));
        vm.prank(operator);
        sr.withdrawUnbonded(poolId);

        vm.warp(at);
        vm.expectEmit(true, false, false, true, address(sr));
        emit PoolRegistry.StakeWithdrawn(poolId, 10 ether);
        vm.prank(operator);
        sr.withdrawUnbonded(poolId);

        assertEq(sr.balances(operator), 10 ether);
        Pool memory p = sr.getPool(poolId);
        assertEq(uint256(p.unbonding), 0);
        assertEq(uint256(p.unbondingAt), 0);
        assertEq(uint256(p.stake), STAKE - 10 ether);

        vm.prank(operator);
        sr.withdraw();
        assertEq(operator.balance, 10 ether);
    }

    function test_RevertWhen_WithdrawUnbondedNothing() public {
        vm.expectRevert(abi.encodeWithSelector(PoolRegistry.NothingUnbonding.selector, poolId));
        vm.prank(operator);
        sr.withdrawUnbonded(poolId);
    }

    function test_RevertWhen_WithdrawUnbondedNotOperator() public {
        vm.expectRevert(abi.encodeWithSelector(PoolRegistry.NotPoolOperator.selector, poolId, stranger));
        vm.prank(stranger);
        sr.withdrawUnbonded(poolId);
    }

    // ------------------------------------------------------------------
    // EIP-712 digests (must match what the Rust side signs)
    // ------------------------------------------------------------------

    function _domain() internal view returns (bytes32) {
        return keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("Strongroom"),
                keccak256("2"),
                block.chainid,
                address(sr)
            )
        );
    }

    function _typed(bytes32 structHash) internal view returns (bytes32) {
        return keccak256(abi.encodePacked("\x19\x01", _domain(), structHash));
    }

    function test_DomainSeparator() public {
        assertEq(sr.domainSeparator(), _domain());
    }

    // ------------------------------------------------------------------
    // Key services
    // ------------------------------------------------------------------

    /// Anyone may post a key service's registration; the signer is whoever signed it.
    function test_RegisterKeyService() public {
        bytes32 key = keccak256("second kms");
        bytes memory sig = _sig(STRANGER_PK, sr.hashKeyService(key));
        vm.expectEmit(true, true, false, false, address(sr));
        emit KeyServiceRegistry.KeyServiceRegistered(key, stranger);
        vm.prank(analyst);
        sr.registerKeyService(key, sig);
        assertEq(sr.keyServiceSigner(key), stranger);
        assertEq(sr.keyServiceSigner(KMS_KEY), keyService); // the fixture's
        assertEq(sr.keyServiceSigner(keccak256("nobody")), address(0));
    }

    /// A sealing key's signer is set once: a later registration, even by the same signer or a
    /// squatter, changes nothing.
    function test_RevertWhen_RegisterKeyServiceTwice() public {
        bytes memory again = _sig(KMS_PK, sr.hashKeyService(KMS_KEY));
        vm.expectRevert(abi.encodeWithSelector(KeyServiceRegistry.KeyServiceExists.selector, KMS_KEY, keyService));
        sr.registerKeyService(KMS_KEY, again);
        bytes memory squat = _sig(STRANGER_PK, sr.hashKeyService(KMS_KEY));
        vm.expectRevert(abi.encodeWithSelector(KeyServiceRegistry.KeyServiceExists.selector, KMS_KEY, keyService));
        sr.registerKeyService(KMS_KEY, squat);
    }

    function test_RevertWhen_RegisterKeyServiceBadSignature() public {
        bytes32 key = keccak256("second kms");
        vm.expectRevert(abi.encodeWithSelector(KeyServiceRegistry.InvalidKeyServiceSignature.selector, key));
        sr.registerKeyService(key, "");
        vm.expectRevert(abi.encodeWithSelector(KeyServiceRegistry.InvalidKeyServiceSignature.selector, key));
        sr.registerKeyService(key, new bytes(65));
    }

    function test_HashKeyService() public {
        assertEq(
            sr.hashKeyService(KMS_KEY),
            _typed(keccak256(abi.encode(keccak256("KeyService(bytes32 sealingKey)"), KMS_KEY)))
        );
    }

    function test_HashDatasetOffer() public {
        DatasetOffer memory d = _datasetOffer();
        d.requester = stranger;
        d.requesterRoot = keccak256("root");
        d.allowApps = false;
        d.app = appId;
        d.pool = poolId;
        d.measurement = MEASUREMENT;
        bytes32 typehash = keccak256(
            "DatasetOffer(bytes32 dataset,uint256 price,uint64 volume,uint64 validFrom,uint64 validUntil,address requester,bytes32 requesterRoot,bool allowSql,bool allowApps,bytes32 app,bytes32 pool,bytes32 measurement,bytes32 policyHash,uint64 maxEpsilon,bytes32 salt)"
        );
        bytes memory head = abi.encode(
            typehash, d.dataset, d.price, d.volume, d.validFrom, d.validUntil, d.requester, d.requesterRoot, d.allowSql
        );
        bytes memory tail = abi.encode(d.allowApps, d.app, d.pool, d.measurement, d.policyHash, d.maxEpsilon, d.salt);
        assertEq(sr.hashDatasetOffer(d), _typed(keccak256(bytes.concat(head, tail))));
    }

    function test_HashPoolOffer() public {
        PoolOffer memory p = _poolOffer();
        bytes32 typehash =
            keccak256(
            "PoolOffer(bytes32 pool,uint256 price,uint64 volume,uint64 maxDuration,uint64 validUntil,bytes32 keyService,bytes32 salt)"
        );
        assertEq(
            sr.hashPoolOffer(p),
            _typed(
                keccak256(
                    abi.encode(typehash, p.pool, p.price, p.volume, p.maxDuration, p.validUntil, p.keyService, p.salt)
                )
            )
        );
    }

    function test_HashAppOffer() public {
        AppOffer memory a = _appOffer();
        a.dataset = datasetId;
        a.pool = poolId;
        a.requester = analyst;
        bytes32 typehash = keccak256(
            "AppOffer(bytes32 app,uint256 price,uint64 volume,bytes32 dataset,bytes32 pool,address requester,bytes32 salt)"
        );
        assertEq(
            sr.hashAppOffer(a),
            _typed(keccak256(abi.encode(typehash, a.app, a.price, a.volume, a.dataset, a.pool, a.requester, a.salt)))
        );
    }

    // ------------------------------------------------------------------
    // Presign and cancel
    // ------------------------------------------------------------------

    function test_PresignedOffersNeedNoSignature() public {
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        AppOffer memory a = _appOffer();
        bytes32 dHash = sr.hashDatasetOffer(d);
        bytes32 pHash = sr.hashPoolOffer(p);
        bytes32 aHash = sr.hashAppOffer(a);
        assertEq(sr.presigner(dHash), address(0));

        vm.expectEmit(true, true, false, true, address(sr));
        emit Offers.Presigned(dHash, datasetOwner);
        vm.prank(datasetOwner);
        sr.presignDatasetOffer(d);
        vm.expectEmit(true, true, false, true, address(sr));
        emit Offers.Presigned(pHash, operator);
        vm.prank(operator);
        sr.presignPoolOffer(p);
        vm.expectEmit(true, true, false, true, address(sr));
        emit Offers.Presigned(aHash, appOwner);
        vm.prank(appOwner);
        sr.presignAppOffer(a);
        assertEq(sr.presigner(dHash), datasetOwner);
        assertEq(sr.presigner(pHash), operator);
        assertEq(sr.presigner(aHash), appOwner);

        vm.prank(analyst);
        uint256 taskId = sr.rentApp{value: DATASET_PRICE + POOL_PRICE + APP_PRICE}(d, "", p, "", a, "", _rental());
        assertEq(taskId, 1);
        assertEq(uint256(sr.offerUsed(dHash)), 1);
        assertEq(uint256(sr.offerUsed(pHash)), 1);
        assertEq(uint256(sr.offerUsed(aHash)), 1);
    }

    function test_RevertWhen_EmptySignatureNotPresigned() public {
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _pSig(p);
        Rental memory r = _rental();
        bytes32 dHash = sr.hashDatasetOffer(d);
        vm.expectRevert(abi.encodeWithSelector(Offers.InvalidSignature.selector, dHash, datasetOwner));
        vm.prank(analyst);
        sr.rent{value: 2 ether}(d, "", p, pSig, r);
    }

    function test_PresignLapsesWithTransfer() public {
        DatasetOffer memory d = _datasetOffer();
        vm.prank(datasetOwner);
        sr.presignDatasetOffer(d);
        vm.prank(datasetOwner);
        sr.transferDataset(datasetId, stranger);

        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _pSig(p);
        Rental memory r = _rental();
        bytes32 dHash = sr.hashDatasetOffer(d);
        vm.expectRevert(abi.encodeWithSelector(Offers.InvalidSignature.selector, dHash, stranger));
        vm.prank(analyst);
        sr.rent{value: 2 ether}(d, "", p, pSig, r);
    }

    function test_RevertWhen_PresignByOthers() public {
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        AppOffer memory a = _appOffer();
        vm.startPrank(stranger);
        vm.expectRevert(abi.encodeWithSelector(DatasetRegistry.NotDatasetOwner.selector, datasetId, stranger));
        sr.presignDatasetOffer(d);
        vm.expectRevert(abi.encodeWithSelector(PoolRegistry.NotPoolOperator.selector, poolId, stranger));
        sr.presignPoolOffer(p);
        vm.expectRevert(abi.encodeWithSelector(AppRegistry.NotAppOwner.selector, appId, stranger));
        sr.presignAppOffer(a);
        vm.expectRevert(abi.encodeWithSelector(DatasetRegistry.NotDatasetOwner.selector, datasetId, stranger));
        sr.cancelDatasetOffer(d);
        vm.expectRevert(abi.encodeWithSelector(PoolRegistry.NotPoolOperator.selector, poolId, stranger));
        sr.cancelPoolOffer(p);
        vm.expectRevert(abi.encodeWithSelector(AppRegistry.NotAppOwner.selector, appId, stranger));
        sr.cancelAppOffer(a);
        vm.stopPrank();
    }

    function test_RevertWhen_PresignUnknownParty() public {
        DatasetOffer memory d = _datasetOffer();
        d.dataset = keccak256("nope");
        PoolOffer memory p = _poolOffer();
        p.pool = keccak256("nope");
        AppOffer memory a = _appOffer();
        a.app = keccak256("nope");
        vm.expectRevert(abi.encodeWithSelector(DatasetRegistry.UnknownDataset.selector, d.dataset));
        sr.presignDatasetOffer(d);
        vm.expectRevert(abi.encodeWithSelector(PoolRegistry.UnknownPool.selector, p.pool));
        sr.presignPoolOffer(p);
        vm.expectRevert(abi.encodeWithSelector(AppRegistry.UnknownApp.selector, a.app));
        sr.presignAppOffer(a);
    }

    function test_CancelOffers() public {
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        AppOffer memory a = _appOffer();
        bytes32 dHash = sr.hashDatasetOffer(d);
        bytes32 pHash = sr.hashPoolOffer(p);
        bytes32 aHash = sr.hashAppOffer(a);

        vm.expectEmit(true, true, false, true, address(sr));
        emit Offers.OfferCancelled(dHash, datasetOwner);
        vm.prank(datasetOwner);
        sr.cancelDatasetOffer(d);
        vm.expectEmit(true, true, false, true, address(sr));
        emit Offers.OfferCancelled(pHash, operator);
        vm.prank(operator);
        sr.cancelPoolOffer(p);
        vm.expectEmit(true, true, false, true, address(sr));
        emit Offers.OfferCancelled(aHash, appOwner);
        vm.prank(appOwner);
        sr.cancelAppOffer(a);

        assertEq(uint256(sr.offerUsed(dHash)), type(uint64).max);
        assertEq(uint256(sr.offerUsed(pHash)), type(uint64).max);
        assertEq(uint256(sr.offerUsed(aHash)), type(uint64).max);
    }

    function test_RevertWhen_RentCancelledOffer() public {
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        bytes memory dSig = _dSig(d);
        bytes memory pSig = _pSig(p);
        Rental memory r = _rental();
        vm.prank(datasetOwner);
        sr.cancelDatasetOffer(d);

        vm.expectRevert(abi.encodeWithSelector(Offers.OfferVolumeExhausted.selector, sr.hashDatasetOffer(d), d.volume));
        vm.prank(analyst);
        sr.rent{value: 2 ether}(d, dSig, p, pSig, r);
    }

    function test_RevertWhen_CancelTwiceOrPresignCancelled() public {
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        AppOffer memory a = _appOffer();
        bytes32 dHash = sr.hashDatasetOffer(d);
        bytes32 pHash = sr.hashPoolOffer(p);
        bytes32 aHash = sr.hashAppOffer(a);

        vm.startPrank(datasetOwner);
        sr.cancelDatasetOffer(d);
        vm.expectRevert(abi.encodeWithSelector(Offers.OfferAlreadyCancelled.selector, dHash));
        sr.cancelDatasetOffer(d);
        vm.expectRevert(abi.encodeWithSelector(Offers.OfferAlreadyCancelled.selector, dHash));
        sr.presignDatasetOffer(d);
        vm.stopPrank();

        vm.startPrank(operator);
        sr.cancelPoolOffer(p);
        vm.expectRevert(abi.encodeWithSelector(Offers.OfferAlreadyCancelled.selector, pHash));
        sr.cancelPoolOffer(p);
        vm.stopPrank();

        vm.startPrank(appOwner);
        sr.cancelAppOffer(a);
        vm.expectRevert(abi.encodeWithSelector(Offers.OfferAlreadyCancelled.selector, aHash));
        sr.presignAppOffer(a);
        vm.stopPrank();
    }

    function test_ContractWalletOwnerPresigns() public {
        // A wallet without any off-chain key material of its own presigns on chain.
        TestWallet wallet = new TestWallet(stranger);
        vm.prank(stranger);
        bytes memory ret = wallet.exec(
            address(sr),
            abi.encodeCall(sr.registerDataset, (bytes32(0), "u", MANIFEST_DIGEST, "k", KMS_KEY, POLICY, BUDGET))
        );
        bytes32 id = abi.decode(ret, (bytes32));
        DatasetOffer memory d = _datasetOffer();
        d.dataset = id;
        vm.prank(stranger);
        wallet.exec(address(sr), abi.encodeCall(sr.presignDatasetOffer, (d)));

        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _pSig(p);
        vm.prank(analyst);
        uint256 taskId = sr.rent{value: DATASET_PRICE + POOL_PRICE}(d, "", p, pSig, _rental());
        assertEq(taskId, 1);
    }

    function _slice32(bytes memory b, uint256 at) internal pure returns (bytes32 w) {
        assembly {
            w := mload(add(add(b, 0x20), at))
        }
    }
}
