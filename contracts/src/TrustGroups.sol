// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

import {ITrustGroups} from "./interfaces/ITrustGroups.sol";

/**
 * @title TrustGroups
 * @notice Virtual trust groups in the style of "Bubbles of Trust": a master device (the edge
 * gateway) creates a group and admits devices by signing a token for each; a device joins by
 * relaying that token together with its own signature over the association request.
 *
 * Identity rules (seed 002's checkOID / checkAddr):
 * - group IDs are non-zero and unique;
 * - object IDs are unique across every master and every device of every group;
 * - an address is used at most once, as a master or as a device, for ever: revoked devices and
 *   rotated-out masters stay tombstoned, so they can never come back.
 *
 * Digests are EIP-712 typed data under the domain ("vitalchain", "1", chainId, this contract);
 * see `docs/spec/token.md` (v1).
 *
 * Storage per associated device is four slots: the packed account record (group, object ID,
 * kind, status, y parity), the key's x coordinate, the object-ID owner and the group's device
 * list entry. The group's device count lives in the group's own slot.
 */
contract TrustGroups is ITrustGroups, EIP712 {
    /// @notice keccak256("DeviceToken(uint64 groupId,uint64 objectId,address device)")
    bytes32 public constant TOKEN_TYPEHASH = keccak256("DeviceToken(uint64 groupId,uint64 objectId,address device)");

    /// @notice keccak256("AssociationRequest(uint64 groupId,uint64 objectId,address device,bytes32 tokenHash)")
    bytes32 public constant REQUEST_TYPEHASH =
        keccak256("AssociationRequest(uint64 groupId,uint64 objectId,address device,bytes32 tokenHash)");

    /// @notice keccak256("MasterRotation(uint64 groupId,address newMaster)")
    bytes32 public constant ROTATION_TYPEHASH = keccak256("MasterRotation(uint64 groupId,address newMaster)");

    /// @dev What an address has been used as. Never goes back to `None`.
    enum AccountKind {
        None,
        Device,
        Master,
        FormerMaster
    }

    /// @dev One storage slot (64 + 64 + 8 + 8 + 8 bits).
    struct Account {
        uint64 groupId;
        uint64 objectId;
        AccountKind kind;
        DeviceStatus status;
        uint8 keyParity; // parity of the device key's y coordinate (0 even, 1 odd)
    }

    /// @dev One storage slot (160 + 64 + 32 bits).
    struct Group {
        address master;
        uint64 masterObjectId;
        uint32 deviceCount;
    }

    struct PublicKey {
        bytes32 x;
        bytes32 y;
    }

    mapping(uint64 groupId => Group) private _groups;
    mapping(uint64 groupId => PublicKey) private _masterKeys;
    mapping(uint64 groupId => mapping(uint256 index => address)) private _groupDevices;
    mapping(address account => Account) private _accounts;
    mapping(address device => bytes32) private _deviceKeyX;
    mapping(uint64 objectId => address) private _objectOwners;

    /// @notice Group ID 0 is reserved.
    error TrustGroups__InvalidGroupId();
    /// @notice The group ID is already used.
    error TrustGroups__GroupIdTaken(uint64 groupId);
    /// @notice No group has this ID.
    error TrustGroups__UnknownGroup(uint64 groupId);
    /// @notice The object ID is already used by a master or a device (checkOID).
    error TrustGroups__ObjectIdTaken(uint64 objectId);
    /// @notice The address was already used as a master or a device, maybe revoked (checkAddr).
    error TrustGroups__AddressTaken(address account);
    /// @notice A master (current or former) cannot associate as a device.
    error TrustGroups__MasterCannotAssociate(address account);
    /// @notice A public key must be 64 bytes (x ‖ y, no 0x04 prefix).
    error TrustGroups__InvalidPublicKeyLength(uint256 length);
    /// @notice The public key does not derive to the expected address.
    error TrustGroups__PublicKeyMismatch(address expected, address derived);
    /// @notice The token is not signed by the group's current master for this (group, object, device).
    error TrustGroups__InvalidToken(uint64 groupId, uint64 objectId, address device);
    /// @notice The association request is not signed by the device.
    error TrustGroups__InvalidDeviceSignature(address device);
    /// @notice This exact association was already made (a replayed request).
    error TrustGroups__RequestAlreadyUsed(uint64 groupId, uint64 objectId, address device);
    /// @notice Only the group's current master may do this.
    error TrustGroups__NotMaster(uint64 groupId, address caller);
    /// @notice The address is not a device of this group.
    error TrustGroups__DeviceNotInGroup(uint64 groupId, address device);
    /// @notice The device is already revoked.
    error TrustGroups__DeviceAlreadyRevoked(address device);
    /// @notice The rotation is not signed by the new master key.
    error TrustGroups__InvalidRotationSignature(address newMaster);
    /// @notice The address never associated as a device.
    error TrustGroups__UnknownDevice(address device);

    constructor() EIP712("vitalchain", "1") {}

    // ------------------------------------------------------------------ mutations

    /// @inheritdoc ITrustGroups
    function createGroup(uint64 groupId, uint64 masterObjectId, bytes calldata masterPublicKey) external {
        if (groupId == 0) revert TrustGroups__InvalidGroupId();
        if (_groups[groupId].master != address(0)) revert TrustGroups__GroupIdTaken(groupId);
        _requireKeyOf(masterPublicKey, msg.sender);
        if (_objectOwners[masterObjectId] != address(0)) revert TrustGroups__ObjectIdTaken(masterObjectId);
        if (_accounts[msg.sender].kind != AccountKind.None) revert TrustGroups__AddressTaken(msg.sender);

        _groups[groupId] = Group({master: msg.sender, masterObjectId: masterObjectId, deviceCount: 0});
        _masterKeys[groupId] = PublicKey({x: bytes32(masterPublicKey[0:32]), y: bytes32(masterPublicKey[32:64])});
        _accounts[msg.sender] = Account({
            groupId: groupId,
            objectId: masterObjectId,
            kind: AccountKind.Master,
            status: DeviceStatus.None,
            keyParity: 0
        });
        _objectOwners[masterObjectId] = msg.sender;
        emit GroupCreated(groupId, msg.sender, masterObjectId, masterPublicKey);
    }

    /// @inheritdoc ITrustGroups
    function associate(
        uint64 groupId,
        uint64 objectId,
        bytes calldata publicKey,
        bytes calldata masterSignature,
        bytes calldata deviceSignature
    ) external {
        address device = _verifyAssociation(groupId, objectId, publicKey, masterSignature, deviceSignature);
        _requireFreshDevice(groupId, objectId, device);

        Group storage group = _groups[groupId];
        uint32 index = group.deviceCount;
        group.deviceCount = index + 1;
        _groupDevices[groupId][index] = device;
        _objectOwners[objectId] = device;
        _deviceKeyX[device] = bytes32(publicKey[0:32]);
        _accounts[device] = Account({
            groupId: groupId,
            objectId: objectId,
            kind: AccountKind.Device,
            status: DeviceStatus.Active,
            keyParity: uint8(uint256(bytes32(publicKey[32:64])) & 1)
        });
        emit DeviceAssociated(groupId, device, objectId);
    }

    /// @inheritdoc ITrustGroups
    function revokeDevice(uint64 groupId, address device) external {
        _requireMaster(groupId);
        Account storage account = _accounts[device];
        if (account.kind != AccountKind.Device || account.groupId != groupId) {
            revert TrustGroups__DeviceNotInGroup(groupId, device);
        }
        if (account.status == DeviceStatus.Revoked) revert TrustGroups__DeviceAlreadyRevoked(device);
        account.status = DeviceStatus.Revoked;
        emit DeviceRevoked(groupId, device);
    }

    /// @inheritdoc ITrustGroups
    function rotateMaster(uint64 groupId, bytes calldata newMasterPublicKey, bytes calldata newMasterSignature)
        external
    {
        _requireMaster(groupId);
        if (newMasterPublicKey.length != 64) revert TrustGroups__InvalidPublicKeyLength(newMasterPublicKey.length);
        address newMaster = _addressOf(newMasterPublicKey);
        if (_recover(_rotationDigest(groupId, newMaster), newMasterSignature) != newMaster) {
            revert TrustGroups__InvalidRotationSignature(newMaster);
        }
        if (_accounts[newMaster].kind != AccountKind.None) revert TrustGroups__AddressTaken(newMaster);

        Group storage group = _groups[groupId];
        address oldMaster = group.master;
        uint64 masterObjectId = group.masterObjectId;
        group.master = newMaster;
        _masterKeys[groupId] = PublicKey({x: bytes32(newMasterPublicKey[0:32]), y: bytes32(newMasterPublicKey[32:64])});
        _accounts[oldMaster].kind = AccountKind.FormerMaster;
        _accounts[newMaster] = Account({
            groupId: groupId,
            objectId: masterObjectId,
            kind: AccountKind.Master,
            status: DeviceStatus.None,
            keyParity: 0
        });
        _objectOwners[masterObjectId] = newMaster;
        emit MasterRotated(groupId, oldMaster, newMaster);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc ITrustGroups
    function groupOf(uint64 groupId)
        external
        view
        returns (address master, uint64 masterObjectId, uint32 deviceCount, bytes memory masterPublicKey)
    {
        Group memory group = _groups[groupId];
        if (group.master == address(0)) return (address(0), 0, 0, "");
        PublicKey memory key = _masterKeys[groupId];
        return (group.master, group.masterObjectId, group.deviceCount, abi.encodePacked(key.x, key.y));
    }

    /// @inheritdoc ITrustGroups
    function masterOf(uint64 groupId) external view returns (address) {
        return _groups[groupId].master;
    }

    /// @inheritdoc ITrustGroups
    function deviceOf(address device) external view returns (uint64 groupId, uint64 objectId, DeviceStatus status) {
        Account memory account = _accounts[device];
        if (account.kind != AccountKind.Device) return (0, 0, DeviceStatus.None);
        return (account.groupId, account.objectId, account.status);
    }

    /// @inheritdoc ITrustGroups
    function isActiveDevice(address device) external view returns (bool) {
        Account memory account = _accounts[device];
        return account.kind == AccountKind.Device && account.status == DeviceStatus.Active;
    }

    /// @inheritdoc ITrustGroups
    function devicePublicKey(address device) external view returns (bytes memory) {
        Account memory account = _accounts[device];
        if (account.kind != AccountKind.Device) revert TrustGroups__UnknownDevice(device);
        return abi.encodePacked(bytes1(0x02 + account.keyParity), _deviceKeyX[device]);
    }

    /// @inheritdoc ITrustGroups
    function devicesOf(uint64 groupId, uint256 offset, uint256 limit) external view returns (address[] memory devices) {
        uint256 count = _groups[groupId].deviceCount;
        if (offset >= count) return new address[](0);
        uint256 end = count - offset > limit ? offset + limit : count;
        devices = new address[](end - offset);
        for (uint256 i = offset; i < end; ++i) {
            devices[i - offset] = _groupDevices[groupId][i];
        }
    }

    /// @inheritdoc ITrustGroups
    function objectIdTaken(uint64 objectId) external view returns (bool) {
        return _objectOwners[objectId] != address(0);
    }

    /// @inheritdoc ITrustGroups
    function tokenDigest(uint64 groupId, uint64 objectId, address device) external view returns (bytes32) {
        return _tokenDigest(groupId, objectId, device);
    }

    /// @inheritdoc ITrustGroups
    function requestDigest(uint64 groupId, uint64 objectId, address device, bytes32 tokenHash)
        external
        view
        returns (bytes32)
    {
        return _requestDigest(groupId, objectId, device, tokenHash);
    }

    /// @inheritdoc ITrustGroups
    function rotationDigest(uint64 groupId, address newMaster) external view returns (bytes32) {
        return _rotationDigest(groupId, newMaster);
    }

    /// @inheritdoc ITrustGroups
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    // ------------------------------------------------------------------ internals

    /// @dev Checks the group, the key, the master's token and the device's request; returns the device.
    function _verifyAssociation(
        uint64 groupId,
        uint64 objectId,
        bytes calldata publicKey,
        bytes calldata masterSignature,
        bytes calldata deviceSignature
    ) private view returns (address device) {
        address master = _groups[groupId].master;
        if (master == address(0)) revert TrustGroups__UnknownGroup(groupId);
        if (publicKey.length != 64) revert TrustGroups__InvalidPublicKeyLength(publicKey.length);
        device = _addressOf(publicKey);
        // The token: the paper's keccak(groupID ‖ objectID ‖ address), typed and domain-separated.
        if (_recover(_tokenDigest(groupId, objectId, device), masterSignature) != master) {
            revert TrustGroups__InvalidToken(groupId, objectId, device);
        }
        bytes32 tokenHash = keccak256(masterSignature);
        if (_recover(_requestDigest(groupId, objectId, device, tokenHash), deviceSignature) != device) {
            revert TrustGroups__InvalidDeviceSignature(device);
        }
    }

    /// @dev Replay, then checkAddr (masters included), then checkOID.
    function _requireFreshDevice(uint64 groupId, uint64 objectId, address device) private view {
        Account memory account = _accounts[device];
        if (account.kind == AccountKind.Device) {
            if (account.groupId == groupId && account.objectId == objectId) {
                revert TrustGroups__RequestAlreadyUsed(groupId, objectId, device);
            }
            revert TrustGroups__AddressTaken(device);
        }
        if (account.kind != AccountKind.None) revert TrustGroups__MasterCannotAssociate(device);
        if (_objectOwners[objectId] != address(0)) revert TrustGroups__ObjectIdTaken(objectId);
    }

    function _requireMaster(uint64 groupId) private view {
        address master = _groups[groupId].master;
        if (master == address(0)) revert TrustGroups__UnknownGroup(groupId);
        if (master != msg.sender) revert TrustGroups__NotMaster(groupId, msg.sender);
    }

    function _requireKeyOf(bytes calldata publicKey, address expected) private pure {
        if (publicKey.length != 64) revert TrustGroups__InvalidPublicKeyLength(publicKey.length);
        address derived = _addressOf(publicKey);
        if (derived != expected) revert TrustGroups__PublicKeyMismatch(expected, derived);
    }

    /// @dev Ethereum address of a 64-byte uncompressed key: the low 20 bytes of its keccak256.
    function _addressOf(bytes calldata publicKey) private pure returns (address) {
        return address(uint160(uint256(keccak256(publicKey))));
    }

    /// @dev `address(0)` for any malformed or non-canonical (high-s) signature.
    function _recover(bytes32 digest, bytes calldata signature) private pure returns (address recovered) {
        (recovered,,) = ECDSA.tryRecoverCalldata(digest, signature);
    }

    function _tokenDigest(uint64 groupId, uint64 objectId, address device) private view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(TOKEN_TYPEHASH, groupId, objectId, device)));
    }

    function _requestDigest(uint64 groupId, uint64 objectId, address device, bytes32 tokenHash)
        private
        view
        returns (bytes32)
    {
        return _hashTypedDataV4(keccak256(abi.encode(REQUEST_TYPEHASH, groupId, objectId, device, tokenHash)));
    }

    function _rotationDigest(uint64 groupId, address newMaster) private view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(ROTATION_TYPEHASH, groupId, newMaster)));
    }
}
