import EctoPlatform

/// A request on the control socket: the small, strict subset of HTTP/1.1 the protocol uses.
public struct HTTPRequest: Sendable, Equatable {
    public var method: String
    /// The path without the query, percent-decoded.
    public var path: String
    public var query: [String: String]
    /// Header names lowercased.
    public var headers: [String: String]
    public var body: [UInt8]
}

/// Incremental request parser with hard limits. Pure: bytes in, a verdict out.
///
/// Accepted: `METHOD SP /path[?query] SP HTTP/1.0|1.1 CRLF`, headers, a body only with
/// `Content-Length`. Refused with a status code: chunked bodies (411), oversized heads (431) or
/// bodies (413), anything malformed (400).
public struct HTTPRequestParser: Sendable {
    public enum Verdict: Sendable, Equatable {
        case incomplete
        case request(HTTPRequest)
        case failure(status: Int, message: String)
    }

    public static let defaultMaxHead = 16 * 1024
    public static let defaultMaxBody = 64 * 1024

    public let maxHead: Int
    public let maxBody: Int
    private var buffer: [UInt8] = []

    public init(maxHead: Int = HTTPRequestParser.defaultMaxHead, maxBody: Int = HTTPRequestParser.defaultMaxBody) {
        self.maxHead = maxHead
        self.maxBody = maxBody
    }

    /// Bytes buffered so far.
    public var bufferedCount: Int { buffer.count }

    public mutating func feed(_ bytes: some Sequence<UInt8>) -> Verdict {
        buffer.append(contentsOf: bytes)
        return evaluate()
    }

    private func evaluate() -> Verdict {
        guard let headEnd = findHeadEnd() else {
            if buffer.count > maxHead {
                return .failure(status: 431, message: "request head larger than \(maxHead) bytes")
            }
            // A line that cannot be HTTP can be refused before the head completes.
            if let firstLineEnd = buffer.firstIndex(of: 0x0A) ?? (buffer.count > 256 ? buffer.count : nil),
                parseRequestLine(buffer[..<firstLineEnd]) == nil
            {
                return .failure(
                    status: 400, message: "malformed request line (expected e.g. \"GET /v1/status HTTP/1.1\")")
            }
            return .incomplete
        }
        if headEnd.start > maxHead {
            return .failure(status: 431, message: "request head larger than \(maxHead) bytes")
        }
        let head = buffer[..<headEnd.start]
        var lines = split(head)
        guard !lines.isEmpty, let requestLine = parseRequestLine(lines.removeFirst()) else {
            return .failure(status: 400, message: "malformed request line (expected e.g. \"GET /v1/status HTTP/1.1\")")
        }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex else {
                return .failure(status: 400, message: "malformed header line")
            }
            let name = String(decoding: line[line.startIndex..<colon], as: UTF8.self)
            guard name.utf8.allSatisfy(isTokenCharacter) else {
                return .failure(status: 400, message: "malformed header name")
            }
            let value = String(decoding: line[(colon + 1)...], as: UTF8.self).trimmed(.whitespaces)
            let key = name.lowercased()
            if let existing = headers[key], key == "content-length", existing != value {
                return .failure(status: 400, message: "conflicting Content-Length headers")
            }
            headers[key] = value
        }
        if headers["transfer-encoding"] != nil {
            return .failure(status: 411, message: "chunked request bodies are not accepted: send Content-Length")
        }
        var length = 0
        if let text = headers["content-length"] {
            guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), text.count <= 12,
                let value = Int(text)
            else {
                return .failure(status: 400, message: "invalid Content-Length")
            }
            length = value
        }
        if length > maxBody {
            return .failure(status: 413, message: "request body of \(length) bytes is larger than \(maxBody)")
        }
        let bodyStart = headEnd.end
        if buffer.count - bodyStart < length { return .incomplete }
        if buffer.count - bodyStart > length {
            return .failure(status: 400, message: "unexpected bytes after the request (one request per connection)")
        }
        return .request(
            HTTPRequest(
                method: requestLine.method, path: requestLine.path, query: requestLine.query, headers: headers,
                body: Array(buffer[bodyStart..<(bodyStart + length)])))
    }

    private func findHeadEnd() -> (start: Int, end: Int)? {
        // Accept CRLFCRLF, and bare LFLF from hand-typed requests (socat, nc).
        var i = 0
        let limit = min(buffer.count, maxHead + 4)
        while i < limit {
            if buffer[i] == 0x0A {
                if i + 1 < buffer.count && buffer[i + 1] == 0x0A { return (i, i + 2) }
                if i + 2 < buffer.count && buffer[i + 1] == 0x0D && buffer[i + 2] == 0x0A { return (i, i + 3) }
            }
            i += 1
        }
        return nil
    }

    private func split(_ head: ArraySlice<UInt8>) -> [ArraySlice<UInt8>] {
        head.split(separator: 0x0A, omittingEmptySubsequences: false).map { line in
            line.last == 0x0D ? line.dropLast() : line
        }
    }

    private func parseRequestLine(_ raw: ArraySlice<UInt8>) -> (method: String, path: String, query: [String: String])?
    {
        let line = raw.last == 0x0D ? raw.dropLast() : raw
        let parts = line.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3 else { return nil }
        let method = String(decoding: parts[0], as: UTF8.self)
        let target = String(decoding: parts[1], as: UTF8.self)
        let version = String(decoding: parts[2], as: UTF8.self)
        guard !method.isEmpty, method.utf8.allSatisfy({ $0 >= 0x41 && $0 <= 0x5A }) else { return nil }
        guard version == "HTTP/1.1" || version == "HTTP/1.0" else { return nil }
        guard target.hasPrefix("/") || target.hasPrefix("http://") else { return nil }
        var pathAndQuery = Substring(target)
        if target.hasPrefix("http://") {
            // Absolute form (some clients send it through proxies): keep the path.
            let rest = target.dropFirst("http://".count)
            pathAndQuery = rest.firstIndex(of: "/").map { rest[$0...] } ?? "/"
        }
        let pieces = pathAndQuery.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        guard let path = PercentCoding.decode(pieces[0]) else { return nil }
        var query: [String: String] = [:]
        if pieces.count == 2 {
            for pair in pieces[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = PercentCoding.decode(kv[0]) ?? String(kv[0])
                let value = kv.count == 2 ? (PercentCoding.decode(String(kv[1]).replacing("+", with: " ")) ?? "") : ""
                query[key] = value
            }
        }
        return (method, path, query)
    }

    private func isTokenCharacter(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        case UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "!"), UInt8(ascii: "#"),
            UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"), UInt8(ascii: "*"),
            UInt8(ascii: "+"), UInt8(ascii: "^"), UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default: return false
        }
    }
}

