// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/**
 * @title ITrustGroups
 * @notice Virtual trust groups ("bubbles of trust"): one master device (the edge gateway, or
 * cluster head) per group, and the devices it has admitted with a signed token.
 *
 * Nothing personal or clinical is stored: only group and object IDs, addresses and
 * secp256k1 public keys. The token and association-request digests are specified in
 * `docs/spec/token.md` (v1).
 */
interface ITrustGroups {
    /// @notice Lifecycle of a device address. `None` means the address never associated.
    enum DeviceStatus {
        None,
        Active,
        Revoked
    }

    /// @notice Emitted after a group is created by its master.
    event GroupCreated(uint64 indexed groupId, address indexed master, uint64 masterObjectId, bytes masterPublicKey);

    /// @notice Emitted after a device is associated with a group.
    event DeviceAssociated(uint64 indexed groupId, address indexed device, uint64 objectId);

    /// @notice Emitted after the group's master revokes a device.
    event DeviceRevoked(uint64 indexed groupId, address indexed device);

    /// @notice Emitted after the group's master hands the group over to a new key.
    event MasterRotated(uint64 indexed groupId, address indexed oldMaster, address indexed newMaster);

    /**
     * @notice Creates group `groupId` with the caller as master.
     * @param groupId Non-zero, unused group ID.
     * @param masterObjectId Object ID of the master device; unused by any master or device.
     * @param masterPublicKey The caller's 64-byte uncompressed secp256k1 key (x ‖ y, no 0x04 prefix).
     */
    function createGroup(uint64 groupId, uint64 masterObjectId, bytes calldata masterPublicKey) external;

    /**
     * @notice Associates the device whose 64-byte uncompressed key is `publicKey` with `groupId`.
     * Anyone may relay the call; authority comes from the two signatures.
     * @param publicKey The device's 64-byte uncompressed secp256k1 key (x ‖ y); the device
     * address is the low 20 bytes of its keccak256.
     * @param masterSignature 65-byte signature (r ‖ s ‖ v) by the group's current master over
     * {tokenDigest}.
     * @param deviceSignature 65-byte signature by the device over {requestDigest}, binding
     * `keccak256(masterSignature)`.
     */
    function associate(
        uint64 groupId,
        uint64 objectId,
        bytes calldata publicKey,
        bytes calldata masterSignature,
        bytes calldata deviceSignature
    ) external;

    /// @notice Revokes an active device of `groupId`. Only the group's master may call it.
    function revokeDevice(uint64 groupId, address device) external;

    /**
     * @notice Hands `groupId` to a new master key. Only the current master may call it.
     * @param newMasterPublicKey The new master's 64-byte uncompressed key.
     * @param newMasterSignature 65-byte signature by the new key over {rotationDigest}.
     */
    function rotateMaster(uint64 groupId, bytes calldata newMasterPublicKey, bytes calldata newMasterSignature) external;

    /**
     * @notice The group's master, master object ID, number of devices ever associated (revoked
     * ones included) and the master's 64-byte public key. All zero / empty if the group is unknown.
     */
    function groupOf(uint64 groupId)
        external
        view
        returns (address master, uint64 masterObjectId, uint32 deviceCount, bytes memory masterPublicKey);

    /// @notice The group's current master, or `address(0)` if the group is unknown.
    function masterOf(uint64 groupId) external view returns (address);

    /// @notice The device's group, object ID and status; all zero if it never associated.
    function deviceOf(address device) external view returns (uint64 groupId, uint64 objectId, DeviceStatus status);

    /// @notice Whether `device` is associated and not revoked.
    function isActiveDevice(address device) external view returns (bool);

    /**
     * @notice The device's public key as a 33-byte SEC1 compressed point (0x02/0x03 ‖ x).
     * Revoked devices keep their key. Reverts if the address never associated.
     */
    function devicePublicKey(address device) external view returns (bytes memory);

    /// @notice Up to `limit` device addresses of `groupId` starting at `offset`, in association order.
    function devicesOf(uint64 groupId, uint256 offset, uint256 limit) external view returns (address[] memory);

    /// @notice Whether `objectId` is used by a master or a device.
    function objectIdTaken(uint64 objectId) external view returns (bool);

    /// @notice EIP-712 digest of `DeviceToken(uint64 groupId,uint64 objectId,address device)`.
    function tokenDigest(uint64 groupId, uint64 objectId, address device) external view returns (bytes32);

    /**
     * @notice EIP-712 digest of
     * `AssociationRequest(uint64 groupId,uint64 objectId,address device,bytes32 tokenHash)`,
     * where `tokenHash = keccak256(masterSignature)`.
     */
    function requestDigest(uint64 groupId, uint64 objectId, address device, bytes32 tokenHash)
        external
        view
        returns (bytes32);

    /// @notice EIP-712 digest of `MasterRotation(uint64 groupId,address newMaster)`.
    function rotationDigest(uint64 groupId, address newMaster) external view returns (bytes32);

    /// @notice The EIP-712 domain separator (name "vitalchain", version "1", this chain, this contract).
    function domainSeparator() external view returns (bytes32);
}
