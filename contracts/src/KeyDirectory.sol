// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IKeyDirectory} from "./interfaces/IKeyDirectory.sol";

/**
 * @title KeyDirectory
 * @notice Self-published secp256k1 public keys. Because a key must hash to its publisher's
 * address, nobody can publish a key for someone else, and an account has exactly one key.
 */
contract KeyDirectory is IKeyDirectory {
    struct PublicKey {
        bytes32 x;
        bytes32 y;
    }

    mapping(address account => PublicKey) private _keys;

    /// @notice A public key must be 64 bytes (x ‖ y, no 0x04 prefix).
    error KeyDirectory__InvalidPublicKeyLength(uint256 length);
    /// @notice The key does not derive to the caller's address.
    error KeyDirectory__PublicKeyMismatch(address expected, address derived);
    /// @notice The caller already published its key.
    error KeyDirectory__AlreadyPublished(address account);
    /// @notice The account has not published a key.
    error KeyDirectory__NoKey(address account);

    /// @inheritdoc IKeyDirectory
    function publishKey(bytes calldata publicKey64) external {
        if (publicKey64.length != 64) revert KeyDirectory__InvalidPublicKeyLength(publicKey64.length);
        address derived = address(uint160(uint256(keccak256(publicKey64))));
        if (derived != msg.sender) revert KeyDirectory__PublicKeyMismatch(msg.sender, derived);
        if (_keys[msg.sender].x != bytes32(0)) revert KeyDirectory__AlreadyPublished(msg.sender);
        _keys[msg.sender] = PublicKey({x: bytes32(publicKey64[0:32]), y: bytes32(publicKey64[32:64])});
        emit KeyPublished(msg.sender);
    }

    /// @inheritdoc IKeyDirectory
    function publicKeyOf(address account) external view returns (bytes memory) {
        PublicKey memory key = _keys[account];
        if (key.x == bytes32(0)) revert KeyDirectory__NoKey(account);
        return abi.encodePacked(key.x, key.y);
    }

    /// @inheritdoc IKeyDirectory
    function hasKey(address account) external view returns (bool) {
        return _keys[account].x != bytes32(0);
    }
}
