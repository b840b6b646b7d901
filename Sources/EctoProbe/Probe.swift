import EctoConfig
import EctoHostKeys
import EctoPlatform
import EctoStatus
import Glibc
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// End-to-end probes: is the service behind a tunnel answering? A probe connects to the tunnel's
/// LOCAL endpoint, so it goes through the daemon's listener, the SSH session and the server's
/// forward, exactly like a client would.
///
/// - `tcp`: connect, then wait `settle` (default 300 ms). Our tunnel's listener always accepts, and
///   when the SSH server cannot reach the remote port (nothing listens there: the gateway is down)
///   the channel open fails and the tunnel closes the client. So a close or reset within the
///   settle time means "tunnel up, gateway not answering"; a connection still open after it (or
///   one that sent data) counts as up. A refused connect means nothing listens locally (the daemon
///   or the tunnel is down). Caveat: while the tunnel has no SSH session it holds new clients for
///   `hold_timeout` before closing them, so a tcp probe is only meaningful when the tunnel's state
///   is `up` (which is how `status --deep` uses it).
/// - `http:/PATH`: `GET PATH HTTP/1.1` with `Host`, `Connection: close` and, when a token is given,
///   `Authorization: Bearer TOKEN`; the status line and headers are read (at most
///   `ProbeOptions.maxHeadBytes`). Any HTTP response means the gateway answers; 401/403 mean it
///   answers but refused the token: outcome `token-refused`, which is not ok.
/// - `websocket:/PATH`: an RFC 6455 opening handshake with a random `Sec-WebSocket-Key`; up on
///   `101` with the right `Sec-WebSocket-Accept` (base64 of SHA-1 of key + GUID), after which a
///   close frame (1000) is sent.
///
/// Everything runs under one deadline (`ProbeOptions.timeout`); latency is measured with
/// `ContinuousClock` from the start of the connect to the answer (the settle time is not counted).
public enum Prober {
    /// Runs `spec` against `endpoint` (a tunnel's `local`), blocking the calling thread for at most
    /// `options.timeout` (plus `settle` for tcp).
    public static func run(_ spec: ProbeSpec, endpoint: Endpoint, options: ProbeOptions = ProbeOptions()) -> ProbeResult
    {
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start.advanced(by: options.timeout)
        let socket: ProbeSocket
        do {
            socket = try ProbeSocket.connect(to: endpoint, deadline: deadline)
        } catch {
            return connectFailure(error, endpoint: endpoint, elapsed: clock.now - start, options: options)
        }
        switch spec {
        case .tcp:
            return tcp(socket, connected: clock.now - start, options: options)
        case .http(let path):
            return http(socket, path: path, endpoint: endpoint, start: start, options: options)
        case .websocket(let path):
            return websocket(socket, path: path, endpoint: endpoint, start: start, options: options)
        }
    }

    /// The same on a thread of its own, so async callers never block the cooperative pool.
    public static func run(
        _ spec: ProbeSpec, endpoint: Endpoint, options: ProbeOptions = ProbeOptions()
    ) async -> ProbeResult {
        await withCheckedContinuation { (continuation: CheckedContinuation<ProbeResult, Never>) in
            startThread(name: "ecto-tunnel.probe") {
                continuation.resume(returning: run(spec, endpoint: endpoint, options: options))
            }
        }
    }

    // MARK: - The three probes

    static func connectFailure(
        _ error: ProbeSocket.Failure, endpoint: Endpoint, elapsed: Duration, options: ProbeOptions
    ) -> ProbeResult {
        switch error {
        case .refused:
            return ProbeResult(
                outcome: .refused, latency: elapsed,
                detail:
                    "connection refused on \(endpoint): nothing listens there (the daemon is not running or the tunnel is down)"
            )
        case .closed:
            return ProbeResult(outcome: .closedByTunnel, latency: elapsed, detail: closedByTunnel)
        case .timeout:
            return ProbeResult(
                outcome: .timeout, latency: elapsed,
                detail: "no connection to \(endpoint) within \(format(options.timeout))")
        default:
            return ProbeResult(
                outcome: .error, latency: elapsed, detail: "cannot connect to \(endpoint): \(error.text)")
        }
    }

    static let closedByTunnel =
        "connection closed by the tunnel: nothing listens on the remote port (the gateway is down or not reachable from the SSH server)"

