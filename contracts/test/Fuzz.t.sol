// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Fixture, TestWallet} from "./utils/Fixture.sol";
import {VmExt} from "./utils/VmExt.sol";
import {DatasetRegistry} from "../src/DatasetRegistry.sol";
import {Offers} from "../src/Offers.sol";
import {
    Strongroom, DatasetOffer, PoolOffer, AppOffer, Outcome, Rental, TaskParams, TaskStatus
} from "../src/Strongroom.sol";

/// Fuzzing of offer matching and restrictions.
contract FuzzTest is Fixture {
    uint256 internal constant SQL_TOTAL = DATASET_PRICE + POOL_PRICE;
    uint256 internal constant APP_TOTAL = DATASET_PRICE + POOL_PRICE + APP_PRICE;
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    /// Rents as `from` with pre-made signatures; returns success and the revert data.
    function _tryRent(
        address from,
        DatasetOffer memory d,
        bytes memory dSig,
        PoolOffer memory p,
        bytes memory pSig,
        Rental memory r,
        uint256 value
    ) internal returns (bool ok, bytes memory ret) {
        vm.deal(from, from.balance + value);
        vm.prank(from);
        (ok, ret) = address(sr).call{value: value}(abi.encodeCall(sr.rent, (d, dSig, p, pSig, r)));
    }

    function _tryRentDefault(address from, DatasetOffer memory d, Rental memory r)
        internal
        returns (bool ok, bytes memory ret)
    {
        PoolOffer memory p = _poolOffer();
        return _tryRent(from, d, _dSig(d), p, _pSig(p), r, SQL_TOTAL);
    }

    function _fuzzAddress(uint256 seed) internal returns (address a) {
        a = address(uint160(bound(seed, 1, type(uint160).max)));
        // Precompiles, cheatcodes and the contracts of the fixture would muddle the picture.
        if (uint160(a) < 0x10000 || a == address(sr) || a == address(vm) || a == address(this)) {
            a = address(uint160(uint256(keccak256(abi.encode(seed)))));
        }
    }

    // ------------------------------------------------------------------
    // Validity window
    // ------------------------------------------------------------------

    function testFuzz_ValidityWindow(uint64 validFrom, uint64 validUntil, uint256 at) public {
        at = bound(at, 1, type(uint64).max - MAX_DURATION);
        vm.warp(at);
        _registerEnclave(enclave); // keep the world consistent at the new time
        DatasetOffer memory d = _datasetOffer();
        d.validFrom = validFrom;
        d.validUntil = validUntil;
        (bool ok, bytes memory ret) = _tryRentDefault(analyst, d, _rental());
        if (at < validFrom) {
            assertEq(ret, abi.encodeWithSelector(Offers.OfferNotYetValid.selector, validFrom));
        } else if (at > validUntil) {
            assertEq(ret, abi.encodeWithSelector(Offers.OfferExpired.selector, validUntil));
        } else {
            assertTrue(ok);
        }
    }

    // ------------------------------------------------------------------
    // Volumes
    // ------------------------------------------------------------------

    struct VolumeCase {
        DatasetOffer d;
        PoolOffer p;
        bytes dSig;
        bytes pSig;
        bytes32 dHash;
        bytes32 pHash;
    }

    function testFuzz_Volume(uint64 datasetVolume, uint64 poolVolume, uint8 attempts) public {
        VolumeCase memory c;
        c.d = _datasetOffer();
        c.d.volume = uint64(bound(datasetVolume, 0, 6));
        c.p = _poolOffer();
        c.p.volume = uint64(bound(poolVolume, 0, 6));
        attempts = uint8(bound(attempts, 0, 8));
        c.dSig = _dSig(c.d);
        c.pSig = _pSig(c.p);
        c.dHash = sr.hashDatasetOffer(c.d);
        c.pHash = sr.hashPoolOffer(c.p);

        uint256 limit = c.d.volume < c.p.volume ? c.d.volume : c.p.volume;
        for (uint256 i = 0; i < attempts; i++) {
            _volumeAttempt(c, i, limit);
        }
        uint256 used = attempts < limit ? attempts : limit;
        assertEq(uint256(sr.offerUsed(c.dHash)), used);
        assertEq(uint256(sr.offerUsed(c.pHash)), used);
        assertEq(sr.taskCount(), used);
    }

    function _volumeAttempt(VolumeCase memory c, uint256 i, uint256 limit) internal {
        (bool ok, bytes memory ret) = _tryRent(analyst, c.d, c.dSig, c.p, c.pSig, _rental(), SQL_TOTAL);
        if (i < limit) {
            assertTrue(ok);
        } else if (limit >= c.d.volume) {
            // The dataset offer is checked first; failed attempts count nothing, so after
            // `limit` successes it is the first of the two to be found exhausted.
            assertEq(ret, abi.encodeWithSelector(Offers.OfferVolumeExhausted.selector, c.dHash, c.d.volume));
        } else {
            assertEq(ret, abi.encodeWithSelector(Offers.OfferVolumeExhausted.selector, c.pHash, c.p.volume));
        }
    }

    // ------------------------------------------------------------------
    // Requester restrictions
    // ------------------------------------------------------------------

    function testFuzz_RequesterSingleAddress(address requester, uint256 callerSeed, bool callerIsRequester) public {
        address caller = callerIsRequester && requester != address(0) ? requester : _fuzzAddress(callerSeed);
        vm.assume(caller.code.length == 0 && uint160(caller) >= 0x10000);
        DatasetOffer memory d = _datasetOffer();
        d.requester = requester;
        (bool ok, bytes memory ret) = _tryRentDefault(caller, d, _rental());
        if (requester == address(0) || requester == caller) {
            assertTrue(ok);
        } else {
            assertEq(ret, abi.encodeWithSelector(Strongroom.RequesterNotAllowed.selector, caller));
        }
    }

    function testFuzz_RequesterMerkleProof(uint256 seed, uint8 size, uint8 index, bool member, bool tamper) public {
        size = uint8(bound(size, 1, 17));
        index = uint8(bound(index, 0, size - 1));
        address[] memory list = new address[](size);
        for (uint256 i = 0; i < size; i++) {
            list[i] = _fuzzAddress(uint256(keccak256(abi.encode(seed, i))));
        }
        (bytes32 root, bytes32[] memory proof) = _merkle(list, index);
        address caller = member ? list[index] : _fuzzAddress(uint256(keccak256(abi.encode(seed, "outsider"))));
        bool tampered = tamper && proof.length > 0;
        if (tampered) proof[uint256(seed) % proof.length] ^= bytes32(uint256(1));

        DatasetOffer memory d = _datasetOffer();
        d.requesterRoot = root;
        Rental memory r = _rental();
        r.requesterProof = proof;
        (bool ok, bytes memory ret) = _tryRentDefault(caller, d, r);
        if (member && !tampered) {
            assertTrue(ok);
        } else {
            assertEq(ret, abi.encodeWithSelector(Strongroom.RequesterNotAllowed.selector, caller));
        }
    }

    // ------------------------------------------------------------------
    // App, pool and dataset pins
    // ------------------------------------------------------------------

    /// pin: 0 = none (zero), 1 = the right id, 2 = another id.
    function _pin(uint256 mode, bytes32 right) internal pure returns (bytes32) {
        return mode == 0 ? bytes32(0) : mode == 1 ? right : keccak256(abi.encode(right, "other"));
    }

    function testFuzz_Pins(
        bool appJob,
        bool allowSql,
        bool allowApps,
        uint8 datasetAppPin,
        uint8 datasetPoolPin,
        uint8 appDatasetPin,
        uint8 appPoolPin
    ) public {
        DatasetOffer memory d = _datasetOffer();
        d.allowSql = allowSql;
        d.allowApps = allowApps;
        d.app = _pin(datasetAppPin % 3, appId);
        d.pool = _pin(datasetPoolPin % 3, poolId);
        PoolOffer memory p = _poolOffer();
        AppOffer memory a = _appOffer();
        a.dataset = _pin(appDatasetPin % 3, datasetId);
        a.pool = _pin(appPoolPin % 3, poolId);
        bytes memory dSig = _dSig(d);
        bytes memory pSig = _pSig(p);
        bytes memory aSig = _aSig(a);

        // The checks in the order the contract makes them.
        bytes memory expected;
        if (!appJob) {
            if (!allowSql) expected = abi.encodeWithSelector(Strongroom.SqlNotAllowed.selector);
            else if (datasetPoolPin % 3 == 2) expected = abi.encodeWithSelector(Strongroom.PoolNotAllowed.selector, poolId);
        } else {
            if (!allowApps || datasetAppPin % 3 == 2) {
                expected = abi.encodeWithSelector(Strongroom.AppNotAllowed.selector, appId);
            } else if (datasetPoolPin % 3 == 2) {
                expected = abi.encodeWithSelector(Strongroom.PoolNotAllowed.selector, poolId);
            } else if (appDatasetPin % 3 == 2) {
                expected = abi.encodeWithSelector(Strongroom.DatasetNotAllowed.selector, datasetId);
            } else if (appPoolPin % 3 == 2) {
                expected = abi.encodeWithSelector(Strongroom.PoolNotAllowed.selector, poolId);
            }
        }

        vm.prank(analyst);
        (bool ok, bytes memory ret) = appJob
            ? address(sr).call{value: APP_TOTAL}(abi.encodeCall(sr.rentApp, (d, dSig, p, pSig, a, aSig, _rental())))
            : address(sr).call{value: SQL_TOTAL}(abi.encodeCall(sr.rent, (d, dSig, p, pSig, _rental())));
        if (expected.length == 0) {
            assertTrue(ok);
        } else {
            assertEq(ret, expected);
        }
    }

    // ------------------------------------------------------------------
    // Signature forms
    // ------------------------------------------------------------------

    function testFuzz_Erc1271Wallet(uint256 ownerPk, uint256 signerPk, bytes32 salt) public {
        ownerPk = bound(ownerPk, 1, SECP256K1_N - 1);
        signerPk = bound(signerPk, 1, SECP256K1_N - 1);
        address owner = vm.addr(ownerPk);
        TestWallet wallet = new TestWallet(owner);
        vm.prank(owner);
        bytes32 id = abi.decode(
            wallet.exec(address(sr), abi.encodeCall(sr.registerDataset, (salt, "u", MANIFEST_DIGEST, "k", KMS_KEY, POLICY, BUDGET))),
            (bytes32)
        );
        DatasetOffer memory d = _datasetOffer();
        d.dataset = id;
        bytes32 h = sr.hashDatasetOffer(d);
        PoolOffer memory p = _poolOffer();
        (bool ok, bytes memory ret) = _tryRent(analyst, d, _sig(signerPk, h), p, _pSig(p), _rental(), SQL_TOTAL);
        if (signerPk == ownerPk) {
            assertTrue(ok);
        } else {
            assertEq(ret, abi.encodeWithSelector(Offers.InvalidSignature.selector, h, address(wallet)));
        }
    }

    function testFuzz_CompactAndMalleableSignatures(uint256 pk, bytes32 salt) public {
        pk = bound(pk, 1, SECP256K1_N - 1);
        address owner = vm.addr(pk);
        vm.assume(owner.code.length == 0);
        vm.prank(owner);
        bytes32 id = sr.registerDataset(salt, "u", MANIFEST_DIGEST, "k", KMS_KEY, POLICY, BUDGET);
        DatasetOffer memory d = _datasetOffer();
        d.dataset = id;
        bytes32 h = sr.hashDatasetOffer(d);
        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _pSig(p);

        (bool ok,) = _tryRent(analyst, d, _sig64(pk, h), p, pSig, _rental(), SQL_TOTAL);
        assertTrue(ok);
        (ok,) = _tryRent(analyst, d, _sig(pk, h), p, pSig, _rental(), SQL_TOTAL);
        assertTrue(ok);

        // The high-s twin of a valid signature is refused in both encodings.
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, h);
        bytes32 highS = bytes32(SECP256K1_N - uint256(s));
        uint8 flipped = v == 27 ? 28 : 27;
        bytes memory err = abi.encodeWithSelector(Offers.InvalidSignature.selector, h, owner);
        bytes memory ret;
        (ok, ret) = _tryRent(analyst, d, abi.encodePacked(r, highS, flipped), p, pSig, _rental(), SQL_TOTAL);
        assertEq(ret, err);
        // In 64 bytes the top bit of `vs` is the parity, so a high s cannot even be expressed
        // without corrupting it; a wrong parity recovers another key.
        (ok, ret) = _tryRent(analyst, d, abi.encodePacked(r, bytes32(uint256(s) | (uint256(flipped - 27) << 255))), p, pSig, _rental(), SQL_TOTAL);
        assertEq(ret, err);
    }

    // ------------------------------------------------------------------
    // Presign and cancel
    // ------------------------------------------------------------------

    /// A random sequence of presign / cancel / rent-with-empty-signature on one dataset offer,
    /// checked against a model.
    function testFuzz_PresignAndCancel(uint256 seed, uint64 volume) public {
        volume = uint64(bound(volume, 0, 4));
        DatasetOffer memory d = _datasetOffer();
        d.volume = volume;
        bytes32 h = sr.hashDatasetOffer(d);
        PoolOffer memory p = _poolOffer();
        bytes memory pSig = _pSig(p);
        bool isPresigned;
        bool cancelled;
        uint256 used;

        for (uint256 i = 0; i < 10; i++) {
            uint256 op = uint256(keccak256(abi.encode(seed, i))) % 4;
            if (op == 0) {
                vm.prank(datasetOwner);
                (bool ok, bytes memory ret) = address(sr).call(abi.encodeCall(sr.presignDatasetOffer, (d)));
                if (cancelled) {
                    assertEq(ret, abi.encodeWithSelector(Offers.OfferAlreadyCancelled.selector, h));
                } else {
                    assertTrue(ok);
                    isPresigned = true;
                }
            } else if (op == 1) {
                vm.prank(datasetOwner);
                (bool ok, bytes memory ret) = address(sr).call(abi.encodeCall(sr.cancelDatasetOffer, (d)));
                if (cancelled) {
                    assertEq(ret, abi.encodeWithSelector(Offers.OfferAlreadyCancelled.selector, h));
                } else {
                    assertTrue(ok);
                    cancelled = true;
                }
            } else {
                (bool ok, bytes memory ret) = _tryRent(analyst, d, "", p, pSig, _rental(), SQL_TOTAL);
                if (!isPresigned) {
                    assertEq(ret, abi.encodeWithSelector(Offers.InvalidSignature.selector, h, datasetOwner));
                } else if (cancelled || used >= volume) {
                    assertEq(ret, abi.encodeWithSelector(Offers.OfferVolumeExhausted.selector, h, volume));
                } else {
                    assertTrue(ok);
                    used++;
                }
            }
            assertEq(sr.presigner(h) != address(0), isPresigned);
            assertEq(uint256(sr.offerUsed(h)), cancelled ? type(uint64).max : used);
        }
    }

    // ------------------------------------------------------------------
    // Prices and payment
    // ------------------------------------------------------------------

    function testFuzz_Payment(uint128 datasetPrice, uint128 poolPrice, uint256 maxPrice, uint256 value) public {
        poolPrice = uint128(bound(poolPrice, 0, STAKE)); // the stake must cover it
        uint256 total = uint256(datasetPrice) + poolPrice;
        value = bound(value, 0, total + 10 ether);
        DatasetOffer memory d = _datasetOffer();
        d.price = datasetPrice;
        PoolOffer memory p = _poolOffer();
        p.price = poolPrice;
        Rental memory r = _rental();
        r.maxPrice = maxPrice;
        (bool ok, bytes memory ret) = _tryRent(analyst, d, _dSig(d), p, _pSig(p), r, value);
        if (total > maxPrice) {
            assertEq(ret, abi.encodeWithSelector(Strongroom.PriceAboveMaximum.selector, total, maxPrice));
        } else if (value < total) {
            assertEq(ret, abi.encodeWithSelector(Strongroom.InsufficientPayment.selector, total, value));
        } else {
            assertTrue(ok);
            assertEq(sr.balances(analyst), value - total);
            assertEq(address(sr).balance, STAKE + value);
        }
    }

    // ------------------------------------------------------------------
    // Encodings done by hand in the contract
    // ------------------------------------------------------------------

    /// `TaskCreated` is emitted from hand-written assembly: its data must be the standard ABI
    /// encoding of (TaskParams, bytes) for every length of spec, padding included.
    function testFuzz_TaskCreatedEncoding(bytes memory spec, bytes32 resultKey) public {
        Rental memory r = _rental();
        r.spec = spec;
        r.resultKey = resultKey;
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        bytes memory dSig = _dSig(d);
        bytes memory pSig = _pSig(p);
        vmx.recordLogs();
        vm.prank(analyst);
        uint256 taskId = sr.rent{value: SQL_TOTAL}(d, dSig, p, pSig, r);
        VmExt.Log[] memory logs = vmx.getRecordedLogs();
        VmExt.Log memory created = logs[logs.length - 1];
        assertEq(created.topics[0], Strongroom.TaskCreated.selector);
        assertEq(uint256(created.topics[1]), taskId);
        assertEq(created.topics[2], datasetId);
        assertEq(created.topics[3], poolId);
        TaskParams memory t = _expectedParams(r);
        assertEq(created.data, abi.encode(t, spec));
        assertEq(sr.taskCommitment(taskId), (keccak256(abi.encode(t)) & ~bytes32(uint256(0xff))) | bytes32(uint256(1)));
    }

    /// Offer digests hash the calldata words directly; they must equal EIP-712's encodeData.
    function testFuzz_OfferDigests(DatasetOffer memory d, PoolOffer memory p, AppOffer memory a) public {
        bytes32 domain = sr.domainSeparator();
        bytes32 dType = keccak256(
            "DatasetOffer(bytes32 dataset,uint256 price,uint64 volume,uint64 validFrom,uint64 validUntil,address requester,bytes32 requesterRoot,bool allowSql,bool allowApps,bytes32 app,bytes32 pool,bytes32 measurement,bytes32 policyHash,uint64 maxEpsilon,bytes32 salt)"
        );
        bytes32 pType = keccak256(
            "PoolOffer(bytes32 pool,uint256 price,uint64 volume,uint64 maxDuration,uint64 validUntil,bytes32 keyService,bytes32 salt)"
        );
        bytes32 aType = keccak256(
            "AppOffer(bytes32 app,uint256 price,uint64 volume,bytes32 dataset,bytes32 pool,address requester,bytes32 salt)"
        );
        assertEq(sr.hashDatasetOffer(d), keccak256(abi.encodePacked("\x19\x01", domain, keccak256(abi.encode(dType, d)))));
        assertEq(sr.hashPoolOffer(p), keccak256(abi.encodePacked("\x19\x01", domain, keccak256(abi.encode(pType, p)))));
        assertEq(sr.hashAppOffer(a), keccak256(abi.encodePacked("\x19\x01", domain, keccak256(abi.encode(aType, a)))));
    }

    // ------------------------------------------------------------------
    // Privacy budget
    // ------------------------------------------------------------------

    /// Random epsilons, settled, refused, failed, refunded or left open: the ledger follows a model and
    /// spent + reserved never exceeds the budget.
    function testFuzz_PrivacyLedger(uint256 seed) public {
        uint256 spent;
        uint256 reserved;
        for (uint256 i = 0; i < 8; i++) {
            uint256 rnd = uint256(keccak256(abi.encode(seed, i)));
            Rental memory r = _rental();
            r.epsilon = uint64(bound(rnd, 0, MAX_EPSILON)) * 3; // may exceed the offer's maximum
            (bool ok, bytes memory ret) = _tryRentDefault(analyst, _datasetOffer(), r);
            if (r.epsilon > MAX_EPSILON) {
                assertEq(ret, abi.encodeWithSelector(Strongroom.EpsilonAboveOfferMax.selector, r.epsilon, MAX_EPSILON));
                continue;
            }
            if (spent + reserved + r.epsilon > BUDGET) {
                assertEq(
                    ret,
                    abi.encodeWithSelector(
                        DatasetRegistry.PrivacyBudgetExhausted.selector,
                        datasetId,
                        analyst,
                        // casting to 'uint64' is safe because spent + reserved <= BUDGET here
                        // forge-lint: disable-next-line(unsafe-typecast)
                        uint64(BUDGET - spent - reserved),
                        r.epsilon
                    )
                );
                continue;
            }
            assertTrue(ok);
            uint256 taskId = sr.taskCount();
            TaskParams memory t = _expectedParams(r);
            uint256 outcome = (rnd >> 128) % 5;
            if (outcome == 0) {
                _submit(t, taskId, Outcome.Completed);
                spent += r.epsilon;
            } else if (outcome == 1) {
                _submit(t, taskId, Outcome.Refused);
            } else if (outcome == 4) {
                _submit(t, taskId, Outcome.Failed); // failed while running: the epsilon is spent
                spent += r.epsilon;
            } else if (outcome == 2) {
                uint256 back = block.timestamp;
                vm.warp(uint256(t.deadline) + sr.RELEASE_CLAIM_WINDOW() + 1);
                sr.refund(t, taskId);
                vm.warp(back);
            } else {
                reserved += r.epsilon;
            }
            (uint64 s, uint64 res) = sr.privacySpend(datasetId, analyst);
            assertEq(uint256(s), spent);
            assertEq(uint256(res), reserved);
            assertLe(uint256(s) + res, BUDGET);
        }
    }

    function _expectedParams(Rental memory r) internal view returns (TaskParams memory t) {
        t.dataset = datasetId;
        t.registryVersion = 1;
        t.pool = poolId;
        t.analyst = analyst;
        t.datasetOwner = datasetOwner;
        t.poolOperator = operator;
        t.deadline = uint64(block.timestamp + MAX_DURATION);
        t.epsilon = r.epsilon;
        t.datasetPrice = DATASET_PRICE;
        t.poolPrice = POOL_PRICE;
        t.stake = POOL_PRICE;
        t.jobHash = keccak256(r.spec);
        t.resultKey = r.resultKey;
        t.policyHash = POLICY;
        t.manifestDigest = MANIFEST_DIGEST;
        t.kmsKey = KMS_KEY;
    }
}
