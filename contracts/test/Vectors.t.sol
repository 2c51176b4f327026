// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ITrustGroups} from "../src/interfaces/ITrustGroups.sol";
import {TrustGroups} from "../src/TrustGroups.sol";
import {TestBase} from "./utils/TestBase.sol";

/**
 * @notice The test vector of docs/spec/token.md (v1): fixed keys, IDs, chain and contract address.
 * The same digests and signatures come out of eth-account's `encode_typed_data` + `sign_message`
 * (RFC 6979 deterministic ECDSA), so the Python side can check itself against these constants.
 */
contract VectorsTest is TestBase {
    address internal constant VERIFYING_CONTRACT = 0x5FbDB2315678afecb367f032d93F642f64180aa3;
    uint256 internal constant CHAIN_ID = 31337;
    uint256 internal constant MASTER_KEY = 0xA11CE;
    uint256 internal constant DEVICE_KEY = 0xD1;
    uint256 internal constant NEW_MASTER_KEY = 0xC0FFEE;
    uint64 internal constant GROUP_ID = 7;
    uint64 internal constant MASTER_OBJECT_ID = 1000;
    uint64 internal constant OBJECT_ID = 1001;

    address internal constant MASTER = 0xe05fcC23807536bEe418f142D19fa0d21BB0cfF7;
    address internal constant DEVICE = 0x18Df8BA2Ef19083DDFF68f8B33976Cf22E8419c6;
    address internal constant NEW_MASTER = 0xF5A5E415061470A8b9137959180901aEa72450a4;
    bytes internal constant DEVICE_PUBLIC_KEY =
        hex"7f30ea2476b399b4957509c88f77d0191afa2ff5cb7b14fd6d8e7d65aaab1193ca5ef7d4b231c94c3b15389a5f6311e9daff7bb67b103e9880ef4bff637acaec";
    bytes internal constant DEVICE_COMPRESSED = hex"027f30ea2476b399b4957509c88f77d0191afa2ff5cb7b14fd6d8e7d65aaab1193";

    bytes32 internal constant TOKEN_TYPEHASH = 0xf87309ee252dc6022242362c7eac991c7a1762e5346639e11c5070f9b261e519;
    bytes32 internal constant REQUEST_TYPEHASH = 0xf27c004e50c419a7ae786dd4fd170e267946a7f441f65819bc887cfa3596facc;
    bytes32 internal constant ROTATION_TYPEHASH = 0xc99ea659e6d65ef8560ec03d541ebb28b88f78ffb625db082bd2c7e6e1fed1de;
    bytes32 internal constant DOMAIN_SEPARATOR = 0x83702c47a059bcd4a0599326b1a55c6bdb64d1c6260b638155ab013a476adda6;
    bytes32 internal constant TOKEN_DIGEST = 0x4fa89a6b1ab6203c8de9a5d21174095a6684f86942160a44b2fcfcec5524b7c1;
    bytes internal constant TOKEN =
        hex"9b896a785c4707fd3ae893d8a317bf30a474f46b884df15545c736370a255f1c26c7534627533b3a76bb5e019273f8f9e5258518c1448dabd1de1bbe896348841b";
    bytes32 internal constant TOKEN_HASH = 0xec8705c071642abecd222161c12c437097bbdc3c27ffdab9a13dbee295487303;
    bytes32 internal constant REQUEST_DIGEST = 0x1a3db36d59e3e1fab134f01a3043e01c4de114f7c6357e98e36f40df2e7c44d2;
    bytes internal constant REQUEST =
        hex"44f1a7e5d90b882699120eba18137cccacad9cc72a82b71026f05d1e17f21f325139f4d62b33918450d42078983e44308e6d6ade1066798c7af0bc89ec0f24121c";
    bytes32 internal constant ROTATION_DIGEST = 0x45d16ad5ca14c5e1dcb753981984be83219a0f2e88396f2dbbab7f41130a8ea1;
    bytes internal constant ROTATION =
        hex"105c0ac3accc0161a0b26e2115a6bd0302a0230b064d576c7776b6083bd058e6171a96f613ab8471958b6a2f69209a8af192b6ab669fe3cadd30abd1607015341b";

    TrustGroups internal groups;

    function setUp() public {
        // The runtime code of a fresh deployment, placed at the vector's address on the vector's chain.
        vm.etch(VERIFYING_CONTRACT, address(new TrustGroups()).code);
        vm.chainId(CHAIN_ID);
        groups = TrustGroups(VERIFYING_CONTRACT);
    }

    function test_VectorV1_KeysAndAddresses() public {
        vm.assertEq(vm.addr(MASTER_KEY), MASTER, "master");
        vm.assertEq(vm.addr(DEVICE_KEY), DEVICE, "device");
        vm.assertEq(vm.addr(NEW_MASTER_KEY), NEW_MASTER, "new master");
        vm.assertEq(publicKey(DEVICE_KEY), DEVICE_PUBLIC_KEY, "device key");
        vm.assertEq(compressedKey(DEVICE_KEY), DEVICE_COMPRESSED, "compressed");
        vm.assertEq(address(uint160(uint256(keccak256(DEVICE_PUBLIC_KEY)))), DEVICE, "address of key");
    }

    function test_VectorV1_Digests() public view {
        vm.assertEq(groups.TOKEN_TYPEHASH(), TOKEN_TYPEHASH, "token typehash");
        vm.assertEq(groups.REQUEST_TYPEHASH(), REQUEST_TYPEHASH, "request typehash");
        vm.assertEq(groups.ROTATION_TYPEHASH(), ROTATION_TYPEHASH, "rotation typehash");
        vm.assertEq(groups.domainSeparator(), DOMAIN_SEPARATOR, "domain");
        vm.assertEq(groups.tokenDigest(GROUP_ID, OBJECT_ID, DEVICE), TOKEN_DIGEST, "token digest");
        vm.assertEq(keccak256(TOKEN), TOKEN_HASH, "token hash");
        vm.assertEq(groups.requestDigest(GROUP_ID, OBJECT_ID, DEVICE, TOKEN_HASH), REQUEST_DIGEST, "request digest");
        vm.assertEq(groups.rotationDigest(GROUP_ID, NEW_MASTER), ROTATION_DIGEST, "rotation digest");
    }

    function test_VectorV1_Signatures() public pure {
        vm.assertEq(signDigest(MASTER_KEY, TOKEN_DIGEST), TOKEN, "token (RFC 6979)");
        vm.assertEq(signDigest(DEVICE_KEY, REQUEST_DIGEST), REQUEST, "request (RFC 6979)");
        vm.assertEq(signDigest(NEW_MASTER_KEY, ROTATION_DIGEST), ROTATION, "rotation (RFC 6979)");
    }

    function test_VectorV1_AssociatesAndRotates() public {
        bytes memory masterKey = publicKey(MASTER_KEY);
        vm.prank(MASTER);
        groups.createGroup(GROUP_ID, MASTER_OBJECT_ID, masterKey);
        groups.associate(GROUP_ID, OBJECT_ID, DEVICE_PUBLIC_KEY, TOKEN, REQUEST);
        vm.assertTrue(groups.isActiveDevice(DEVICE), "associated");
        vm.assertEq(groups.devicePublicKey(DEVICE), DEVICE_COMPRESSED, "stored key");
        bytes memory newKey = publicKey(NEW_MASTER_KEY);
        vm.prank(MASTER);
        groups.rotateMaster(GROUP_ID, newKey, ROTATION);
        vm.assertEq(groups.masterOf(GROUP_ID), NEW_MASTER, "rotated");
        (,, ITrustGroups.DeviceStatus status) = groups.deviceOf(DEVICE);
        vm.assertEq(uint256(status), uint256(ITrustGroups.DeviceStatus.Active), "device kept");
    }
}
