import Foundation
import Testing
@testable import EctoPlatform

#if canImport(Glibc)
import Glibc
#endif

/// `Spawn`: exactly three descriptors reach the child, exit statuses, and killing a whole group.
@Suite(.serialized) struct SpawnTests {
    /// Runs `arguments` with stdout on a pipe and returns what it printed and how it ended.
    func run(_ arguments: [String]) throws -> (output: String, exit: Spawn.Exit?) {
        var ends: [Int32] = [-1, -1]
        #expect(pipe(&ends) == 0)
        let pid = try Spawn.start(arguments, stdin: -1, stdout: ends[1], stderr: -1, newProcessGroup: true)
        close(ends[1])
        var output: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(ends[0], &buffer, buffer.count)
            if n <= 0 { break }
            output += buffer[0..<n]
        }
        close(ends[0])
        return (String(decoding: output, as: UTF8.self), Spawn.reap(pid, blocking: true))
    }

    @Test func onlyStdioReachesTheChildEvenWithoutCloseOnExec() throws {
        // A descriptor of ours without FD_CLOEXEC (as a listener or socket made elsewhere might be).
        let null = open("/dev/null", O_RDONLY)
        let leaky = fcntl(null, F_DUPFD, 100)  // a high number no child opens by itself
        close(null)
        defer { close(leaky) }
        #expect(leaky >= 100)
        #expect(fcntl(leaky, F_GETFD) & FD_CLOEXEC == 0)
        let (output, exit) = try run(["/bin/sh", "-c", "ls /proc/$$/fd"])
        #expect(exit == .exited(0))
        let fds = output.split(separator: "\n").map(String.init)
        // The shell's own 0, 1, 2 (and perhaps one it opened itself, e.g. 10 for its script).
        #expect(Array(fds.prefix(3)) == ["0", "1", "2"], "\(fds)")
        #expect(!fds.contains(String(leaky)), "descriptor \(leaky) leaked into the child: \(fds)")
    }

    @Test func exitStatusesAndSignals() throws {
        #expect(try run(["/bin/sh", "-c", "exit 3"]).exit == .exited(3))
        #expect(try run(["/bin/sh", "-c", "kill -TERM $$"]).exit == .signaled(SIGTERM))
        #expect(try run(["echo", "found in PATH"]).output == "found in PATH\n")
        #expect(throws: Spawn.Failure.self) {
            try Spawn.start(["/nonexistent/program"], stdin: -1, stdout: -1, stderr: -1, newProcessGroup: false)
        }
    }

    @Test func terminateEndsTheWholeGroupAndReaps() throws {
        var ends: [Int32] = [-1, -1]
        #expect(pipe(&ends) == 0)
        // A shell with a background child that would outlive it: both print their pids.
        let pid = try Spawn.start(
            ["/bin/sh", "-c", "sleep 100 & echo $!; echo $$; wait"], stdin: -1, stdout: ends[1], stderr: -1,
            newProcessGroup: true)
        close(ends[1])
        var text = ""
        var buffer = [UInt8](repeating: 0, count: 256)
        while text.split(separator: "\n").count < 2 {
            let n = read(ends[0], &buffer, buffer.count)
            if n <= 0 { break }
            text += String(decoding: buffer[0..<n], as: UTF8.self)
        }
        close(ends[0])
        let pids = text.split(separator: "\n").compactMap { Int32($0) }
        #expect(pids.count == 2 && pids[1] == pid)
        #expect(Spawn.terminate(pid) == .signaled(SIGKILL))
        // The background sleep went with the group (it may linger a moment as init's zombie).
        let sleeper = try #require(pids.first)
        let deadline = ContinuousClock.now.advanced(by: .seconds(2))
        var gone = false
        while !gone && ContinuousClock.now < deadline {
            let state = (try? String(contentsOfFile: "/proc/\(sleeper)/stat", encoding: .utf8))?.split(separator: " ")[
                2]
            gone = state == nil || state == "Z"
            if !gone { usleep(10_000) }
        }
        #expect(gone, "the group's background process survived")
    }
}
