import EctoPlatform
import Glibc
import Testing

/// The syscall layer: EINTR retried, would-block as a value, one error type naming the call.
@Suite struct SyscallTests {
    @Test func eintrIsRetriedAndOtherErrorsNameTheCall() throws {
        var calls = 0
        let result = try Syscall.blocking("test") { () -> Int in
            calls += 1
            if calls < 3 {
                errno = EINTR
                return -1
            }
            return 7
        }
        #expect(result == 7 && calls == 3)
        #expect(throws: SystemError(EACCES, "open /x")) {
            try Syscall.blocking("open /x") { () -> Int32 in
                errno = EACCES
                return -1
            }
        }
    }

    @Test func wouldBlockIsAValueOnARealSocket() throws {
        var pair: [Int32] = [-1, -1]
        try #require(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &pair) == 0)
        defer {
            Syscall.close(pair[0])
            Syscall.close(pair[1])
        }
        var buffer = [UInt8](repeating: 0, count: 16)
        let empty = try Syscall.nonBlocking("recv") {
            buffer.withUnsafeMutableBytes { recv(pair[0], $0.baseAddress, $0.count, 0) }
        }
        guard case .wouldBlock = empty else {
            Issue.record("an empty socket must be .wouldBlock, got \(empty)")
            return
        }
        let sent = try Syscall.nonBlocking("send") {
            [UInt8]([1, 2, 3]).withUnsafeBytes { send(pair[1], $0.baseAddress, $0.count, 0) }
        }
        guard case .done(3) = sent else {
            Issue.record("send: \(sent)")
            return
        }
        let received = try Syscall.nonBlocking("recv") {
            buffer.withUnsafeMutableBytes { recv(pair[0], $0.baseAddress, $0.count, 0) }
        }
        guard case .done(3) = received else {
            Issue.record("recv: \(received)")
            return
        }
        #expect(Array(buffer[0..<3]) == [1, 2, 3])
    }

    @Test func anErrorOtherThanWouldBlockIsThrown() {
        var buffer = [UInt8](repeating: 0, count: 4)
        #expect(throws: SystemError(EBADF, "recv")) {
            try Syscall.nonBlocking("recv") { buffer.withUnsafeMutableBytes { recv(-5, $0.baseAddress, $0.count, 0) } }
        }
        #expect(
            SystemError(ECONNREFUSED, "connect").description == "connect: Connection refused (errno \(ECONNREFUSED))")
    }

    @Test func descriptorsAreNeverNegative() {
        #expect(Descriptor(rawValue: -1) == nil)
        #expect(Descriptor(rawValue: 0)?.rawValue == 0)
    }

    #if DEBUG
    /// Closing a descriptor that is not open is a bug (descriptors move between threads: the
    /// number may already be someone else's): a debug build stops.
    @Test func closingAClosedDescriptorStopsADebugBuild() async {
        await #expect(processExitsWith: .failure) {
            let fd = dup(0)
            Syscall.close(fd)
            Syscall.close(fd)
        }
    }
    #endif
}
