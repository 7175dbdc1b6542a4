// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {console2 as console} from "forge-std/console2.sol";
import {Fixture} from "./utils/Fixture.sol";
import {DatasetOffer, PoolOffer, AppOffer, Outcome, Rental, TaskParams} from "../src/Strongroom.sol";

/// Gas report: ten SQL tasks on the same offers and accounts, one app task and one refund,
/// as transaction gas (21,000 + calldata + execution).
///
/// Exact figures need every call to be its own transaction (cold storage, fresh "original"
/// values for SSTORE pricing), which is what forge's isolation mode does:
///     FOUNDRY_PROFILE=gas forge test --match-path test/Gas.t.sol -vv
/// There `vm.lastCallGas()` is the whole transaction's gas and the steady-state budget
/// (rent + submitResult <= 200,000) is asserted. In a plain `forge test` all calls share one
/// transaction, storage is warm after the first task, and the report is only indicative (it
/// says so). The authoritative benchmark is on anvil (see script/GasBench.s.sol).
contract GasTest is Fixture {
    uint256 internal constant BUDGET_GAS = 200_000;

    bool internal isolated;

    /// In isolation mode every call from the test is a transaction, so even a trivial one
    /// is charged more than the 21,000 base.
    function _detectIsolation() internal {
        sr.setStakeRatio(10_000);
        isolated = vmx.lastCallGas().gasTotalUsed > 21_000;
    }

    /// Transaction gas of the call just made with calldata `data`.
    function _txGas(bytes memory data) internal view returns (uint256) {
        uint256 used = vmx.lastCallGas().gasTotalUsed;
        return isolated ? used : used + _intrinsic(data, used);
    }

    function _rentGas(DatasetOffer memory d, PoolOffer memory p, Rental memory r)
        internal
        returns (uint256 taskId, TaskParams memory t, uint256 gas)
    {
        bytes memory dSig = _dSig(d);
        bytes memory pSig = _pSig(p);
        bytes memory data = abi.encodeCall(sr.rent, (d, dSig, p, pSig, r));
        vmx.recordLogs();
        vm.prank(analyst);
        taskId = sr.rent{value: d.price + p.price}(d, dSig, p, pSig, r);
        gas = _txGas(data);
        t = _createdParams(taskId);
    }

    function _submitGas(TaskParams memory t, uint256 taskId) internal returns (uint256 gas) {
        bytes memory auth = _authSig(taskId, enclave);
        bytes memory res = _resultSig(taskId, DIGEST, Outcome.Completed, LOCATION);
        bytes memory data = abi.encodeCall(sr.submitResult, (t, taskId, DIGEST, LOCATION, auth, res, Outcome.Completed));
        sr.submitResult(t, taskId, DIGEST, LOCATION, auth, res, Outcome.Completed);
        gas = _txGas(data);
    }

    function _appTaskGas(DatasetOffer memory d, PoolOffer memory p, Rental memory r)
        internal
        returns (uint256 rentGas, uint256 submitGas)
    {
        AppOffer memory a = _appOffer();
        uint256 value = d.price + p.price + a.price;
        bytes memory data = abi.encodeCall(sr.rentApp, (d, _dSig(d), p, _pSig(p), a, _aSig(a), r));
        vmx.recordLogs();
        vm.prank(analyst);
        (bool ok, bytes memory ret) = address(sr).call{value: value}(data);
        assertTrue(ok);
        rentGas = _txGas(data);
        uint256 taskId = abi.decode(ret, (uint256));
        submitGas = _submitGas(_createdParams(taskId), taskId);
    }

    function test_GasReport() public {
        _detectIsolation();
        if (!isolated) {
            console.log("NOTE: not isolated, storage is warm after task 1: figures are indicative only.");
            console.log("      Real transaction gas: FOUNDRY_PROFILE=gas forge test --match-path test/Gas.t.sol -vv");
        }
        DatasetOffer memory d = _datasetOffer();
        PoolOffer memory p = _poolOffer();
        Rental memory r = _rental();

        uint256 steadyMax;
        uint256 steadySum;
        for (uint256 i = 1; i <= 10; i++) {
            (uint256 taskId, TaskParams memory t, uint256 rentGas) = _rentGas(d, p, r);
            uint256 submitGas = _submitGas(t, taskId);
            uint256 total = rentGas + submitGas;
            console.log(string.concat("sql task ", vmx.toString(i), ": rent ", vmx.toString(rentGas)), string.concat("submitResult ", vmx.toString(submitGas), " total ", vmx.toString(total)));
            if (i >= 2) {
                steadySum += total;
                if (total > steadyMax) steadyMax = total;
            }
        }
        console.log("steady state (tasks 2..10): max", steadyMax, "mean", steadySum / 9);

        // One app task on the same dataset and pool offers.
        (uint256 appRent, uint256 appSubmit) = _appTaskGas(d, p, r);
        console.log("app task (first use of the app offer): rentApp", appRent, "submitResult", appSubmit);

        // One refund, and one task abandoned after its keys were released.
        {
            (uint256 taskId, TaskParams memory t,) = _rentGas(d, p, r);
            vm.warp(uint256(t.deadline) + sr.RELEASE_CLAIM_WINDOW() + 1);
            bytes memory data = abi.encodeCall(sr.refund, (t, taskId));
            sr.refund(t, taskId);
            console.log("refund", _txGas(data));
        }
        {
            (uint256 taskId, TaskParams memory t,) = _rentGas(d, p, r);
            vm.warp(uint256(t.deadline) + 1);
            bytes memory receipt = _releasedSig(taskId, enclave);
            bytes memory data = abi.encodeCall(sr.refundReleased, (t, taskId, enclave, _authSig(taskId, enclave), receipt));
            sr.refundReleased(t, taskId, enclave, _authSig(taskId, enclave), receipt);
            console.log("refundReleased", _txGas(data));
        }

        if (isolated) assertLe(steadyMax, BUDGET_GAS);
    }
}
