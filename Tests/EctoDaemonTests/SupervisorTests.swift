import EctoConfig
import EctoControl
import EctoStatus
import Foundation
import Logging
import Synchronization
import Testing

@testable import EctoDaemon

/// `Supervisor.setTarget` and `reload` against real (disabled) tunnels: no network is touched, the
/// config file on disk is.
@Suite(.serialized) struct SupervisorTests {
    final class Answer<T: Sendable>: Sendable {
        let value = Mutex<T?>(nil)
        func set(_ answer: T) { value.withLock { $0 = answer } }
        /// The answer, waiting at most 5 s for it (deferred answers come from other threads).
        func wait() throws -> T {
            for _ in 0..<500 {
                if let answer = value.withLock({ $0 }) { return answer }
                usleep(10_000)
            }
            throw CancellationError()
        }
    }

    struct Fixture {
        let directory: String
        let path: String
        let supervisor: Supervisor

        func cleanup() {
            supervisor.stopAll()
            try? FileManager.default.removeItem(atPath: directory)
        }

        var text: String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }
    }

    static func table(_ name: String, target: String = "me@a.example:22", port: Int, directory: String) -> String {
        """
        [tunnels.\(name)]
        target = "\(target)"
        local = "127.0.0.1:\(port)"
        remote = "127.0.0.1:9"
        known_hosts = "\(directory)/known_hosts"
        enabled = false

        """
    }

    func makeFixture(_ tables: (String) -> String) throws -> Fixture {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("ecto-sup-\(UUID().uuidString)")
            .path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: directory + "/known_hosts", contents: Data())
        let text = tables(directory)
        let path = directory + "/config.toml"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return try Fixture(existing: directory, path: path)
    }

    @Test func setTargetOnADownTunnelSavesTheFileWithoutAPreflight() throws {
        let fixture = try makeFixture { Self.table("a", port: 40001, directory: $0) + "# kept\n" }
        defer { fixture.cleanup() }
        let answer = Answer<Result<ActionReport, ControlFailure>>()
        fixture.supervisor.setTarget(tunnel: "a", TargetRequest(target: "ops@b.example:2222")) { answer.set($0) }
        let report = try answer.wait().get()
        #expect(report.message.contains("the tunnel is down: nothing to pre-flight"), "\(report.message)")
        #expect(report.tunnels.map(\.target) == ["ops@b.example:2222"])
        #expect(
            fixture.text.contains("target = \"ops@b.example:2222\"") && fixture.text.contains("# kept"),
            "\(fixture.text)")
        #expect(fixture.supervisor.status().tunnels.first?.state == .down)
    }

    @Test func setTargetRefusesBadRequestsAndChangesNothing() throws {
        let fixture = try makeFixture { Self.table("a", port: 40002, directory: $0) }
        defer { fixture.cleanup() }
        let before = fixture.text
        for (name, target, status) in [("zz", "x@y:1", 404), ("a", "x@y:notaport", 400), ("a", "", 400)] {
            let answer = Answer<Result<ActionReport, ControlFailure>>()
            fixture.supervisor.setTarget(tunnel: name, TargetRequest(target: target)) { answer.set($0) }
            guard case .failure(let failure) = try answer.wait() else {
                Issue.record("\(name) \(target): accepted")
                continue
            }
            #expect(failure.status == status, "\(name) \(target): \(failure.report.error)")
        }
        let unknown = Answer<Result<ActionReport, ControlFailure>>()
        fixture.supervisor.setTarget(tunnel: "zz", TargetRequest(target: "x@y:1")) { unknown.set($0) }
        if case .failure(let failure) = try unknown.wait() {
            #expect(failure.report.error == "no tunnel named zz (tunnels: a)")
        }
        #expect(fixture.text == before)
    }

    @Test func reloadAddsRemovesAndRefusesABrokenFileWithItsLine() throws {
        let fixture = try makeFixture {
            Self.table("a", port: 40003, directory: $0) + Self.table("b", port: 40004, directory: $0)
        }
        defer { fixture.cleanup() }
        try
            (Self.table("b", port: 40004, directory: fixture.directory)
            + Self.table("c", port: 40005, directory: fixture.directory))
            .write(toFile: fixture.path, atomically: true, encoding: .utf8)
        let answer = Answer<Result<ReloadReport, ControlFailure>>()
        fixture.supervisor.reload(ReloadRequest()) { answer.set($0) }
        let report = try answer.wait().get()
        #expect(report.added == ["c"] && report.removed == ["a"] && report.unchanged == ["b"] && report.changed.isEmpty)
        #expect(fixture.supervisor.status().tunnels.map(\.name) == ["b", "c"])

        // Line 4 of the file: remote is not an address.
        let good =
            Self.table("b", port: 40004, directory: fixture.directory)
            + Self.table("c", port: 40005, directory: fixture.directory)
        try good.replacing("remote = \"127.0.0.1:9\"", with: "remote = 12", maxReplacements: 1)
            .write(toFile: fixture.path, atomically: true, encoding: .utf8)
        let broken = Answer<Result<ReloadReport, ControlFailure>>()
        fixture.supervisor.reload(ReloadRequest()) { broken.set($0) }
        guard case .failure(let failure) = try broken.wait() else {
            Issue.record("a broken file was applied")
            return
        }
        #expect(failure.status == 422)
        let problem = try #require(failure.report.problems?.first)
        #expect(problem.file == fixture.path && problem.line == 4 && problem.key == "tunnels.b.remote", "\(problem)")
        #expect(fixture.supervisor.status().tunnels.map(\.name) == ["b", "c"], "the running state is kept")
    }

    /// `up` answers once the driver acted (settle), from a driver thread, not by polling.
    @Test func enablingAnswersWithTheEffect() throws {
        let fixture = try makeFixture { Self.table("a", target: "me@127.0.0.1:1", port: 40006, directory: $0) }
        defer { fixture.cleanup() }
        let answer = Answer<Result<ActionReport, ControlFailure>>()
        fixture.supervisor.setEnabled(tunnel: "a", enabled: true) { answer.set($0) }
        let report = try answer.wait().get()
        #expect(report.tunnels.first?.enabled == true && report.tunnels.first?.state != .down, "\(report.tunnels)")
        let unknown = Answer<Result<ActionReport, ControlFailure>>()
        fixture.supervisor.setEnabled(tunnel: "zz", enabled: true) { unknown.set($0) }
        if case .failure(let failure) = try unknown.wait() {
            #expect(failure.status == 404)
        } else {
            Issue.record("zz accepted")
        }
    }
}

extension SupervisorTests.Fixture {
    init(existing directory: String, path: String) throws {
        self.directory = directory
        self.path = path
        supervisor = Supervisor(configPath: path, stopGrace: .milliseconds(100), logger: Logger(label: "test"))
        try supervisor.start(try ConfigLoader.load(path: path))
    }
}
