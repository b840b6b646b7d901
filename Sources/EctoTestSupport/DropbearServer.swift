import Foundation
import Glibc

/// A throwaway dropbear SSH server (Debian `dropbear-bin`) on 127.0.0.1: a second, independent SSH
/// implementation for interoperability tests (it accepts RSA user keys only as `ssh-rsa`).
///
/// dropbear has no option for the authorized_keys file: it reads `~USER/.ssh/authorized_keys`
/// with the home directory from the passwd entry. So it runs in a private mount namespace of its
/// own (`unshare --mount`) in which a directory of ours is bind-mounted over that home directory;
/// nothing outside is touched. Needs root (as the other server fixtures here).
///
/// `@unchecked Sendable`: the process is started once in `init` and only stopped afterwards.
public final class DropbearServer: @unchecked Sendable {
    public let directory: TestDirectory
    public let port: UInt16
    /// The user tests log in as: the one running the tests.
    public let user: String
    /// "ssh-ed25519 AAAA…" (for known_hosts).
    public let hostPublicKey: String
    public let logPath: String
    private let home: String
    private var process: Subprocess?

    /// Starts dropbear with an ed25519 host key; `authorized` keys may log in.
    public init(authorized: [KeyPair], timeout: Duration = .seconds(5)) throws {
        directory = try TestDirectory(prefix: "ecto-dropbear")
        user = currentUserName()
        logPath = directory.file("dropbear.log")
        home = try directory.makeSubdirectory("home", mode: 0o755)
        do {
            let sshDirectory = home + "/.ssh"
            mkdir(sshDirectory, 0o700)
            try writeFile(sshDirectory + "/authorized_keys", authorized.map { $0.publicLine + "\n" }.joined(), mode: 0o600)
            let hostKey = directory.file("host_key")
            try Subprocess.run("dropbearkey", ["-t", "ed25519", "-f", hostKey]).check()
            let publicKey = try Subprocess.run("dropbearkey", ["-y", "-f", hostKey]).check().stdout
            guard let line = publicKey.split(separator: "\n").first(where: { $0.hasPrefix("ssh-ed25519 ") }) else {
                throw TestSupportError(.serverFailed, "dropbearkey -y printed no public key: \(publicKey)")
            }
            hostPublicKey = line.split(separator: " ").prefix(2).joined(separator: " ")
            guard let pw = getpwuid(getuid()), let dir = pw.pointee.pw_dir else {
                throw TestSupportError(.serverFailed, "no passwd entry for uid \(getuid())")
            }
            let passwdHome = String(cString: dir)
            port = try FreePort.probe()
            let script = """
                mount --bind '\(home)' '\(passwdHome)' || exit 97
                exec dropbear -F -E -s -P '\(directory.file("dropbear.pid"))' -r '\(hostKey)' -p 127.0.0.1:\(port)
                """
            let process = try Subprocess(
                "unshare", ["--mount", "--propagation", "private", "sh", "-c", script],
                stdoutPath: logPath, stderrPath: logPath, newProcessGroup: true)
            self.process = process
            try waitUntilBlocking(timeout: timeout, "dropbear listening on 127.0.0.1:\(port)") {
                guard process.isRunning else {
                    throw TestSupportError(.serverFailed, "dropbear exited: \(readFileString(logPath) ?? "")")
                }
                return (try? TCPClient.connect(port: port)).map { $0.close(); return true } ?? false
            }
        } catch {
            _ = process?.terminate(grace: .seconds(1))
            directory.cleanup()
            throw error
        }
    }

    deinit { stop() }

    /// The known_hosts line for `[127.0.0.1]:PORT`.
    public var knownHostsLine: String { "[127.0.0.1]:\(port) \(hostPublicKey)\n" }

    public func log() -> String { readFileString(logPath) ?? "" }

    /// Stops dropbear (and its session processes: they share its process group) and removes its
    /// directory. Idempotent.
    public func stop() {
        if let process {
            _ = process.terminate(grace: .seconds(2))
            self.process = nil
        }
        directory.cleanup()
    }
}
