import Foundation
import Testing
@testable import EctoHostKeys

let sshKeygenPath = "/usr/bin/ssh-keygen"

/// Runs ssh-keygen and returns its standard output (stderr discarded).
func sshKeygen(_ arguments: [String]) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: sshKeygenPath)
    process.arguments = arguments
    let out = Pipe()
    process.standardOutput = out
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}

/// Cross-checks against the installed OpenSSH with fresh keys, salts and names
/// (the recorded-fixture tests cover the same ground without ssh-keygen).
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: sshKeygenPath)))
struct LiveSSHKeygenTests {
    @Test(arguments: ["ed25519", "ecdsa", "rsa"])
    func freshKeyFingerprint(type: String) throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let keyPath = tmp.path + "/k"
        _ = try sshKeygen(
            ["-q", "-t", type, "-N", "", "-C", "c", "-f", keyPath] + (type == "rsa" ? ["-b", "1024"] : []))
        let key = try HostKey(openSSHLine: try contents(keyPath + ".pub"))
        let listed = try sshKeygen(["-l", "-E", "sha256", "-f", keyPath + ".pub"]).split(separator: " ")
        #expect(listed.count >= 2)
        #expect(key.fingerprintSHA256 == String(listed[1]))
    }

    @Test func findAgreesOnPatternFile() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let key = fixtureKey("ked1").openSSHLine
        let patterns = [
            "*.a.test,!x.a.test", "!y.b.test,*.b.test", "h?.c.test", "h*z.d.test", "[*.e.test]:22??",
            "[10.0.0.?]:*", "10.0.0.*", "UPPER.f.test", "[Port.f.test]:2022", "a,b,,c", "*", "!*",
            "[::1]:2200", "::1", "g.test,[g.test]:2222",
        ]
        let path = tmp.path + "/kh"
        try patterns.map { "\($0) \(key)" }.joined(separator: "\n").write(
            toFile: path, atomically: false, encoding: .utf8)
        let file = try KnownHostsFile.load(path: path)
        #expect(file.warnings == [])
        let names = [
            "m.a.test", "x.a.test", "a.test", "y.b.test", "z.b.test", "h1.c.test", "h12.c.test", "habcz.d.test",
            "hz.d.test", "h.d.test", "[q.e.test]:2201", "[q.e.test]:22", "q.e.test", "[10.0.0.5]:2222", "10.0.0.5",
            "[10.0.0.55]:2222", "upper.f.test", "[port.f.test]:2022", "a", "c", "[::1]:2200", "::1", "g.test",
            "[g.test]:2222", "[g.test]:2223",
        ]
        for name in names {
            let expected = parseFindHeaders(
                try sshKeygen(["-F", name, "-f", path]).split(separator: "\n")
                    .filter { $0.hasPrefix("# Host") }.map(String.init))
            let ours = keygenStyleFind(file, name)
            #expect(ours.map(\.line) == expected.map(\.line), "name \(name)")
        }
    }

    @Test func freshlyHashedFileMatchesEveryHost() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let hosts: [(String, Int)] = [
            ("example.com", 22), ("127.0.0.1", 2222), ("127.0.0.1", 22), ("::1", 2200), ("server.internal", 443),
            ("10.1.2.3", 22), ("localhost", 65535),
        ]
        let keys = ["ked1", "ked2", "kec256", "kec384", "krsa", "ked3", "kec521"].map(fixtureKey)
        let path = tmp.path + "/kh"
        try zip(hosts, keys).map { KnownHostsFile.line(host: $0.0, port: $0.1, key: $1) }
            .joined(separator: "\n").appending("\n").write(toFile: path, atomically: false, encoding: .utf8)
        _ = try sshKeygen(["-H", "-f", path])
        let file = try KnownHostsFile.load(path: path)
        #expect(file.warnings == [])
        #expect(file.entries.count == hosts.count)
        #expect(file.entries.allSatisfy { $0.hostPatterns.hasPrefix("|1|") })
        for (index, ((host, port), key)) in zip(hosts, keys).enumerated() {
            #expect(file.check(host: host, port: port, key: key) == .match(line: index + 1), "\(host):\(port)")
            #expect(file.check(host: host, port: 2999, key: key) == .notFound, "\(host) other port")
        }
    }
}
