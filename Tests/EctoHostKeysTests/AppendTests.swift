import Foundation
import Testing
@testable import EctoHostKeys

/// A fresh directory under the system temp dir, removed by `cleanup()`.
struct TempDir {
    let path: String

    init() throws {
        let base = FileManager.default.temporaryDirectory.appendingPathComponent("ecto-hostkeys-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: base, withIntermediateDirectories: false)
        path = base.path
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

func permissions(_ path: String) throws -> Int {
    let attributes = try FileManager.default.attributesOfItem(atPath: path)
    return (attributes[.posixPermissions] as! NSNumber).intValue & 0o777
}

func contents(_ path: String) throws -> String {
    String(decoding: try Data(contentsOf: URL(fileURLWithPath: path)), as: UTF8.self)
}

@Suite struct AppendTests {
    let ed1 = fixtureKey("ked1")
    let ec256 = fixtureKey("kec256")

    @Test func createsFileAndDirectoriesPrivately() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.path + "/a/.ssh/known_hosts"
        try KnownHostsFile.append(host: "127.0.0.1", port: 2222, key: ed1, to: path)

        #expect(try contents(path) == "[127.0.0.1]:2222 \(ed1.openSSHLine)\n")
        #expect(try permissions(path) == 0o600)
        #expect(try permissions(tmp.path + "/a/.ssh") == 0o700)
        #expect(try permissions(tmp.path + "/a") == 0o700)

        let loaded = try KnownHostsFile.load(path: path)
        #expect(loaded.warnings == [])
        #expect(loaded.check(host: "127.0.0.1", port: 2222, key: ed1) == .match(line: 1))
    }

    @Test func keepsContentAndAddsMissingNewline() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.path + "/known_hosts"
        let existing = "# keep me\nexample.com \(ec256.openSSHLine) old"  // no final newline
        try existing.write(toFile: path, atomically: false, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: path)

        try KnownHostsFile.append(host: "Example.COM", port: 22, key: ed1, to: path)
        #expect(try contents(path) == existing + "\nexample.com \(ed1.openSSHLine)\n")
        #expect(try permissions(path) == 0o644)  // existing mode untouched

        try KnownHostsFile.append(host: "::1", port: 2200, key: ec256, to: path)
        #expect(try contents(path) == existing + "\nexample.com \(ed1.openSSHLine)\n[::1]:2200 \(ec256.openSSHLine)\n")

        let loaded = try KnownHostsFile.load(path: path)
        #expect(loaded.entries.map(\.line) == [2, 3, 4])
        #expect(loaded.check(host: "example.com", port: 22, key: ed1) == .match(line: 3))
        #expect(loaded.check(host: "::1", port: 2200, key: ec256) == .match(line: 4))
    }

    @Test func emptyFileGetsNoLeadingNewline() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.path + "/known_hosts"
        #expect(FileManager.default.createFile(atPath: path, contents: Data()))
        try KnownHostsFile.append(host: "h", port: 22, key: ed1, to: path)
        #expect(try contents(path) == "h \(ed1.openSSHLine)\n")
    }

    @Test func appendFailsOnDirectory() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        #expect(throws: HostKeyError.self) { try KnownHostsFile.append(host: "h", port: 22, key: ed1, to: tmp.path) }
        // A path whose "directory" is a regular file.
        let file = tmp.path + "/plain"
        #expect(FileManager.default.createFile(atPath: file, contents: Data("x".utf8)))
        #expect(throws: HostKeyError.self) {
            try KnownHostsFile.append(host: "h", port: 22, key: ed1, to: file + "/known_hosts")
        }
        #expect(try contents(file) == "x")
    }

    @Test func loadMissingFileIsEmpty() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let loaded = try KnownHostsFile.load(path: tmp.path + "/nope")
        #expect(loaded.entries.isEmpty)
        #expect(loaded.warnings.isEmpty)
        #expect(loaded.path == tmp.path + "/nope")
        #expect(throws: HostKeyError.self) { try KnownHostsFile.load(path: tmp.path) }
    }

    @Test func loadReportsWarningsWithPath() throws {
        let tmp = try TempDir()
        defer { tmp.cleanup() }
        let path = tmp.path + "/kh"
        try Fixtures.knownHostsFull.write(toFile: path, atomically: false, encoding: .utf8)
        let loaded = try KnownHostsFile.load(path: path)
        #expect(loaded.entries.count == 16)
        #expect(loaded.warnings.count == 8)
        #expect(loaded.warnings.first?.hasPrefix("\(path):16: ") == true)
        #expect(loaded.warnings.allSatisfy { $0.hasPrefix(path + ":") })
    }
}
