// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @notice The subset of forge's cheatcodes these tests use (signatures as in forge-std's Vm.sol).
/// The project ships no forge-std: the toolchain installs only from the npm registry.
interface Vm {
    struct Wallet {
        address addr;
        uint256 publicKeyX;
        uint256 publicKeyY;
        uint256 privateKey;
    }

    struct Gas {
        uint64 gasLimit;
        uint64 gasTotalUsed;
        uint64 gasMemoryUsed;
        int64 gasRefunded;
        uint64 gasRemaining;
    }

    function addr(uint256 privateKey) external pure returns (address);
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function createWallet(uint256 privateKey) external returns (Wallet memory);
    function prank(address msgSender) external;
    function startPrank(address msgSender) external;
    function stopPrank() external;
    function warp(uint256 newTimestamp) external;
    function chainId(uint256 newChainId) external;
    function etch(address target, bytes calldata newRuntimeBytecode) external;
    function assume(bool condition) external pure;
    function expectRevert(bytes calldata revertData) external;
    function expectRevert(bytes4 revertData) external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData, address emitter) external;
    function lastCallGas() external view returns (Gas memory);
    function snapshotState() external returns (uint256 snapshotId);
    function revertToState(uint256 snapshotId) external returns (bool success);
    function snapshotValue(string calldata name, uint256 value) external;

    function assertEq(uint256 left, uint256 right, string calldata error) external pure;
    function assertEq(int256 left, int256 right, string calldata error) external pure;
    function assertEq(address left, address right, string calldata error) external pure;
    function assertEq(bytes32 left, bytes32 right, string calldata error) external pure;
    function assertEq(bytes calldata left, bytes calldata right, string calldata error) external pure;
    function assertEq(bool left, bool right, string calldata error) external pure;
    function assertTrue(bool condition, string calldata error) external pure;
    function assertFalse(bool condition, string calldata error) external pure;
    function assertLe(uint256 left, uint256 right, string calldata error) external pure;
}

/// @notice Minimal test base: cheatcodes, secp256k1 key helpers and forge-std-style `bound`.
abstract contract TestBase {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    /// @dev secp256k1 group order.
    uint256 internal constant SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    /// @dev Vital kinds.
    uint8 internal constant SYSTOLIC = 1;
    uint8 internal constant DIASTOLIC = 2;
    uint8 internal constant HEART_RATE = 3;
    uint8 internal constant SPO2 = 4;
    uint8 internal constant TEMPERATURE = 5;
    uint8 internal constant GLUCOSE = 6;

    /// @dev 64-byte uncompressed public key (x ‖ y) of `privateKey`.
    function publicKey(uint256 privateKey) internal returns (bytes memory) {
        Vm.Wallet memory wallet = vm.createWallet(privateKey);
        return abi.encodePacked(wallet.publicKeyX, wallet.publicKeyY);
    }

    /// @dev 33-byte SEC1 compressed public key of `privateKey`.
    function compressedKey(uint256 privateKey) internal returns (bytes memory) {
        Vm.Wallet memory wallet = vm.createWallet(privateKey);
        return abi.encodePacked(bytes1(uint8(2 + (wallet.publicKeyY & 1))), wallet.publicKeyX);
    }

    /// @dev 65-byte signature r ‖ s ‖ v, as eth_sign / eth-account produce it.
    function signDigest(uint256 privateKey, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(privateKey, digest);
        return abi.encodePacked(r, s, v);
    }

    /// @dev Maps `x` into [min, max] (forge-std's algorithm, so edge values stay likely).
    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256 result) {
        require(min <= max, "bound: min > max");
        if (x >= min && x <= max) return x;
        uint256 size = max - min + 1;
        if (x <= 3 && size > x) return min + x;
        if (x >= type(uint256).max - 3 && size > type(uint256).max - x) return max - (type(uint256).max - x);
        if (x > max) {
            uint256 diff = x - max;
            uint256 rem = diff % size;
            if (rem == 0) return max;
            return min + rem - 1;
        }
        uint256 diff2 = min - x;
        uint256 rem2 = diff2 % size;
        if (rem2 == 0) return min;
        return max - rem2 + 1;
    }

    /// @dev A valid secp256k1 private key derived from a fuzz input.
    function boundKey(uint256 x) internal pure returns (uint256) {
        return bound(x, 1, SECP256K1_N - 1);
    }
}