    static func tcp(_ socket: ProbeSocket, connected: Duration, options: ProbeOptions) -> ProbeResult {
        let settleEnd = ContinuousClock.now.advanced(by: options.settle)
        do throws(ProbeSocket.Failure) {
            let revents = try socket.wait(for: Int16(POLLIN) | 0x2000 /* POLLRDHUP */, until: settleEnd)
            if revents & Int16(POLLIN) != 0 {
                // Readable: data (a banner) means up; EOF or reset means the tunnel closed us.
                var byte: UInt8 = 0
                let n = recv(socket.fd, &byte, 1, Int32(MSG_PEEK) | Int32(MSG_DONTWAIT))
                if n > 0 {
                    return ProbeResult(
                        outcome: .up, latency: connected,
                        detail: "TCP connected in \(format(connected)); the service sent data")
                }
            }
            return ProbeResult(outcome: .closedByTunnel, latency: connected, detail: closedByTunnel)
        } catch .timeout {
            return ProbeResult(
                outcome: .up, latency: connected,
                detail: "TCP connected in \(format(connected)), still open after \(format(options.settle))")
        } catch {
            return ProbeResult(outcome: .closedByTunnel, latency: connected, detail: closedByTunnel)
        }
    }

    static func request(
        method: String = "GET", path: String, endpoint: Endpoint, token: String?, extra: [String] = []
    ) -> [UInt8] {
        var lines = [
            "\(method) \(path) HTTP/1.1",
            "Host: \(endpoint)",
            "User-Agent: ecto-tunnel-probe",
            "Accept: */*",
        ]
        lines += extra
        if let token, !token.isEmpty { lines.append("Authorization: Bearer \(token)") }
        return Array((lines.joined(separator: "\r\n") + "\r\n\r\n").utf8)
    }

    /// Sends `request` and reads the response head; a failure becomes a result.
    static func exchange(
        _ socket: ProbeSocket, _ request: [UInt8], start: ContinuousClock.Instant, options: ProbeOptions
    )
        -> Exchange
    {
        do throws(ProbeSocket.Failure) {
            try socket.sendAll(request)
            guard let (text, _) = try socket.receiveHead(limit: options.maxHeadBytes) else {
                return .failed(
                    ProbeResult(outcome: .closedByTunnel, latency: ContinuousClock.now - start, detail: closedByTunnel))
            }
            let latency = ContinuousClock.now - start
            guard let head = HTTPHead(text) else {
                let first = text.prefix { $0 != "\r" && $0 != "\n" }.prefix(80)
                return .failed(
                    ProbeResult(
                        outcome: .protocolError, latency: latency,
                        detail: "the service answered, but not with HTTP: \"\(first)\""))
            }
            return .answered(head, latency)
        } catch .closed {
            return .failed(
                ProbeResult(outcome: .closedByTunnel, latency: ContinuousClock.now - start, detail: closedByTunnel))
        } catch .timeout {
            return .failed(
                ProbeResult(
                    outcome: .timeout, latency: ContinuousClock.now - start,
                    detail: "connected, but no HTTP response within \(format(options.timeout))"))
        } catch {
            return .failed(ProbeResult(outcome: .error, latency: ContinuousClock.now - start, detail: error.text))
        }
    }

    enum Exchange {
        case answered(HTTPHead, Duration)
        case failed(ProbeResult)
    }

    static func http(
        _ socket: ProbeSocket, path: String, endpoint: Endpoint, start: ContinuousClock.Instant, options: ProbeOptions
    )
        -> ProbeResult
    {
        let req = request(path: path, endpoint: endpoint, token: options.token, extra: ["Connection: close"])
        switch exchange(socket, req, start: start, options: options) {
        case .failed(let result):
            return result
        case .answered(let head, let latency):
            let status = head.status
            var detail = "HTTP \(status) in \(format(latency))"
            if status == 401 || status == 403 {
                return ProbeResult(
                    outcome: .tokenRefused, latency: latency, detail: detail + tokenVerdict(options), httpStatus: status
                )
            } else if !head.reason.isEmpty && status >= 400 {
                detail += " (\(head.reason))"
            }
            return ProbeResult(outcome: .up, latency: latency, detail: detail, httpStatus: status)
        }
    }

    /// What a 401/403 means, given whether a token was sent.
    static func tokenVerdict(_ options: ProbeOptions) -> String {
        options.token == nil
            ? ": the gateway wants a token and none was found"
            : ": gateway refused the token"
    }

    static let websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// `Sec-WebSocket-Accept` for a key (RFC 6455 §4.2.2).
    public static func websocketAccept(forKey key: String) -> String {
        Data(Digest.sha1(Array((key + websocketGUID).utf8))).base64EncodedString()
    }

