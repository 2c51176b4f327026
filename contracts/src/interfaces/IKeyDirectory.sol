// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title IKeyDirectory
 * @notice Self-published secp256k1 public keys of patients and providers, so that block keys
 * and alerts can be wrapped for them. An account can only publish its own key.
 */
interface IKeyDirectory {
    /// @notice Emitted after `account` published its public key.
    event KeyPublished(address indexed account);

    /**
     * @notice Publishes the caller's 64-byte uncompressed secp256k1 key (x ‖ y, no 0x04 prefix).
     * The key must derive to `msg.sender`; a key is published once.
     */
    function publishKey(bytes calldata publicKey64) external;

    /// @notice The 64-byte key published by `account`; reverts if there is none.
    function publicKeyOf(address account) external view returns (bytes memory);

    /// @notice Whether `account` has published its key.
    function hasKey(address account) external view returns (bool);
}
