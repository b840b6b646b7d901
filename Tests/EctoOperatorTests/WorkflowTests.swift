import EctoConfig
import Foundation
import Testing

@testable import EctoOperator

/// The file side of disconnect and of the imports' --write, on real files (no daemon runs here).
@Suite struct WorkflowTests {
    func directory() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("ecto-op-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static let two = """
        # mine
        [tunnels.a]
        target = "me@a.example:22"
        local = "127.0.0.1:40101"
        remote = "127.0.0.1:9"
        host_key_policy = "accept-new"
        known_hosts = "DIR/known_hosts"

        [tunnels.b]   # keep
        target = "me@b.example:22"
        local = "127.0.0.1:40102"
        remote = "127.0.0.1:9"
        host_key_policy = "accept-new"
        known_hosts = "DIR/known_hosts"

        """

    @Test func disconnectDisablesOrRemovesOneTableAndNothingElse() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/config.toml"
        try Self.two.replacing("DIR", with: dir).write(toFile: path, atomically: true, encoding: .utf8)
        let disabled = try DisconnectWorkflow.edit(configPath: path, tunnel: "a", purge: false)
        #expect(disabled.tunnels.map(\.enabled) == [false, true])
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(
            text.contains("enabled = false") && text.contains("# mine") && text.contains("[tunnels.b]   # keep"),
            "\(text)")
        let purged = try DisconnectWorkflow.edit(configPath: path, tunnel: "a", purge: true)
        #expect(purged.tunnels.map(\.name) == ["b"])
        #expect(throws: OperatorFailure.self) {
            try DisconnectWorkflow.edit(configPath: path, tunnel: "zz", purge: false)
        }
        do {
            _ = try DisconnectWorkflow.edit(configPath: path, tunnel: "zz", purge: false)
        } catch {
            #expect(error.message == "no tunnel named zz in \(path)" && error.exitCode == 1)
        }
    }

    @Test func importWriteAddsTheTableOrRefusesADuplicate() throws {
        let dir = try directory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/sub/config.toml"  // the directory is created
        let imported = TunnelImport(
            name: "gw", source: "a test",
            keys: [
                ImportedKey(key: "target", value: .string("ops@gw.example:22")),
                ImportedKey(key: "local", value: .string("127.0.0.1:40103")),
                ImportedKey(key: "remote", value: .string("127.0.0.1:18789")),
                ImportedKey(key: "host_key_policy", value: .string("accept-new")),
                ImportedKey(key: "known_hosts", value: .string(dir + "/known_hosts")),
            ])
        try ImportWorkflow.write(imported, configPath: path, replace: false, home: "/home/none")
        let config = try ConfigLoader.load(path: path)
        #expect(config.tunnels.map(\.name) == ["gw"] && config.tunnels[0].target.description == "ops@gw.example:22")
        #expect(throws: OperatorFailure.self) {
            try ImportWorkflow.write(imported, configPath: path, replace: false, home: "/home/none")
        }
        try ImportWorkflow.write(imported, configPath: path, replace: true, home: "/home/none")
        #expect(try ConfigLoader.load(path: path).tunnels.count == 1)
    }
}
