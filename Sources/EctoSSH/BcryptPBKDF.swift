import CLibCrypto

/// OpenBSD's bcrypt_pbkdf, the key derivation of encrypted OpenSSH private keys (`ssh-keygen -N`,
/// `-a ROUNDS`): a PBKDF2-like construction over SHA-512 and "eksblowfish" (bcrypt's expensive key
/// schedule). Written after the description in OpenBSD's bcrypt_pbkdf.c and blowfish.c; tested
/// against OpenBSD's vectors and against keys made by ssh-keygen.
enum BcryptPBKDF {
    static let hashSize = 32

    /// Derives `keyLength` bytes (at most 1024) from `password` and `salt`; nil for invalid input
    /// (an empty password or salt, zero rounds), as the original returns -1.
    static func derive(password: [UInt8], salt: [UInt8], rounds: Int, keyLength: Int) -> [UInt8]? {
        guard rounds >= 1, !password.isEmpty, !salt.isEmpty, keyLength > 0, keyLength <= hashSize * hashSize else {
            return nil
        }
        let stride = (keyLength + hashSize - 1) / hashSize
        var amount = (keyLength + stride - 1) / stride
        var sha2pass = sha512(password)
        defer { wipe(&sha2pass) }
        var key = [UInt8](repeating: 0, count: keyLength)
        var remaining = keyLength
        var count: UInt32 = 1
        let state = Blowfish()
        var out = [UInt8](repeating: 0, count: hashSize)
        var tmp = [UInt8](repeating: 0, count: hashSize)
        defer {
            wipe(&out)
            wipe(&tmp)
        }
        while remaining > 0 {
            let countSalt: [UInt8] = [
                UInt8(count >> 24), UInt8((count >> 16) & 0xFF), UInt8((count >> 8) & 0xFF), UInt8(count & 0xFF),
            ]
            var sha2salt = sha512(salt + countSalt)
            state.bcryptHash(sha2pass, sha2salt, into: &tmp)
            out = tmp
            for _ in 1..<rounds {
                sha2salt = sha512(tmp)
                state.bcryptHash(sha2pass, sha2salt, into: &tmp)
                for j in 0..<hashSize { out[j] ^= tmp[j] }
            }
            wipe(&sha2salt)
            amount = min(amount, remaining)
            var written = 0
            for i in 0..<amount {
                let destination = i * stride + Int(count - 1)
                if destination >= keyLength { break }
                key[destination] = out[i]
                written += 1
            }
            remaining -= written
            count += 1
        }
        return key
    }

    static func sha512(_ data: [UInt8]) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 64)
        data.withUnsafeBufferPointer { input in
            digest.withUnsafeMutableBufferPointer { ecto_sha512(input.baseAddress, input.count, $0.baseAddress) }
        }
        return digest
    }
}

/// Overwrites `bytes` with zeros in a way the optimiser keeps.
func wipe(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { raw in
        if let base = raw.baseAddress { ecto_cleanse(base, raw.count) }
    }
}

/// Blowfish state (P-array and S-boxes) with the eksblowfish key schedule steps bcrypt uses.
/// Not `Sendable`: one derivation's scratch space, wiped on deinit.
final class Blowfish {
    /// 18 P words, then the four S-boxes of 256 words each.
    private let state = UnsafeMutablePointer<UInt32>.allocate(capacity: 18 + 1024)

    init() { reset() }

    deinit {
        ecto_cleanse(state, (18 + 1024) * 4)
        state.deallocate()
    }

    func reset() {
        BlowfishConstants.p.withUnsafeBufferPointer { state.update(from: $0.baseAddress!, count: 18) }
        BlowfishConstants.s.withUnsafeBufferPointer { (state + 18).update(from: $0.baseAddress!, count: 1024) }
    }