/// A response: status line, a few headers, a body. Always `Connection: close`.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var contentType: String
    public var body: [UInt8]
    /// Streaming responses (events) have no Content-Length: the body ends when the connection does.
    public var streaming: Bool
    public var extraHeaders: [(String, String)]

    public init(
        status: Int, contentType: String = "application/json", body: [UInt8], streaming: Bool = false,
        extraHeaders: [(String, String)] = []
    ) {
        self.status = status
        self.contentType = contentType
        self.body = body
        self.streaming = streaming
        self.extraHeaders = extraHeaders
    }

    public static func json<T: Encodable>(_ status: Int, _ value: T) -> HTTPResponse {
        var body = (try? ControlProtocol.encoder().encode(value)).map { Array($0) } ?? Array("{}".utf8)
        body.append(0x0A)
        return HTTPResponse(status: status, body: body)
    }

    public static func error(_ status: Int, _ message: String, problems: [ConfigProblem]? = nil) -> HTTPResponse {
        json(status, ErrorReport(error: message, problems: problems))
    }

    public func serialized() -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(Self.reason(status))\r\n"
        head += "Content-Type: \(contentType)\r\n"
        if !streaming { head += "Content-Length: \(body.count)\r\n" } else { head += "Cache-Control: no-cache\r\n" }
        for (name, value) in extraHeaders { head += "\(name): \(value)\r\n" }
        head += "Connection: close\r\n\r\n"
        return Array(head.utf8) + body
    }

    public static func reason(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 411: "Length Required"
        case 413: "Content Too Large"
        case 422: "Unprocessable Content"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}
