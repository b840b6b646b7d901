import EctoPlatform
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Why a control request did not get an answer from a daemon.
public enum ControlClientError: Error, Sendable, CustomStringConvertible {
    /// Nothing listens at the path (no socket, or a stale one).
    case noDaemon(path: String, reason: String)
    /// The socket exists but we may not use it.
    case permissionDenied(path: String)
    /// The daemon took the connection but gave no (complete) answer in time: stopped, stuck, or
    /// overloaded.
    case noAnswer(path: String, seconds: Double)
    /// The daemon answered something that is not the protocol, or the connection broke.
    case protocolError(String)

    public var description: String {
        switch self {
        case .noDaemon(let path, let reason):
            "no ecto-tunnel daemon answers on \(path) (\(reason)); start it with `ecto-tunnel run` or `systemctl --user start ecto-tunnel`"
        case .permissionDenied(let path):
            "permission denied on \(path): the daemon belongs to another user"
        case .noAnswer(let path, let seconds):
            "the daemon at \(path) did not answer within \(Int(seconds.rounded())) s: it may be stopped (SIGSTOP), stuck or overloaded; "
                + "check `systemctl --user status ecto-tunnel` or the daemon's log"
        case .protocolError(let message):
            "unexpected answer from the daemon: \(message)"
        }
    }
}

/// An HTTP answer from the daemon.
public struct ControlAnswer: Sendable {
    public var status: Int
    public var body: Data

    /// Decodes a 2xx body as `T`, or the error body of anything else.
    public func decode<T: Decodable>(_ type: T.Type) -> Result<T, ControlFailure> {
        let decoder = ControlProtocol.decoder()
        if (200..<300).contains(status) {
            if let value = try? decoder.decode(T.self, from: body) { return .success(value) }
            return .failure(
                ControlFailure(500, "undecodable answer: \(String(decoding: body.prefix(200), as: UTF8.self))"))
        }
        if let report = try? decoder.decode(ErrorReport.self, from: body) {
            return .failure(ControlFailure(status, report.error, problems: report.problems))
        }
        return .failure(ControlFailure(status, "HTTP \(status): \(String(decoding: body.prefix(200), as: UTF8.self))"))
    }
}

/// The CLI's side of the control socket: blocking, one request per connection.
public struct ControlClient: Sendable {
    public let path: String
    public var timeout: Double

    /// How long a request may take in all (connect, send, answer) unless the caller says more:
    /// the daemon answers every request but `status --deep` and waits at once.
    public static let defaultTimeout: Double = 5

    public init(path: String, timeout: Double = ControlClient.defaultTimeout) {
        self.path = path
        self.timeout = timeout
    }

    func open() throws(ControlClientError) -> Int32 {
        do {
            return try UnixSocket.connect(path)
        } catch {
            switch error.code {
            case EACCES, EPERM: throw .permissionDenied(path: path)
            case ENOENT: throw .noDaemon(path: path, reason: "no socket")
            case ECONNREFUSED: throw .noDaemon(path: path, reason: "stale socket, nothing listening")
            case EAGAIN, EWOULDBLOCK, ETIMEDOUT: throw .noAnswer(path: path, seconds: ControlClient.defaultTimeout)
            default: throw .noDaemon(path: path, reason: error.description)
            }
        }
    }

    /// Sends one request and reads the whole answer.
    public func request(
        _ method: String, _ target: String, body: Data? = nil
    ) throws(ControlClientError) -> ControlAnswer {
        let deadline = ContinuousClock.now.advanced(by: .milliseconds(Int64(timeout * 1000)))
        let fd = try open()
        defer { Syscall.close(fd) }
        UnixSocket.setTimeout(fd, seconds: timeout)
        var head = "\(method) \(target) HTTP/1.1\r\nHost: ecto-tunnel\r\n"
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        head += "Connection: close\r\n\r\n"
        do {
            try UnixSocket.writeAll(fd, Array(head.utf8) + Array(body ?? Data()))
        } catch {
            throw .protocolError(error.description)
        }
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            // One deadline for the whole answer: a daemon that trickles bytes cannot stretch it.
            let left = ContinuousClock.now.duration(to: deadline)
            var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let waitMs =
                left <= .zero
                ? 0
                : Int32(
                    clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            let n: Int
            do {
                if try Syscall.blocking("poll", { poll(&ready, 1, waitMs) }) == 0 {
                    throw ControlClientError.noAnswer(path: path, seconds: timeout)
                }
                switch try Syscall.nonBlocking(
                    "recv",
                    { buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) } })
                {
                case .done(let count): n = count
                case .wouldBlock: continue
                }
            } catch let error as ControlClientError {
                throw error
            } catch {
                throw .protocolError("\(error)")
            }
            if n == 0 { break }
            received.append(contentsOf: buffer[0..<n])
            if received.count > 64 << 20 { throw .protocolError("answer larger than 64 MiB") }
        }
        guard let (status, bodyStart) = Self.parseHead(received) else {
            throw .protocolError(received.isEmpty ? "the connection closed without an answer" : "not an HTTP answer")
        }
        return ControlAnswer(status: status, body: Data(received[bodyStart...]))
    }

    /// Follows `GET /v1/events`: calls `handler` with every event until it returns false or the
    /// daemon goes away (then throws).
    public func followEvents(_ handler: (ControlEvent) -> Bool) throws(ControlClientError) {
        let fd = try open()
        defer { Syscall.close(fd) }
        do {
            try UnixSocket.writeAll(fd, Array("GET /v1/events HTTP/1.1\r\nHost: ecto-tunnel\r\n\r\n".utf8))
        } catch {
            throw .protocolError(error.description)
        }
        var pending: [UInt8] = []
        var headDone = false
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        let decoder = ControlProtocol.decoder()
        while true {
            let n: Int
            do {
                n = try Syscall.blocking("recv") {
                    buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
                }
            } catch {
                throw .protocolError(error.message)
            }
            if n == 0 { throw .noDaemon(path: path, reason: "the daemon closed the event stream") }
            pending.append(contentsOf: buffer[0..<n])
            if !headDone {
                guard let (status, bodyStart) = Self.parseHead(pending) else { continue }
                guard status == 200 else {
                    let answer = ControlAnswer(status: status, body: Data(pending[bodyStart...]))
                    if case .failure(let failure) = answer.decode(StatusReport.self) {
                        throw .protocolError(failure.report.error)
                    }
                    throw .protocolError("HTTP \(status)")
                }
                pending.removeSubrange(0..<bodyStart)
                headDone = true
            }
            while let newline = pending.firstIndex(of: 0x0A) {
                let line = Data(pending[0..<newline])
                pending.removeSubrange(0...newline)
                guard let event = try? decoder.decode(ControlEvent.self, from: line) else { continue }
                if !handler(event) { return }
            }
        }
    }

    /// (status, index where the body starts) once the head is complete.
    static func parseHead(_ bytes: [UInt8]) -> (Int, Int)? {
        let separator: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A]
        guard bytes.count >= 4 else { return nil }
        var end: Int?
        for i in 0...(bytes.count - 4) where Array(bytes[i..<(i + 4)]) == separator {
            end = i
            break
        }
        guard let end else { return nil }
        let statusLine = String(decoding: bytes[0..<end], as: UTF8.self).split(separator: "\r\n").first ?? ""
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else { return nil }
        return (status, end + 4)
    }
}
