import EctoHostKeys
import Foundation
import Glibc

/// A stand-in for an OpenClaw gateway, for tests: HTTP/1.1 and WebSocket on one port of 127.0.0.1,
/// served by a `PollingServer` thread.
///
/// - `GET /health` → `200` `{"ok":true,"status":"live"}`
/// - `POST /v1/chat/completions` → `200` with a small chat completion JSON; when `token` is set the
///   request needs `Authorization: Bearer <token>`, else `401`.
/// - `GET /` with `Upgrade: websocket` → `101` (RFC 6455 accept key), then text frames are echoed,
///   pings answered, and a close frame answered with a close frame. When `token` is set, the
///   upgrade needs the bearer token too.
/// - anything else → `404`.
///
/// Every HTTP response carries `Connection: close` and the connection is closed after it.
/// `stop()` closes the port (connections are then refused); `restart()` listens on the same port
/// again. Stopped on deinit.
public final class StandInGateway: Sendable {
    private let core: Locked<PollingServer?>
    /// The port it listens on (the same across restarts).
    public let port: UInt16
    public let token: String?
    private let log: Locked<[String]>

    /// Listens on 127.0.0.1:`port` (0: the kernel picks one).
    public init(port: UInt16 = 0, token: String? = nil) throws {
        let log = Locked<[String]>([])
        self.log = log
        self.token = token
        let server = try PollingServer(name: "StandInGateway", port: port) { GatewayBehaviour(token: token, log: log) }
        self.port = server.port
        core = Locked(server)
    }

    deinit { stop() }

    /// Closes the listener and every connection (idempotent).
    public func stop() {
        let server = core.withLock { current -> PollingServer? in
            defer { current = nil }
            return current
        }
        server?.stop()
    }

    /// Listens again on the same port (after `stop()`); does nothing while running.
    public func restart() throws {
        try core.withLock { current in
            if current != nil { return }
            let token = self.token
            let log = self.log
            current = try PollingServer(name: "StandInGateway", port: port) { GatewayBehaviour(token: token, log: log) }
        }
    }

    /// `METHOD PATH` of every request received, in order (WebSocket upgrades included).
    public var requests: [String] { log.withLock { $0 } }
}

/// A server on 127.0.0.1 that accepts every connection and closes it at once: what our tunnel looks
/// like from the client's side when the SSH session is up but nothing listens on the remote port.
/// With `reset`, it closes with an RST (SO_LINGER 0) instead of a FIN. Stopped on deinit.
///
/// `@unchecked Sendable`: the descriptors are immutable after `init`; the accept thread is the only
/// user of the listener, `stop` only writes to the wake pipe and waits; the counter is `Locked`.
public final class ClosingServer: @unchecked Sendable {
    public let port: UInt16
    private let listener: Int32
    private let wake: (read: Int32, write: Int32)
    private let accepted = Locked(0)
    private let stopped = Locked(false)
    private let finished = DispatchGroup()

    public init(port: UInt16 = 0, reset: Bool = false) throws {
        listener = try Sockets.loopbackListener(port: port, reuseAddress: port != 0)
        do {
            self.port = try Sockets.localPort(listener)
            wake = try Sockets.wakePipe()
        } catch {
            close(listener)
            throw error
        }
        finished.enter()
        let thread = Thread { [self] in
            run(reset: reset)
            finished.leave()
        }
        thread.name = "ClosingServer"
        thread.start()
    }

    deinit { stop() }

    /// Closes the listener (idempotent).
    public func stop() {
        let first = stopped.withLock { s -> Bool in
            defer { s = true }
            return !s
        }
        if first {
            var byte: UInt8 = 1
            _ = write(wake.write, &byte, 1)
            finished.wait()
            close(listener)
            close(wake.read)
            close(wake.write)
        }
    }

    /// Connections accepted (and closed) so far.
    public var connectionsAccepted: Int { accepted.withLock { $0 } }

    private func run(reset: Bool) {
        while true {
            var fds = [
                pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0),
                pollfd(fd: listener, events: Int16(POLLIN), revents: 0),
            ]
            let n = poll(&fds, 2, -1)
            if n < 0 && errno == EINTR { continue }
            if n < 0 || fds[0].revents != 0 { return }
            while true {
                let fd = accept(listener, nil, nil)
                if fd < 0 { break }
                if reset {
                    var option = linger(l_onoff: 1, l_linger: 0)
                    setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
                }
                accepted.withLock { $0 += 1 }  // counted before the client can see the close
                close(fd)
            }
        }
    }
}

private final class GatewayBehaviour: ConnectionBehaviour {
    private let token: String?
    private let log: Locked<[String]>
    private var input: [UInt8] = []
    private var done = false
    private var websocket = false

    init(token: String?, log: Locked<[String]>) {
        self.token = token
        self.log = log
    }

    var wantsInput: Bool { !done }
    var isFinished: Bool { done }

    func received(_ bytes: UnsafeRawBufferPointer, output: ByteQueue) {
        input += bytes
        if websocket {
            frames(output)
        } else {
            request(output)
        }
    }

    func receivedEOF(output: ByteQueue) { done = true }

    private func send(_ bytes: [UInt8], _ output: ByteQueue) {
        bytes.withUnsafeBytes { output.append($0) }
    }

