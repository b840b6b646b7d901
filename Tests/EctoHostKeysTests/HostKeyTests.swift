import Foundation
import Testing
@testable import EctoHostKeys

/// RFC 4251 `string`.
func sshString(_ bytes: [UInt8]) -> [UInt8] {
    let n = UInt32(bytes.count)
    return [UInt8(n >> 24), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + bytes
}

func sshString(_ text: String) -> [UInt8] { sshString(Array(text.utf8)) }

@Suite struct HostKeyTests {
    /// Each generated key: `fingerprintSHA256` must equal the second field of
    /// `ssh-keygen -l -E sha256` for its .pub file.
    @Test(arguments: Fixtures.keys.map(\.name))
    func fingerprintMatchesSSHKeygen(name: String) throws {
        let fixture = Fixtures.key(name)
        let fields = fixture.pubLine.split(separator: " ")
        let key = try HostKey(openSSHLine: fixture.pubLine)
        let keygen = fixture.keygenFingerprintOutput.split(separator: " ")
        #expect(key.fingerprintSHA256 == String(keygen[1]))
        #expect(key.algorithm == String(fields[0]))
        #expect(key.base64 == String(fields[1]))
        #expect(key.openSSHLine == "\(fields[0]) \(fields[1])")
        #expect(try HostKey(base64: String(fields[1])) == key)
        #expect(try HostKey(blob: key.blob) == key)
        // ssh-keygen prints the key type in parentheses at the end.
        let keygenType = String(keygen.last!)
        let expectedType = ["ssh-ed25519": "(ED25519)", "ssh-rsa": "(RSA)"][key.algorithm] ?? "(ECDSA)"
        #expect(keygenType == expectedType)
    }

    @Test func fingerprintHasNoPadding() throws {
        for fixture in Fixtures.keys {
            let fp = try HostKey(openSSHLine: fixture.pubLine).fingerprintSHA256
            #expect(fp.hasPrefix("SHA256:"))
            #expect(!fp.contains("="))
            #expect(fp.count == 7 + 43)
        }
    }

    @Test func distinctKeysAreUnequalAndHashDistinctly() throws {
        let keys = try Fixtures.keys.map { try HostKey(openSSHLine: $0.pubLine) }
        #expect(Set(keys).count == keys.count)
        #expect(Set(keys.map(\.fingerprintSHA256)).count == keys.count)
    }

    @Test func base64MatchesFoundation() throws {
        for length in 0..<40 {
            let data = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) }
            let ours = Base64.encode(data)
            #expect(ours == Data(data).base64EncodedString())
            #expect(Base64.decode(ours) == data)
            // Unpadded input decodes too.
            #expect(Base64.decode(ours.replacingOccurrences(of: "=", with: "")) == data)
        }
    }

    @Test(arguments: ["A", "AB=C", "AB===", "AB=", "A===", "AAAA*AAA", "AAA-", "AA==AA==", "AAAA AAAA"])
    func base64Rejects(text: String) {
        #expect(Base64.decode(text) == nil)
    }

    @Test func rejectsMalformedBlobs() {
        let ed = Array(repeating: UInt8(7), count: 32)
        // Valid reference blob first, so the failures below are due to the change.
        #expect(throws: Never.self) { try HostKey(blob: sshString("ssh-ed25519") + sshString(ed)) }

        let bad: [(String, [UInt8])] = [
            ("empty", []),
            ("short length", [0, 0, 0]),
            ("length past end", [0, 0, 0, 20] + Array("ssh-ed25519".utf8)),
            ("empty type", sshString("")),
            ("space in type", sshString("ssh ed25519") + sshString(ed)),
            ("comma in type", sshString("ssh-ed25519,x") + sshString(ed)),
            ("control char in type", sshString("ssh-\u{1}") + sshString(ed)),
            ("type over 64 chars", sshString(String(repeating: "a", count: 65))),
            ("ed25519 short key", sshString("ssh-ed25519") + sshString(Array(ed.dropLast()))),
            ("ed25519 missing key", sshString("ssh-ed25519")),
            ("ed25519 trailing bytes", sshString("ssh-ed25519") + sshString(ed) + [0]),
            (
                "ecdsa wrong curve",
                sshString("ecdsa-sha2-nistp256") + sshString("nistp384")
                    + sshString([4] + [UInt8](repeating: 1, count: 64))
            ),
            (
                "ecdsa compressed point",
                sshString("ecdsa-sha2-nistp256") + sshString("nistp256")
                    + sshString([2] + [UInt8](repeating: 1, count: 32))
            ),
            ("rsa missing modulus", sshString("ssh-rsa") + sshString([1, 0, 1])),
        ]
        for (what, blob) in bad {
            #expect(throws: HostKeyError.self, "\(what)") { try HostKey(blob: blob) }
        }
    }

    @Test func acceptsUnknownAlgorithmWithWellFormedType() throws {
        let key = try HostKey(blob: sshString("ssh-future@example.org") + [1, 2, 3])
        #expect(key.algorithm == "ssh-future@example.org")
    }

    @Test func base64AndLineErrors() throws {
        #expect(throws: HostKeyError.self) { try HostKey(base64: "") }
        #expect(throws: HostKeyError.self) { try HostKey(base64: "!!!!") }
        let ed1 = Fixtures.key("ked1").pubLine
        let fields = ed1.split(separator: " ")
        #expect(try HostKey(base64: "  \(fields[1])\n").openSSHLine == "\(fields[0]) \(fields[1])")
        #expect(throws: HostKeyError.self) { try HostKey(openSSHLine: "ecdsa-sha2-nistp256 \(fields[1])") }
        #expect(throws: HostKeyError.self) { try HostKey(openSSHLine: "ssh-ed25519") }
        // RSA signature algorithm names are accepted for ssh-rsa blobs (as sshkey_read does).
        let rsa = Fixtures.key("krsa").pubLine.split(separator: " ")
        #expect(try HostKey(openSSHLine: "rsa-sha2-512 \(rsa[1])").algorithm == "ssh-rsa")
    }

    @Test func errorDescriptionIsMessage() {
        do {
            _ = try HostKey(blob: [0, 0])
            Issue.record("expected an error")
        } catch {
            #expect(error.description == error.message)
            #expect(!error.message.isEmpty)
        }
    }
}