    @inline(__always)
    private func f(_ x: UInt32) -> UInt32 {
        let s = state + 18
        return ((s[Int(x >> 24)] &+ s[256 + Int((x >> 16) & 0xFF)]) ^ s[512 + Int((x >> 8) & 0xFF)])
            &+ s[768 + Int(x & 0xFF)]
    }

    /// Encrypts one 64-bit block held as two words.
    @inline(__always)
    func encipher(_ left: inout UInt32, _ right: inout UInt32) {
        var l = left ^ state[0]
        var r = right
        var i = 1
        while i <= 16 {
            r ^= f(l) ^ state[i]
            l ^= f(r) ^ state[i + 1]
            i += 2
        }
        left = r ^ state[17]
        right = l
    }

    /// Four bytes of `data` as a big-endian word, cycling through `data`.
    @inline(__always)
    private static func streamWord(_ data: UnsafeBufferPointer<UInt8>, _ position: inout Int) -> UInt32 {
        var word: UInt32 = 0
        for _ in 0..<4 {
            if position >= data.count { position = 0 }
            word = word << 8 | UInt32(data[position])
            position += 1
        }
        return word
    }

    /// Blowfish_expandstate: mixes `key` into P, then re-keys everything, feeding `data` in.
    func expand(data: UnsafeBufferPointer<UInt8>, key: UnsafeBufferPointer<UInt8>) {
        var j = 0
        for i in 0..<18 { state[i] ^= Self.streamWord(key, &j) }
        j = 0
        var l: UInt32 = 0
        var r: UInt32 = 0
        var i = 0
        while i < 18 + 1024 {
            l ^= Self.streamWord(data, &j)
            r ^= Self.streamWord(data, &j)
            encipher(&l, &r)
            state[i] = l
            state[i + 1] = r
            i += 2
        }
    }

    /// Blowfish_expand0state: the same without data.
    func expand0(key: UnsafeBufferPointer<UInt8>) {
        var j = 0
        for i in 0..<18 { state[i] ^= Self.streamWord(key, &j) }
        var l: UInt32 = 0
        var r: UInt32 = 0
        var i = 0
        while i < 18 + 1024 {
            encipher(&l, &r)
            state[i] = l
            state[i + 1] = r
            i += 2
        }
    }

    /// bcrypt_hash: eksblowfish keyed with the hashed password and salt, then 64 encryptions of
    /// "OxychromaticBlowfishSwatDynamite"; the words come out little-endian.
    func bcryptHash(_ sha2pass: [UInt8], _ sha2salt: [UInt8], into out: inout [UInt8]) {
        reset()
        sha2pass.withUnsafeBufferPointer { pass in
            sha2salt.withUnsafeBufferPointer { salt in
                expand(data: salt, key: pass)
                for _ in 0..<64 {
                    expand0(key: salt)
                    expand0(key: pass)
                }
            }
        }
        let text = Array("OxychromaticBlowfishSwatDynamite".utf8)
        var words = [UInt32](repeating: 0, count: 8)
        text.withUnsafeBufferPointer { buffer in
            var j = 0
            for i in 0..<8 { words[i] = Self.streamWord(buffer, &j) }
        }
        for _ in 0..<64 {
            var i = 0
            while i < 8 {
                var l = words[i]
                var r = words[i + 1]
                encipher(&l, &r)
                words[i] = l
                words[i + 1] = r
                i += 2
            }
        }
        for i in 0..<8 {
            out[4 * i + 3] = UInt8(words[i] >> 24)
            out[4 * i + 2] = UInt8((words[i] >> 16) & 0xFF)
            out[4 * i + 1] = UInt8((words[i] >> 8) & 0xFF)
            out[4 * i] = UInt8(words[i] & 0xFF)
        }
    }

    /// Plain Blowfish key schedule (for the cipher's own test vectors): expand0 from the initial state.
    func setKey(_ key: [UInt8]) {
        reset()
        key.withUnsafeBufferPointer { expand0(key: $0) }
    }
}
