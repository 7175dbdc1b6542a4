// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Script} from "forge-std/Script.sol";
import {VmExt} from "../test/utils/VmExt.sol";
import {
    Strongroom,
    Quote,
    DatasetOffer,
    PoolOffer,
    AppOffer,
    Outcome,
    Rental,
    TaskParams,
    QUOTE_TYPE_SIMULATED
} from "../src/Strongroom.sol";

/// Real-transaction gas of the protocol on a local anvil (default dev keys):
///   anvil &
///   forge script script/GasBench.s.sol --rpc-url http://127.0.0.1:8545 --broadcast
/// then read `gasUsed` from broadcast/GasBench.s.sol/31337/run-latest.json (receipts).
/// Pool offers use an unbounded duration so that the deadline (and so the committed task
/// parameters) do not depend on the timestamp of the block a rent lands in.
contract GasBench is Script {
    VmExt internal constant vmx = VmExt(address(uint160(uint256(keccak256("hevm cheat code")))));

    // anvil's default accounts 0..4
    uint256 internal constant GOV = 0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80;
    uint256 internal constant OWNER = 0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d;
    uint256 internal constant OPERATOR = 0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a;
    uint256 internal constant ANALYST = 0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6;
    uint256 internal constant APP_OWNER = 0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a;
    // sign only
    uint256 internal constant PLATFORM = 0xA11CE;
    uint256 internal constant ENCLAVE = 0xE1C1A7E;

    bytes32 internal constant MEASUREMENT = keccak256("strongroom-worker v2");
    bytes32 internal constant POLICY = keccak256("aggregate-only");

    Strongroom internal sr;

    function _sig(uint256 pk, bytes32 digest) internal returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(pk, digest);
        return abi.encodePacked(r, s, v);
    }

    function run() external {
        vmx.broadcast(GOV);
        sr = new Strongroom(true);
        vmx.broadcast(GOV);
        sr.setPlatformKey(vm.addr(PLATFORM), true);
        vmx.broadcast(GOV);
        sr.setMeasurement(MEASUREMENT, true);

        Quote memory q;
        q.quoteType = QUOTE_TYPE_SIMULATED;
        q.measurement = MEASUREMENT;
        q.reportData[0] = bytes32(bytes20(vm.addr(ENCLAVE)));
        bytes memory qSig = _sig(PLATFORM, keccak256(abi.encode(q)));
        vmx.broadcast(OPERATOR);
        sr.registerEnclave(q, qSig);

        vmx.broadcast(OWNER);
        bytes32 dataset = sr.registerDataset(
            bytes32(uint256(1)), "file:///data/sales.parquet", keccak256("c"), "http://127.0.0.1:8001", keccak256("k"), POLICY, 10_000_000
        );
        vmx.broadcast(OPERATOR);
        bytes32 pool = sr.registerPool(bytes32(uint256(2)));
        vmx.broadcast(OPERATOR);
        sr.depositStake{value: 10 ether}(pool);
        vmx.broadcast(APP_OWNER);
        bytes32 app = sr.registerApp(bytes32(uint256(3)), keccak256("wasm"), "oci://app");

        DatasetOffer memory d = DatasetOffer({
            dataset: dataset,
            price: 0.01 ether,
            volume: 1000,
            validFrom: 0,
            validUntil: type(uint64).max,
            requester: address(0),
            requesterRoot: bytes32(0),
            allowSql: true,
            allowApps: true,
            app: bytes32(0),
            pool: bytes32(0),
            measurement: bytes32(0),
            policyHash: POLICY,
            maxEpsilon: 1_000_000,
            salt: keccak256("d")
        });
        PoolOffer memory p =
            PoolOffer({pool: pool, price: 0.002 ether, volume: 1000, maxDuration: type(uint64).max, salt: keccak256("p")});
        AppOffer memory a = AppOffer({
            app: app,
            price: 0.001 ether,
            volume: 1000,
            dataset: bytes32(0),
            pool: bytes32(0),
            requester: address(0),
            salt: keccak256("a")
        });
        Rental memory r;
        r.resultKey = keccak256("x25519");
        r.epsilon = 100_000;
        r.maxPrice = 1 ether;
        r.requesterProof = new bytes32[](0);
        r.spec = "SELECT region, COUNT(*) FROM dataset GROUP BY region";

        bytes memory dSig = _sig(OWNER, sr.hashDatasetOffer(d));
        bytes memory pSig = _sig(OPERATOR, sr.hashPoolOffer(p));
        bytes memory aSig = _sig(APP_OWNER, sr.hashAppOffer(a));

        // Ten SQL tasks on the same offers and accounts.
        for (uint256 i = 0; i < 10; i++) {
            vmx.recordLogs();
            vmx.broadcast(ANALYST);
            uint256 id = sr.rent{value: 0.012 ether}(d, dSig, p, pSig, r);
            _submit(id, _params());
        }
        // One app task.
        r.spec = hex"7b226e223a317d";
        vmx.recordLogs();
        vmx.broadcast(ANALYST);
        uint256 appTask = sr.rentApp{value: 0.013 ether}(d, dSig, p, pSig, a, aSig, r);
        _submit(appTask, _params());
    }

    function _params() internal returns (TaskParams memory t) {
        VmExt.Log[] memory logs = vmx.getRecordedLogs();
        for (uint256 i = 0; i < logs.length; i++) {
            if (logs[i].topics[0] == Strongroom.TaskCreated.selector) (t,) = abi.decode(logs[i].data, (TaskParams, bytes));
        }
    }

    function _submit(uint256 id, TaskParams memory t) internal {
        bytes32 digest = keccak256(abi.encode("result", id));
        bytes memory auth = _sig(OPERATOR, sr.hashAuthorization(id, vm.addr(ENCLAVE)));
        string memory location = "file:///results/1";
        bytes memory res = _sig(ENCLAVE, sr.hashResult(id, digest, Outcome.Completed, t.kmsKey, location));
        vmx.broadcast(OPERATOR);
        sr.submitResult(t, id, digest, location, auth, res, Outcome.Completed);
    }
}
