import EctoHostKeys
import EctoTestSupport
import Foundation
import Testing

@testable import EctoSSH

private func hex(_ text: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        bytes.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}

private func hexString(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

@Suite("bcrypt_pbkdf and Blowfish")
struct BcryptPBKDFTests {
    @Test("Blowfish known-answer vectors (Eric Young's set)")
    func blowfishVectors() {
        let cases: [(key: String, plain: String, cipher: String)] = [
            ("0000000000000000", "0000000000000000", "4ef997456198dd78"),
            ("ffffffffffffffff", "ffffffffffffffff", "51866fd5b85ecb8a"),
        ]
        for c in cases {
            let blowfish = Blowfish()
            blowfish.setKey(hex(c.key))
            let p = hex(c.plain)
            var l = p[0..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            var r = p[4..<8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            blowfish.encipher(&l, &r)
            #expect(String(format: "%08x%08x", l, r) == c.cipher)
        }
    }

    @Test("OpenBSD's bcrypt_pbkdf vectors")
    func openBSDVectors() {
        let cases: [(password: [UInt8], salt: [UInt8], rounds: Int, out: String)] = [
            (
                Array("password".utf8), Array("salt".utf8), 4,
                "5bbf0cc293587f1c3635555c27796598d47e579071bf427e9d8fbe842aba34d9"
            ),
            (Array("password".utf8), [0], 4, "c12b566235eee04c212598970a579a67"),
            ([0], Array("salt".utf8), 4, "6051be18c2f4f82cbf0efee5471b4bb9"),
            (
                Array("password".utf8) + [0], Array("salt".utf8) + [0], 4,
                "7410e44cf4fa07bfaac8a928b1727fac001375e7bf7384370f48efd121743050"
            ),
        ]
        for c in cases {
            let derived = BcryptPBKDF.derive(
                password: c.password, salt: c.salt, rounds: c.rounds, keyLength: c.out.count / 2)
            #expect(derived.map(hexString) == c.out)
        }
    }

    @Test("invalid input is refused as in the original")
    func invalidInput() {
        #expect(BcryptPBKDF.derive(password: [], salt: [1], rounds: 4, keyLength: 16) == nil)
        #expect(BcryptPBKDF.derive(password: [1], salt: [], rounds: 4, keyLength: 16) == nil)
        #expect(BcryptPBKDF.derive(password: [1], salt: [1], rounds: 0, keyLength: 16) == nil)
    }
}

/// Keys made by ssh-keygen, once per suite (RSA generation is slow, 4096 bits most of all).
final class GeneratedKeys: @unchecked Sendable {
    static let shared = try! GeneratedKeys()
    let directory: TestDirectory
    let rsa: [Int: KeyPair]
    let ed25519: KeyPair

    init() throws {
        directory = try TestDirectory(prefix: "ecto-keys")
        var rsa: [Int: KeyPair] = [:]
        for bits in [2048, 3072, 4096] {
            rsa[bits] = try KeyPair.generate(type: "rsa", in: directory, name: "rsa\(bits)", bits: bits)
        }
        self.rsa = rsa
        ed25519 = try KeyPair.generate(type: "ed25519", in: directory, name: "ed")
    }
}

@Suite("Private key files made by ssh-keygen")
struct PrivateKeyLoadTests {
    let keys = GeneratedKeys.shared

    private func load(_ path: String, _ passphrase: String?) throws -> SSHPrivateKey {
        let bytes = [UInt8](FileManager.default.contents(atPath: path)!)
        return try SSHPrivateKey.load(bytes, passphrase: passphrase.map { Array($0.utf8) })
    }

    private func publicBlob(_ pair: KeyPair) -> [UInt8] { try! HostKey(base64: pair.base64Blob).blob }

    @Test(
        "RSA in every format and size: the public key matches the .pub and signatures verify",
        arguments: [2048, 3072, 4096])
    func rsaFormats(bits: Int) throws {
        let original = keys.rsa[bits]!
        let d = keys.directory
        let variants: [(KeyPair, String)] = [
            (original, "OpenSSH, plain"),
            (
                try original.converted(to: d.file("rsa\(bits)-enc"), format: "RFC4716", passphrase: "correct horse"),
                "OpenSSH, passphrase"
            ),
            (try original.converted(to: d.file("rsa\(bits)-pkcs1"), format: "PEM", passphrase: nil), "PEM PKCS#1"),
            (
                try original.converted(to: d.file("rsa\(bits)-pkcs1-enc"), format: "PEM", passphrase: "pem pass"),
                "PEM PKCS#1, encrypted"
            ),
            (try original.converted(to: d.file("rsa\(bits)-pkcs8"), format: "PKCS8", passphrase: nil), "PKCS#8"),
            (
                try original.converted(to: d.file("rsa\(bits)-pkcs8-enc"), format: "PKCS8", passphrase: "p8 pass"),
                "PKCS#8, encrypted"
            ),
        ]
        for (pair, what) in variants {
            let key = try load(pair.privatePath, pair.passphrase)
            #expect(key.isRSA, "\(what)")
            #expect(key.bits == bits, "\(what)")
            #expect(key.publicKeyBlob == publicBlob(pair), "\(what): public key differs from the .pub")
            let data = Array("session id and request \(bits)".utf8)
            for algorithm in RSASignatureAlgorithm.allCases {
                let signature = try #require(key.signRSA(data, algorithm: algorithm))
                #expect(signature.count == bits / 8)
                #expect(key.verifyRSA(data, signature: signature, algorithm: algorithm), "\(what) \(algorithm)")
                let other = RSASignatureAlgorithm.allCases.first { $0 != algorithm }!
                #expect(
                    !key.verifyRSA(data, signature: signature, algorithm: other),
                    "a \(algorithm) signature must not verify as \(other)")
            }
        }
    }

    @Test("a wrong or missing passphrase is named as such, for both formats")
    func wrongPassphrase() throws {
        let d = keys.directory
        let openSSH = try keys.rsa[2048]!.converted(to: d.file("wrong-openssh"), format: "RFC4716", passphrase: "right")
        let pem = try keys.rsa[2048]!.converted(to: d.file("wrong-pem"), format: "PEM", passphrase: "right")
        for pair in [openSSH, pem] {
            #expect(throws: PrivateKeyFileError(.wrongPassphrase, "wrong passphrase")) {
                try load(pair.privatePath, "wrong")
            }
            do {
                _ = try load(pair.privatePath, nil)
                Issue.record("an encrypted key loaded without a passphrase")
            } catch let error as PrivateKeyFileError {
                #expect(error.kind == .needsPassphrase)
            }
        }
    }

    @Test("bcrypt rounds: -a 4 and -a 64 keys decrypt, and the rounds are read from the file")
    func rounds() throws {
        for rounds in [4, 64] {
            let pair = try KeyPair.generate(
                type: "ed25519", in: keys.directory, name: "ed-a\(rounds)", passphrase: "pw\(rounds)", rounds: rounds)
            let bytes = [UInt8](FileManager.default.contents(atPath: pair.privatePath)!)
            let file = try PrivateKeyFile.parse(bytes)
            #expect(file.rounds == rounds && file.kdfName == "bcrypt" && file.cipherName == "aes256-ctr")
            let key = try load(pair.privatePath, "pw\(rounds)")
            #expect(key.keyType == "ssh-ed25519" && key.publicKeyBlob == publicBlob(pair))
        }
    }

    @Test("ed25519 and ECDSA keys are recognised (signed by libssh2), DSA and public keys are refused by name")
    func otherTypes() throws {
        let ed = try load(keys.ed25519.privatePath, nil)
        #expect(!ed.isRSA && ed.keyType == "ssh-ed25519" && ed.publicKeyBlob == publicBlob(keys.ed25519))
        let ecdsa = try KeyPair.generate(type: "ecdsa", in: keys.directory, name: "ec")
        #expect(try load(ecdsa.privatePath, nil).keyType == "ecdsa-sha2-nistp256")
        do {
            _ = try load(keys.ed25519.publicPath, nil)
            Issue.record("a public key loaded as a private key")
        } catch let error as PrivateKeyFileError {
            #expect(error.kind == .publicKey)
        }
        let garbage = try keys.directory.write("garbage", "hello\n")
        #expect(throws: PrivateKeyFileError.self) { try load(garbage, nil) }
    }

    @Test("the renamed RSA blob differs from ssh-rsa only in its first string")
    func renamedBlob() throws {
        let blob = publicBlob(keys.rsa[2048]!)
        let renamed = try #require(RSASignatureAlgorithm.sha512.blob(from: blob))
        let strings = try #require(SSHWire.strings(renamed))
        #expect(String(decoding: strings[0], as: UTF8.self) == "rsa-sha2-512")
        #expect(Array(SSHWire.strings(blob)![1...]) == Array(strings[1...]))
        #expect(RSASignatureAlgorithm.sha1.blob(from: blob) == blob)
    }
}