    private func respond(_ status: String, _ body: String, _ output: ByteQueue, extra: [String] = []) {
        var head = [
            "HTTP/1.1 \(status)", "Content-Type: application/json", "Content-Length: \(body.utf8.count)",
            "Connection: close",
        ]
        head += extra
        send(Array((head.joined(separator: "\r\n") + "\r\n\r\n" + body).utf8), output)
        done = true
    }

    private func request(_ output: ByteQueue) {
        guard let end = headEnd(input) else {
            if input.count > 65536 { respond("431 Request Header Fields Too Large", "{}", output) }
            return
        }
        let head = String(decoding: input[..<end], as: UTF8.self)
        let lines = head.split(separator: "\r\n").map(String.init)
        let parts = lines.first?.split(separator: " ").map(String.init) ?? []
        guard parts.count == 3 else { return respond("400 Bad Request", "{\"error\":\"bad request line\"}", output) }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces)
        }
        let bodyLength = Int(headers["content-length"] ?? "0") ?? 0
        guard input.count >= end + 4 + bodyLength else { return }  // wait for the body
        input.removeFirst(end + 4 + bodyLength)
        let (method, path) = (parts[0], parts[1])
        log.withLock { $0.append("\(method) \(path)") }
        let authorized = token == nil || headers["authorization"] == "Bearer \(token!)"
        let unauthorized = "{\"error\":{\"message\":\"unauthorized\",\"type\":\"unauthorized\"}}"

        switch (method, path) {
        case ("GET", "/health"):
            respond("200 OK", "{\"ok\":true,\"status\":\"live\"}", output)
        case ("POST", "/v1/chat/completions"):
            guard authorized else { return respond("401 Unauthorized", unauthorized, output) }
            respond(
                "200 OK",
                "{\"id\":\"chatcmpl-standin\",\"object\":\"chat.completion\",\"model\":\"openclaw\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"pong\"},\"finish_reason\":\"stop\"}]}",
                output)
        case ("GET", "/") where headers["upgrade"]?.lowercased() == "websocket":
            guard authorized else { return respond("401 Unauthorized", unauthorized, output) }
            guard let key = headers["sec-websocket-key"], headers["sec-websocket-version"] == "13" else {
                return respond("400 Bad Request", "{\"error\":\"bad websocket handshake\"}", output)
            }
            let accept = base64(Digest.sha1(Array((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").utf8)))
            send(
                Array(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: \(accept)\r\n\r\n"
                        .utf8), output)
            websocket = true
            frames(output)
        default:
            respond("404 Not Found", "{\"error\":\"not found\"}", output)
        }
    }

    /// Handles complete client frames (always masked): echo text, answer ping and close.
    private func frames(_ output: ByteQueue) {
        while input.count >= 2 {
            let opcode = input[0] & 0x0F
            var length = Int(input[1] & 0x7F)
            var offset = 2
            if length == 126 {
                guard input.count >= 4 else { return }
                length = Int(input[2]) << 8 | Int(input[3])
                offset = 4
            } else if length == 127 {
                guard input.count >= 10 else { return }
                length = input[2..<10].reduce(0) { $0 << 8 | Int($1) }
                offset = 10
            }
            let masked = input[1] & 0x80 != 0
            let maskLength = masked ? 4 : 0
            guard input.count >= offset + maskLength + length else { return }
            let mask = Array(input[offset..<(offset + maskLength)])
            var payload = Array(input[(offset + maskLength)..<(offset + maskLength + length)])
            if masked { for i in payload.indices { payload[i] ^= mask[i % 4] } }
            input.removeFirst(offset + maskLength + length)
            switch opcode {
            case 0x1: send(frame(opcode: 0x1, payload), output)  // text: echo
            case 0x9: send(frame(opcode: 0xA, payload), output)  // ping: pong
            case 0x8:
                send(frame(opcode: 0x8, Array(payload.prefix(2))), output)
                done = true
                return
            default: break
            }
        }
    }

    private func frame(opcode: UInt8, _ payload: [UInt8]) -> [UInt8] {
        var out: [UInt8] = [0x80 | opcode]
        if payload.count < 126 {
            out.append(UInt8(payload.count))
        } else {
            out.append(126)
            out += [UInt8(payload.count >> 8 & 0xFF), UInt8(payload.count & 0xFF)]
        }
        return out + payload
    }

    private func headEnd(_ d: [UInt8]) -> Int? {
        guard d.count >= 4 else { return nil }
        for i in 0...(d.count - 4) where d[i] == 13 && d[i + 1] == 10 && d[i + 2] == 13 && d[i + 3] == 10 { return i }
        return nil
    }

    private func base64(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
    }
}

/// WebSocket client helpers for tests: a masked text frame, and reading one unmasked server frame.
public enum WebSocketTestFrames {
    /// A masked client text frame (payload < 126 bytes).
    public static func maskedText(_ text: String) -> [UInt8] {
        let payload = Array(text.utf8)
        precondition(payload.count < 126)
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        return [0x81, 0x80 | UInt8(payload.count)] + mask
            + payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
    }

    /// Opcode and payload of one server frame at the start of `bytes` (payload < 126 bytes), if complete.
    public static func parseServerFrame(_ bytes: [UInt8]) -> (opcode: UInt8, payload: [UInt8])? {
        guard bytes.count >= 2 else { return nil }
        let length = Int(bytes[1] & 0x7F)
        guard length < 126, bytes.count >= 2 + length else { return nil }
        return (bytes[0] & 0x0F, Array(bytes[2..<(2 + length)]))
    }
}
