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
    private let passwdHome: String
    private let hostKey: String
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
            try writeFile(
                sshDirectory + "/authorized_keys", authorized.map { $0.publicLine + "\n" }.joined(), mode: 0o600)
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
            passwdHome = String(cString: dir)
            self.hostKey = hostKey
            port = try FreePort.probe()
            try start(timeout: timeout)
        } catch {
            _ = process?.terminate(grace: .seconds(1))
            directory.cleanup()
            throw error
        }
    }

    deinit { stop() }

    /// Starts dropbear on `port` (again, after `kill()`); returns once it accepts connections.
    public func start(timeout: Duration = .seconds(5)) throws {
        if process?.isRunning == true { return }
        let script = """
            mount --bind '\(home)' '\(passwdHome)' || exit 97
            exec dropbear -F -E -s -P '\(directory.file("dropbear.pid"))' -r '\(hostKey)' -p 127.0.0.1:\(port)
            """
        let process = try Subprocess(
            "unshare", ["--mount", "--propagation", "private", "sh", "-c", script],
            stdoutPath: logPath, stderrPath: logPath, appendOutput: true, newProcessGroup: true)
        self.process = process
        let logPath = logPath, port = port
        try waitUntilBlocking(timeout: timeout, "dropbear listening on 127.0.0.1:\(port)") {
            guard process.isRunning else {
                throw TestSupportError(.serverFailed, "dropbear exited: \(readFileString(logPath) ?? "")")
            }
            return (try? TCPClient.connect(port: port)).map {
                $0.close()
                return true
            } ?? false
        }
    }

    /// SIGKILL to dropbear and every session process: a crash. Each connection's process calls
    /// setsid(), so killing dropbear's process group would leave the sessions running; they are
    /// found as its descendants (frozen first, so none forks meanwhile). The directory stays;
    /// `start()` brings it back on the same port.
    public func kill() {
        guard let process else { return }
        let sessions = ProcessTree.freeze(process.pid)
        for pid in sessions {
            Glibc.kill(pid, SIGKILL)
            Glibc.kill(pid, SIGCONT)
        }
        process.kill()
        _ = Reaping.waitGone(sessions, timeout: .seconds(2))
        self.process = nil
    }

    /// The known_hosts line for `[127.0.0.1]:PORT`.
    public var knownHostsLine: String { "[127.0.0.1]:\(port) \(hostPublicKey)\n" }

    public func log() -> String { readFileString(logPath) ?? "" }

    /// Kills dropbear and its session processes (`kill()`) and removes its
    /// directory. Idempotent.
    public func stop() {
        kill()
        directory.cleanup()
    }
}
