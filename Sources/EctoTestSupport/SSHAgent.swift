import Foundation
import Glibc

/// A private `ssh-agent -D -a DIR/agent.sock`. Stopped, and its directory removed, on `stop()` or
/// deinit.
///
/// `@unchecked Sendable`: all stored properties are immutable; the process object is itself
/// Sendable.
public final class SSHAgent: @unchecked Sendable {
    public let directory: TestDirectory
    /// The agent's socket, for `SSH_AUTH_SOCK`.
    public let socketPath: String
    private let process: Subprocess

    /// Starts the agent and waits (up to `timeout`) for its socket.
    public init(timeout: Duration = .seconds(5)) throws {
        directory = try TestDirectory(prefix: "ecto-agent")
        socketPath = directory.file("agent.sock")
        do {
            process = try Subprocess(
                "ssh-agent", ["-D", "-a", socketPath],
                stdoutPath: directory.file("agent.log"), stderrPath: directory.file("agent.log"))
            try waitUntilBlocking(timeout: timeout, "ssh-agent socket \(socketPath)") {
                guard process.isRunning else {
                    throw TestSupportError(.serverFailed, "ssh-agent exited: \(process.stdout())")
                }
                return access(socketPath, F_OK) == 0
            }
        } catch {
            directory.cleanup()
            throw error
        }
    }

    deinit { stop() }

    public var pid: pid_t { process.pid }
    public var isRunning: Bool { process.isRunning }

    /// `["SSH_AUTH_SOCK": socketPath]`, to merge into a child's environment.
    public var environment: [String: String] { ["SSH_AUTH_SOCK": socketPath] }

    /// Adds `key` with `ssh-add` (its passphrase, if any, is given through `SSH_ASKPASS`).
    public func add(_ key: KeyPair) throws {
        var extra = environment
        if let passphrase = key.passphrase {
            let secret = try directory.write("passphrase", passphrase)
            let askpass = try directory.write("askpass", "#!/bin/sh\nexec cat '\(secret)'\n", mode: 0o700)
            extra["SSH_ASKPASS"] = askpass
            extra["SSH_ASKPASS_REQUIRE"] = "force"
            extra["DISPLAY"] = ProcessInfo.processInfo.environment["DISPLAY"] ?? ":0"
        }
        try Subprocess.run("ssh-add", ["-q", key.privatePath], extraEnvironment: extra).check()
    }

    /// Removes every key (`ssh-add -D`).
    public func removeAll() throws {
        try Subprocess.run("ssh-add", ["-D"], extraEnvironment: environment).check()
    }

    /// The "SHA256:…" fingerprints of the keys the agent holds.
    public func fingerprints() throws -> [String] {
        let result = try Subprocess.run("ssh-add", ["-l", "-E", "sha256"], extraEnvironment: environment)
        if result.status == 1 { return [] }  // "The agent has no identities."
        try result.check()
        return result.stdout.split(separator: "\n").compactMap { line in
            line.split(separator: " ").first { $0.hasPrefix("SHA256:") }.map(String.init)
        }
    }

    /// Stops the agent and removes its directory (idempotent).
    public func stop() {
        process.terminate(grace: .seconds(2))
        directory.cleanup()
    }
}
