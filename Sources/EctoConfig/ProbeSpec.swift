/// What the `probe` key of a tunnel asks for: how to check, end to end through the tunnel, that the
/// service behind it answers. Carried out by the `EctoProbe` module; see docs/config.md.
///
/// | written | meaning |
/// | --- | --- |
/// | `"tcp"` | connect to the tunnel's local address; up if the connection is still open after a short settle time |
/// | `"http:/PATH"` | `GET PATH`; any HTTP response means the service answers |
/// | `"websocket:/PATH"` | an RFC 6455 upgrade on PATH; up on `101` with the right `Sec-WebSocket-Accept` |
public enum ProbeSpec: Sendable, Equatable, Hashable, CustomStringConvertible {
    case tcp
    /// `path` starts with `/` (it may carry a query).
    case http(path: String)
    case websocket(path: String)

    /// As written in the config.
    public var description: String {
        switch self {
        case .tcp: return "tcp"
        case .http(let path): return "http:\(path)"
        case .websocket(let path): return "websocket:\(path)"
        }
    }

    /// Parses `tcp`, `http:/PATH` or `websocket:/PATH`. The error message says what was expected.
    public static func parse(_ s: String) throws(ProbeSpecError) -> ProbeSpec {
        let forms = "expected \"tcp\", \"http:/PATH\" or \"websocket:/PATH\" (e.g. \"http:/health\")"
        if s == "tcp" { return .tcp }
        guard let colon = s.firstIndex(of: ":") else {
            switch s.lowercased() {
            case "http", "https": throw ProbeSpecError("missing path: write \"http:/\" or e.g. \"http:/health\"")
            case "websocket", "ws", "wss":
                throw ProbeSpecError("missing path: write \"websocket:/\" or e.g. \"websocket:/ws\"")
            default:
                var message = "\(TOMLWriter.quote(s)) is not a probe: \(forms)"
                if let hint = closest(to: s, in: ["tcp", "http", "websocket"]) { message += "; did you mean \(hint)?" }
                throw ProbeSpecError(message)
            }
        }
        let kind = String(s[..<colon])
        let path = String(s[s.index(after: colon)...])
        switch kind {
        case "http", "websocket":
            guard path.hasPrefix("/") && !path.hasPrefix("//") else {
                if path.hasPrefix("//") || path.contains("://") || !path.isEmpty && !path.hasPrefix("/") {
                    throw ProbeSpecError(
                        "\(TOMLWriter.quote(path)) is not a path: the probe always goes to the tunnel's local address, so give only the path, e.g. \"\(kind):/health\""
                    )
                }
                throw ProbeSpecError("missing path after \"\(kind):\": e.g. \"\(kind):/\"")
            }
            if let bad = path.unicodeScalars.first(where: { $0.value <= 0x20 || $0.value >= 0x7F }) {
                throw ProbeSpecError(
                    "the path may not contain \(bad.value == 0x20 ? "spaces" : HostSyntax.describe(bad)) (percent-encode it)"
                )
            }
            return kind == "http" ? .http(path: path) : .websocket(path: path)
        case "https", "wss":
            throw ProbeSpecError(
                "TLS probes are not supported: the tunnel's local end is plain TCP; use \"http:\(path)\" or \"websocket:\(path)\""
            )
        case "ws":
            throw ProbeSpecError("write \"websocket:\(path)\" instead of \"ws:\(path)\"")
        case "tcp":
            throw ProbeSpecError("\"tcp\" takes no argument: the probe connects to the tunnel's local address")
        default:
            var message = "unknown probe kind \(TOMLWriter.quote(kind)): \(forms)"
            if let hint = closest(to: kind, in: ["tcp", "http", "websocket"]) { message += "; did you mean \(hint)?" }
            throw ProbeSpecError(message)
        }
    }
}

/// Why a `probe` value is not valid.
public struct ProbeSpecError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
