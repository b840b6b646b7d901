import Testing
@testable import EctoHostKeys

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

func bytes(hex: String) -> [UInt8] {
    var out = [UInt8]()
    var chars = Array(hex.utf8)[...]
    while chars.count >= 2 {
        out.append(UInt8(String(decoding: chars.prefix(2), as: UTF8.self), radix: 16)!)
        chars = chars.dropFirst(2)
    }
    return out
}

@Suite struct DigestTests {
    static let msg448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"

    // FIPS 180-4 example vectors (NIST CSRC "Examples with intermediate values").
    @Test(arguments: [
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        (msg448, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ])
    func sha256(message: String, expected: String) {
        #expect(hex(Digest.sha256(Array(message.utf8))) == expected)
    }

    @Test(arguments: [
        ("", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        ("abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        (msg448, "84983e441c3bd26ebaae4aa1f95129e5e54670f1"),
    ])
    func sha1(message: String, expected: String) {
        #expect(hex(Digest.sha1(Array(message.utf8))) == expected)
    }

    @Test func oneMillionA() {
        let million = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(hex(Digest.sha256(million)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        #expect(hex(Digest.sha1(million)) == "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
    }

    /// Lengths around the padding boundaries (55/56 bytes: length field fits or
    /// not; 64: exact block). Expected values from sha256sum / sha1sum of the
    /// bytes (i*7+3) mod 256.
    @Test(arguments: [
        (
            55, "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b",
            "ddf57317ef34bfee3b6df83d359098930eb278bc"
        ),
        (
            56, "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27",
            "a0d492bb0fc889d0eca3bc137066ab6f4f74f369"
        ),
        (
            57, "35df609437dcfea3279283ab79fd554e2bf78f8f7ae2de532d8ee300b09e8f73",
            "11a02dcf95859677a62e75024067c22b165d890f"
        ),
        (
            63, "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055",
            "c55856749bef509bdfe6bfebfc7bf4e793e82132"
        ),
        (
            64, "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241",
            "bede92be29c3874e1b54ddc77988d606fc857a8e"
        ),
        (
            65, "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e",
            "b05a80522b053d6dc7e0a517d0e70212c7dad11f"
        ),
        (
            119, "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e",
            "504e27376a6e0f0dba8295b85cb25dc4dfa17d23"
        ),
        (
            120, "7836b787757e95e58b3ca5aec90b1b004e8deba1e50e9675af9cabf1a13a04b5",
            "82134b02fb3f702491be9bed581eeab59334acb2"
        ),
        (
            128, "d2742f1f4ac6bb7ca2b239ee18402ba8b3f9f8e652d2a72973c2b9ba11c08cf6",
            "a09133e6730ffe899efb70204cb5646cd5dc24ee"
        ),
    ])
    func paddingBoundaries(length: Int, sha256: String, sha1: String) {
        let data = (0..<length).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) }
        #expect(hex(Digest.sha256(data)) == sha256)
        #expect(hex(Digest.sha1(data)) == sha1)
    }

    @Test func acceptsAnyByteCollection() {
        let abc = "xabcx".utf8.dropFirst().dropLast()
        #expect(hex(Digest.sha256(abc)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(hex(Digest.sha1(Array("abc".utf8)[...])) == "a9993e364706816aba3e25717850c26c9cd0d89d")
    }

    /// RFC 2202 §3 test cases 1–7.
    @Test(arguments: [
        (
            bytes(hex: String(repeating: "0b", count: 20)), Array("Hi There".utf8),
            "b617318655057264e28bc0b6fb378c8ef146be00"
        ),
        (Array("Jefe".utf8), Array("what do ya want for nothing?".utf8), "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"),
        (
            bytes(hex: String(repeating: "aa", count: 20)), bytes(hex: String(repeating: "dd", count: 50)),
            "125d7342b9ac11cd91a39af48aa17b4f63f175d3"
        ),
        (
            bytes(hex: "0102030405060708090a0b0c0d0e0f10111213141516171819"),
            bytes(hex: String(repeating: "cd", count: 50)), "4c9007f4026250c6bc8414f9bf50c86c2d7235da"
        ),
        (
            bytes(hex: String(repeating: "0c", count: 20)), Array("Test With Truncation".utf8),
            "4c1a03424b55e07fe7f27be1d58bb9324a9a5a04"
        ),
        (
            bytes(hex: String(repeating: "aa", count: 80)),
            Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8),
            "aa4ae5e15272d00e95705637ce8a3b55ed402112"
        ),
        (
            bytes(hex: String(repeating: "aa", count: 80)),
            Array("Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data".utf8),
            "e8e99d0f45237d786d6bbaa7965c7808bbff1a91"
        ),
    ])
    func hmacSHA1(key: [UInt8], data: [UInt8], expected: String) {
        #expect(hex(Digest.hmacSHA1(key: key, message: data)) == expected)
    }

    @Test func hexHelperRoundTrips() {
        // Guards the helpers the vectors above rely on.
        #expect(bytes(hex: "00ff10") == [0x00, 0xff, 0x10])
        #expect(hex([0x00, 0xff, 0x10]) == "00ff10")
    }
}
