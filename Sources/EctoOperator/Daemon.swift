import EctoConfig
import EctoControl
import EctoPlatform
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// `ecto-tunnel run` started detached by `connect` where no systemd user manager runs: a session
/// of its own, stdin /dev/null, output appended to a log file.
public enum BackgroundDaemon {
    /// `$XDG_STATE_HOME/ecto-tunnel/daemon.log` (`~/.local/state/…` when unset).
    public static func logPath() -> String {
        XDG.stateHome(ProcessInfo.processInfo.environment, home: ConfigEnvironment.current.home)
            + "/ecto-tunnel/daemon.log"
    }

    /// Starts the daemon and waits (at most 5 s) until its control socket answers; throws with the
    /// tail of its log when it exits at once.
    public static func start(configPath: String, socket: String) throws -> pid_t {
        let log = logPath()
        try FileManager.default.createDirectory(
            atPath: Path.directory(of: log), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let binary = try executablePath()
        let pid: pid_t
        do {
            pid = try Spawn.start(
                binary, ["run", "--config", configPath, "--socket", socket], stdin: .null,
                stdout: .append(path: log, mode: 0o600), stderr: .stdout, newSession: true)
        } catch {
            throw OperatorFailure("cannot start the daemon: \(error)")
        }
        // Up when its control socket answers (or it exited: show why).
        for _ in 0..<100 {
            if runningDaemon(socket) != nil { return pid }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let tail =
                    (try? String(contentsOfFile: log, encoding: .utf8))?.split(separator: "\n").suffix(10).joined(
                        separator: "\n") ?? ""
                throw OperatorFailure("the daemon exited at once; its log (\(log)):\n\(tail)")
            }
            usleep(50_000)
        }
        return pid
    }
}

/// The daemon answering on the control socket, if any.
public func runningDaemon(_ socket: String) -> VersionReport? {
    guard let answer = try? ControlClient(path: socket).request("GET", "/v1/version"),
        case .success(let version) = answer.decode(VersionReport.self)
    else { return nil }
    return version
}

/// The user manager when `pid` is its ecto-tunnel.service's main process (else nil: not ours).
public func serviceManaging(_ pid: Int32) -> UserManager? {
    guard let systemd = UserManager.probe(), systemd.property("ActiveState") == "active",
        Int32(systemd.property("MainPID")) == pid
    else { return nil }
    return systemd
}

/// SIGTERM, then wait (at most 10 s) until the process is gone.
public func terminateAndWait(_ pid: Int32) {
    kill(pid, SIGTERM)
    for _ in 0..<100 {
        if kill(pid, 0) != 0 { return }
        usleep(100_000)
    }
}

/// Writes the config file atomically; a new file (and its directory) is created owner-only.
public func writeConfigFile(_ path: String, _ text: String) throws {
    try FileManager.default.createDirectory(
        atPath: Path.directory(of: path), withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    if !FileManager.default.fileExists(atPath: path) {
        _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
    }
    try AtomicFile.replace(path: path, with: text)
}