    static func websocket(
        _ socket: ProbeSocket, path: String, endpoint: Endpoint, start: ContinuousClock.Instant, options: ProbeOptions
    )
        -> ProbeResult
    {
        var nonce = [UInt8](repeating: 0, count: 16)
        var rng = SystemRandomNumberGenerator()
        for i in nonce.indices { nonce[i] = rng.next() }
        let key = Data(nonce).base64EncodedString()
        let req = request(
            path: path, endpoint: endpoint, token: options.token,
            extra: [
                "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: \(key)", "Sec-WebSocket-Version: 13",
            ])
        switch exchange(socket, req, start: start, options: options) {
        case .failed(let result):
            return result
        case .answered(let head, let latency):
            let status = head.status
            guard status == 101 else {
                if status == 401 || status == 403 {
                    return ProbeResult(
                        outcome: .tokenRefused, latency: latency,
                        detail: "HTTP \(status) to the WebSocket upgrade in \(format(latency))" + tokenVerdict(options),
                        httpStatus: status)
                }
                return ProbeResult(
                    outcome: .protocolError, latency: latency,
                    detail: "HTTP \(status) instead of 101 Switching Protocols: no WebSocket on \(path)",
                    httpStatus: status)
            }
            let expected = websocketAccept(forKey: key)
            guard head.header("sec-websocket-accept") == expected else {
                return ProbeResult(
                    outcome: .protocolError, latency: latency,
                    detail:
                        "101 but Sec-WebSocket-Accept is \(head.header("sec-websocket-accept").map { "\"\($0)\"" } ?? "missing"), expected \"\(expected)\"",
                    httpStatus: status)
            }
            // Close politely: a masked close frame with status 1000.
            var mask = [UInt8](repeating: 0, count: 4)
            for i in mask.indices { mask[i] = rng.next() }
            let payload: [UInt8] = [0x03, 0xE8]
            let frame: [UInt8] =
                [0x88, 0x80 | 2] + mask + payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
            try? socket.sendAll(frame)
            return ProbeResult(
                outcome: .up, latency: latency, detail: "WebSocket upgrade (101) in \(format(latency))",
                httpStatus: status)
        }
    }

    /// `3.1 ms`, `250 ms`, `1.20 s`.
    public static func format(_ d: Duration) -> String {
        let (s, atto) = d.components
        let ms = Double(s) * 1000 + Double(atto) / 1e15
        if ms < 10 { return fixed(ms, decimals: 1) + " ms" }
        if ms < 1000 { return fixed(ms, decimals: 0) + " ms" }
        return fixed(ms / 1000, decimals: 2) + " s"
    }
}

/// Settings of one probe run.
public struct ProbeOptions: Sendable, Equatable {
    /// Deadline for connecting and getting an answer.
    public var timeout: Duration
    /// tcp only: how long a connection must stay open to count as up (see `Prober`).
    public var settle: Duration
    /// Sent as `Authorization: Bearer TOKEN` by the http and websocket probes.
    public var token: String?
    /// Most bytes of response head read.
    public var maxHeadBytes: Int

    public init(
        timeout: Duration = .seconds(5), settle: Duration = .milliseconds(300), token: String? = nil,
        maxHeadBytes: Int = 16384
    ) {
        self.timeout = timeout
        self.settle = settle
        self.token = token
        self.maxHeadBytes = maxHeadBytes
    }
}

/// What a probe found. `description` never contains the token.
public struct ProbeResult: Sendable, Equatable, CustomStringConvertible {
    /// The outcome, as the status contract names it (`gateway.outcome`).
    public typealias Outcome = ProbeOutcome

    public var outcome: Outcome
    /// From the start of the connect to the answer.
    public var latency: Duration
    /// One line for humans, e.g. `HTTP 200 in 3.1 ms`.
    public var detail: String
    /// The HTTP status, for http and websocket probes that got one.
    public var httpStatus: Int?

    public init(outcome: Outcome, latency: Duration, detail: String, httpStatus: Int? = nil) {
        self.outcome = outcome
        self.latency = latency
        self.detail = detail
        self.httpStatus = httpStatus
    }

    /// The service behind the tunnel answers.
    public var ok: Bool { outcome == .up }
    /// It answers but refused the credentials (HTTP 401 or 403).
    public var tokenRefused: Bool { httpStatus == 401 || httpStatus == 403 }

    public var description: String { "\(ok ? "ok" : "failed"): \(detail)" }
}

/// A parsed HTTP response head.
struct HTTPHead {
    var status: Int
    var reason: String
    var headers: [(String, String)]

    init?(_ text: String) {
        let lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        guard let first = lines.first, first.hasPrefix("HTTP/1.") else { return nil }
        let parts = first.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
        guard parts.count >= 2, parts[1].count == 3, let code = Int(parts[1]) else { return nil }
        status = code
        reason = parts.count > 2 ? String(parts[2]) : ""
        headers = lines.dropFirst().compactMap { line in
            guard let colon = line.firstIndex(of: ":") else { return nil }
            return (
                line[..<colon].lowercased(),
                line[line.index(after: colon)...].trimmed(.whitespaces)
            )
        }
    }

    func header(_ name: String) -> String? { headers.first { $0.0 == name }?.1 }
}
