import Foundation
import Glibc

/// A TCP echo server on 127.0.0.1: every byte is sent back. One poll thread serves all connections
/// (thousands at once are fine). Half-close is honoured: when a client shuts down its write side,
/// the server sends back everything it got, then shuts down its own write side and closes.
/// Stopped on deinit.
public final class EchoServer: Sendable {
    private let core: PollingServer

    /// The port it listens on.
    public var port: UInt16 { core.port }

    /// Listens on 127.0.0.1:`port`; 0 (the default) lets the kernel pick. A fixed port (e.g. to come
    /// back on the same port after `stop()`) is bound with `SO_REUSEADDR`.
    public init(port: UInt16 = 0) throws {
        core = try PollingServer(name: "EchoServer", port: port) { EchoBehaviour() }
    }

    /// Listens on `host` (an IPv4 address of this network namespace, e.g. `NetworkLab.serverAddress`
    /// inside `NetworkLab.withNamespace`) : `port`.
    public init(host: String, port: UInt16 = 0) throws {
        core = try PollingServer(name: "EchoServer", port: port, host: host) { EchoBehaviour() }
    }

    deinit { core.stop() }

    /// Closes the listener and every connection; idempotent.
    public func stop() { core.stop() }

    public var counters: ServerCounters { core.counters }
    /// Connections accepted since start.
    public var connectionsAccepted: Int { core.counters.accepted }
    /// Connections open now.
    public var activeConnections: Int { core.counters.active }
}

private final class EchoBehaviour: ConnectionBehaviour {
    private var eof = false
    var wantsInput: Bool { !eof }
    var isFinished: Bool { eof }

    func received(_ bytes: UnsafeRawBufferPointer, output: ByteQueue) {
        output.append(bytes)
    }

    func receivedEOF(output: ByteQueue) {
        eof = true
    }
}

/// A server that checks what it receives against the pattern of `seed` (`PatternGenerator`), then
/// replies with one verdict line, `PatternCheck.verdictLine` ("OK <received>\n" or
/// "MISMATCH <offset> <received>\n"), shuts down its write side and closes.
///
/// It replies when the client half-closes, or as soon as `expectedBytes` arrived if that is set.
/// Client side: `TCPClient.sendPattern(seed:count:)`, `shutdownWrite()`, `receiveVerdict()`.
/// Every finished connection's result is also kept in `results`. Stopped on deinit.
public final class SinkServer: Sendable {
    private let core: PollingServer
    private let recorded: Locked<[PatternCheck]>
    public let seed: UInt64

    public var port: UInt16 { core.port }

    public init(seed: UInt64, expectedBytes: Int? = nil, port: UInt16 = 0) throws {
        let recorded = Locked<[PatternCheck]>([])
        self.recorded = recorded
        self.seed = seed
        core = try PollingServer(name: "SinkServer", port: port) {
            SinkBehaviour(seed: seed, expectedBytes: expectedBytes, recorded: recorded)
        }
    }

    deinit { core.stop() }

    public func stop() { core.stop() }

    /// The verdicts sent so far, one per connection, in the order they were sent.
    public var results: [PatternCheck] { recorded.withLock { $0 } }
    public var counters: ServerCounters { core.counters }
    public var connectionsAccepted: Int { core.counters.accepted }
}

private final class SinkBehaviour: ConnectionBehaviour {
    private let verifier: PatternVerifier
    private let expectedBytes: Int?
    private let recorded: Locked<[PatternCheck]>
    private var replied = false

    init(seed: UInt64, expectedBytes: Int?, recorded: Locked<[PatternCheck]>) {
        verifier = PatternVerifier(seed: seed)
        self.expectedBytes = expectedBytes
        self.recorded = recorded
    }

    var wantsInput: Bool { !replied }
    var isFinished: Bool { replied }

    func received(_ bytes: UnsafeRawBufferPointer, output: ByteQueue) {
        guard !replied else { return }
        var bytes = bytes
        if let expectedBytes {
            bytes = UnsafeRawBufferPointer(rebasing: bytes[0..<min(bytes.count, expectedBytes - verifier.received)])
        }
        verifier.check(bytes)
        if let expectedBytes, verifier.received >= expectedBytes { reply(output) }
    }

    func receivedEOF(output: ByteQueue) {
        if !replied { reply(output) }
    }

    private func reply(_ output: ByteQueue) {
        replied = true
        let result = verifier.result
        recorded.withLock { $0.append(result) }
        Array(result.verdictLine.utf8).withUnsafeBytes { output.append($0) }
    }
}

/// A server that sends `byteCount` bytes of the pattern of `seed` to every client, then shuts down
/// its write side and closes. Anything the client sends is read and ignored.
/// Client side: `TCPClient.receivePattern(seed:)`. Stopped on deinit.
public final class SourceServer: Sendable {
    private let core: PollingServer
    public let seed: UInt64
    public let byteCount: Int

    public var port: UInt16 { core.port }

    public init(seed: UInt64, byteCount: Int, port: UInt16 = 0) throws {
        self.seed = seed
        self.byteCount = byteCount
        core = try PollingServer(name: "SourceServer", port: port) {
            SourceBehaviour(seed: seed, byteCount: byteCount)
        }
    }

    deinit { core.stop() }

    public func stop() { core.stop() }

    public var counters: ServerCounters { core.counters }
    public var connectionsAccepted: Int { core.counters.accepted }
}

private final class SourceBehaviour: ConnectionBehaviour {
    private var generator: PatternGenerator
    private let byteCount: Int

    init(seed: UInt64, byteCount: Int) {
        generator = PatternGenerator(seed: seed)
        self.byteCount = byteCount
    }

    var wantsInput: Bool { true }
    var isFinished: Bool { generator.offset >= byteCount }

    func received(_ bytes: UnsafeRawBufferPointer, output: ByteQueue) {}
    func receivedEOF(output: ByteQueue) {}

    func refill(output: ByteQueue) {
        let chunk = min(1 << 18, byteCount - generator.offset)
        guard chunk > 0 else { return }
        generator.fill(output.reserve(chunk))
        output.commit(chunk)
    }
}
