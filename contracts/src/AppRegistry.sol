// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {StrongroomBase} from "./StrongroomBase.sol";
import {App} from "./Types.sol";

/// @notice Apps: code (identified by its hash) that app jobs run inside the enclave.
abstract contract AppRegistry is StrongroomBase {
    error AppExists(bytes32 id);
    error UnknownApp(bytes32 id);
    error NotAppOwner(bytes32 id, address caller);

    event AppRegistered(bytes32 indexed id, address indexed owner, bytes32 codeHash, string uri);
    event AppTransferred(bytes32 indexed id, address indexed from, address indexed to);

    /// `registered` (packed with the owner) marks a known id independently of the owner, so
    /// that transferring an app to the zero address renounces it instead of freeing the id.
    struct AppRecord {
        address owner;
        bool registered;
        bytes32 codeHash;
        string uri;
    }

    mapping(bytes32 id => AppRecord) internal _apps;

    /// @notice Register an app owned by the caller; the id is derived from the caller and a salt.
    function registerApp(bytes32 salt, bytes32 codeHash, string calldata uri) external returns (bytes32 id) {
        id = appId(msg.sender, salt);
        AppRecord storage a = _apps[id];
        if (a.registered) revert AppExists(id);
        a.owner = msg.sender;
        a.registered = true;
        a.codeHash = codeHash;
        a.uri = uri;
        emit AppRegistered(id, msg.sender, codeHash, uri);
    }

    /// @notice Hand the app to `newOwner`; offers of the old owner stop being accepted, tasks
    /// already rented still pay the owner recorded at rent. The zero address renounces the app.
    function transferApp(bytes32 id, address newOwner) external {
        _ownedApp(id).owner = newOwner;
        emit AppTransferred(id, msg.sender, newOwner);
    }

    /// App record; all zero when the id is unknown.
    function getApp(bytes32 id) external view returns (App memory) {
        AppRecord storage a = _apps[id];
        return App({owner: a.owner, codeHash: a.codeHash, uri: a.uri});
    }

    function appId(address owner, bytes32 salt) public pure returns (bytes32) {
        return keccak256(abi.encode(owner, salt));
    }

    function _ownedApp(bytes32 id) internal view returns (AppRecord storage a) {
        a = _apps[id];
        if (!a.registered) revert UnknownApp(id);
        if (a.owner != msg.sender) revert NotAppOwner(id, msg.sender);
    }
}
